"""The committed full-study evidence: its schema, and intervals recomputed from its per-run raw values.

``experiments/results/study_full.json`` keeps, under ``raw``, every per-work (and per-canary) value each interval
was computed from. These tests recompute a few intervals from ``raw`` two ways: with the study's own bootstrap
(same resampling seed: the stored numbers must come back exactly) and with an independent two-level bootstrap
written here (other random draws: the interval must agree within bootstrap noise).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from govjax.core.intervals import members_auc, paired_difference, seed_work_bootstrap
from govjax.study.stats import seed_group_statistic

STUDY = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "results" / "study_full.json"
RESAMPLES = 2000  # govjax.core.intervals.DEFAULT_RESAMPLES, which wrote the committed file


@pytest.fixture(scope="module")
def evidence() -> dict:
  return json.loads(STUDY.read_text())


def _per_seed(evidence: dict, method: str, metric: str, table: str = "per_work") -> dict:
  """``{seed: raw values}`` of ``method`` in seed order (the order the study measured them)."""
  runs = sorted((r for r in evidence["raw"].values() if r["method"] == method), key=lambda r: r["seed"])
  return {r["seed"]: r[table][metric] for r in runs if r[table].get(metric)}


def _independent_bootstrap(per_seed: dict, rng: np.random.Generator, resamples: int = 4000) -> list[float]:
  """Seeds resampled, then works within each drawn seed; the mean of the drawn seeds' means."""
  arrays = [np.asarray(list(v.values()), np.float64) for v in per_seed.values()]
  draws = []
  for _ in range(resamples):
    picked = rng.integers(0, len(arrays), len(arrays))
    draws.append(np.mean([arrays[i][rng.integers(0, arrays[i].size, arrays[i].size)].mean() for i in picked]))
  return [float(q) for q in np.percentile(draws, [2.5, 97.5])]


def test_schema_of_issue_item_8(evidence):
  assert len(evidence["seeds"]) >= 3
  assert evidence["canary_levels"] == [1, 4, 16]
  assert evidence["canaries_per_level"] >= 32
  assert {"vanilla", "exclude", "depth", "dpsgd"} <= set(evidence["methods"])
  for name, metrics in evidence["methods"].items():
    assert "val_nll" in metrics, name
    for metric, value in metrics.items():
      lo, hi = value["ci95"]
      assert lo <= hi, (name, metric)
  for pair, metrics in evidence["paired"].items():
    a, b = pair.split("-vs-")
    assert a in evidence["methods"] and b in evidence["methods"], pair
    for metric, value in metrics.items():
      assert value["ci95"][0] <= value["ci95"][1], (pair, metric)


@pytest.mark.parametrize(("method", "metric"), [("vanilla", "exposure_random_r16"),
                                                ("depth", "exposure_chorale_r16"),
                                                ("exclude", "val_nll"), ("goldfish", "exposure_random_r16")])
def test_interval_recomputed_from_raw(evidence, method, metric):
  per_seed = _per_seed(evidence, method, metric)
  assert len(per_seed) == len(evidence["seeds"])
  stored = evidence["methods"][method][metric]
  mean = np.mean([np.mean(list(v.values())) for v in per_seed.values()])
  np.testing.assert_allclose(stored["mean"], mean, rtol=1e-12)
  again = seed_work_bootstrap(per_seed, resamples=RESAMPLES, seed=0)
  np.testing.assert_allclose(again["ci95"], stored["ci95"], rtol=1e-12)
  lo, hi = _independent_bootstrap(per_seed, np.random.default_rng(123))
  width = max(stored["ci95"][1] - stored["ci95"][0], 1e-9)
  assert abs(lo - stored["ci95"][0]) < 0.15 * width and abs(hi - stored["ci95"][1]) < 0.15 * width


def test_paired_difference_recomputed_from_raw(evidence):
  a = _per_seed(evidence, "depth", "exposure_random_r16")
  b = _per_seed(evidence, "vanilla", "exposure_random_r16")
  stored = evidence["paired"]["depth-vs-vanilla"]["exposure_random_r16"]
  diffs = {s: {w: a[s][w] - b[s][w] for w in a[s] if w in b[s]} for s in a if s in b}
  mean = np.mean([np.mean(list(v.values())) for v in diffs.values()])
  np.testing.assert_allclose(stored["mean_diff"], mean, rtol=1e-12)
  again = paired_difference(a, b, resamples=RESAMPLES, seed=0)
  np.testing.assert_allclose(again["ci95"], stored["ci95"], rtol=1e-12)
  assert stored["n_pairs"] == sum(len(v) for v in diffs.values())


def test_membership_auc_recomputed_from_raw(evidence):
  inputs = _per_seed(evidence, "vanilla", "mia_auc_works", table="auc")
  stored = evidence["methods"]["vanilla"]["mia_auc_works"]
  for s, value in inputs.items():  # the per-seed AUC, from the per-work scores
    scores = value["scores"]
    auc = members_auc(np.array([scores[w] for w in value["members"]]),
                      np.array([scores[w] for w in value["nonmembers"]]))
    np.testing.assert_allclose(stored["per_seed"][str(s)], auc, rtol=1e-12)
  again = seed_group_statistic(inputs, members_auc, resamples=RESAMPLES, seed=0)
  np.testing.assert_allclose(again["ci95"], stored["ci95"], rtol=1e-12)
