"""Extraction audit: decoder equivalence, PAD handling, memorized vs held-out."""

import jax
import numpy as np
import pytest

from govjax.audit.exposure import canary_exposure
from govjax.audit.extraction import extraction_audit, greedy_continuation
from govjax.models.generate import generate
from tests.audit.memorize import tiny_run


def test_greedy_matches_generate():
  run = tiny_run()
  prompts = np.concatenate([run.fixed[:, :8], run.heldout[:3, :8]])
  ours = greedy_continuation(run.model, prompts, 16)
  ref = np.asarray(generate(run.model, prompts, num_tokens=16, rng=jax.random.PRNGKey(0), greedy=True))
  np.testing.assert_array_equal(ours, ref[:, 8:])


def test_pad_windows_are_skipped_and_counted():
  run = tiny_run()
  windows = run.heldout[:3].copy()
  windows[1, 20:] = 0
  result = extraction_audit(run.model, windows, k=8, m=16)
  np.testing.assert_array_equal(result.valid, [True, False, True])
  assert np.isnan(result.token_match[1]) and not result.exact[1]
  summary = result.summary()
  assert summary["num_skipped"] == 1 and summary["num_audited"] == 2
  with pytest.raises(ValueError, match="shorter than k"):
    extraction_audit(run.model, windows, k=30, m=16)


def test_memorized_set_is_extractable_heldout_is_not():
  run = tiny_run()
  train = extraction_audit(run.model, run.fixed, k=8, m=16)
  heldout = extraction_audit(run.model, run.heldout, k=8, m=16)
  assert train.exact.mean() >= 0.75 and heldout.exact.mean() == 0.0
  assert train.token_match.mean() > heldout.token_match.mean() + 0.5
  assert train.loss.max() < heldout.loss.min()


def test_memorized_windows_have_high_exposure():
  run = tiny_run()
  result = canary_exposure(run.model, run.fixed, num_references=255, seed=5, low=3, high=24,
                           repetitions=[60] * len(run.fixed))
  assert result["max_exposure"] == 8.0
  assert all(row["exposure"] == 8.0 for row in result["canaries"])
  assert result["by_repetitions"] == {"60": 8.0}
