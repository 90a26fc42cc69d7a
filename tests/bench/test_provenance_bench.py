"""The provenance bench traces outputs that are not stored training windows."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from govjax.bench import provenance as bench


def test_perturbed_copies_are_never_stored_windows():
  rng = np.random.default_rng(0)
  works = [np.arange(1, 41, dtype=np.int32), np.arange(41, 71, dtype=np.int32)]
  queries = bench.perturbed_copies(works, context=16, stride=8, fraction=0.25, rng=rng)
  for w, query in enumerate(queries):
    stored = [works[w][s:s + 16] for s in range(0, len(works[w]) - 16 + 1, 8)]
    assert not any(np.array_equal(query, s) for s in stored)
    # the window is a copy of the work at some offset with exactly 4 of its 16 tokens changed
    best = min(int(np.sum(query != works[w][s:s + 16])) for s in range(len(works[w]) - 16 + 1))
    assert best == 4
  assert queries.min() >= 1 and queries.max() < bench.VOCAB
  untouched = bench.perturbed_copies(works, context=16, stride=8, fraction=0.0, rng=rng)
  for query, work in zip(untouched, works, strict=True):
    assert any(np.array_equal(query, work[s:s + 16]) for s in range(len(work) - 16 + 1))


def test_ngram_baseline_ranks_the_source_first_and_fails_on_unrelated_queries():
  rng = np.random.default_rng(1)
  works = [rng.integers(1, bench.VOCAB, size=48).astype(np.int32) for _ in range(6)]
  copies = np.stack([w[5:21] for w in works])
  assert bench.ngram_ranks(copies, works).tolist() == [0] * 6
  unrelated = rng.integers(1, bench.VOCAB, size=(6, 16)).astype(np.int32)
  assert bench.ngram_ranks(unrelated, works).mean() > 1  # ties count against the source: no free hits


def test_fractions_are_validated():
  assert bench._fractions("0.1, 0.5") == (0.1, 0.5)
  with pytest.raises(ValueError, match="perturb-fractions"):
    bench._fractions("1.5")


def test_canary_benchmark_traces_generated_and_perturbed_queries(tmp_path):
  args = argparse.Namespace(works=6, work_tokens=48, context=16, steps=60, k=128, seed=0, prompt_tokens=4,
                            temperature=1.0, perturb_fractions="0.1")
  result = bench.canary_benchmark(args, tmp_path)
  assert "canary_recall_at_1" not in result  # the stored window is no longer traced
  assert set(result["tracing"]) == {"generated", "continuation", "perturbed_0.1"}
  for scores in result["tracing"].values():
    assert 0.0 <= scores["recall_at_1"] <= scores["recall_at_5"] <= 1.0
  # a lightly perturbed copy of a canary is traced to it far above chance (1/6)
  assert result["tracing"]["perturbed_0.1"]["recall_at_1"] >= 0.5
  assert 0.0 <= result["generated_token_match"] <= 1.0
  assert result["index_examples_per_s"] > 0 and result["query_ms"] > 0
