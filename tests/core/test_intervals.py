"""Intervals: recomputable by hand on small data, coverage on simulated data, verdicts that can fail."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from govjax.core.intervals import (
    clopper_pearson,
    grouped_auc,
    paired_difference,
    seed_work_bootstrap,
    verdict,
    work_bootstrap,
)


def test_work_bootstrap_resamples_whole_works():
  # Two works, constant within each: any resample's mean is a mix of the two work means only.
  values = np.array([0.0] * 10 + [1.0] * 2)
  works = ["a"] * 10 + ["b"] * 2
  out = work_bootstrap(values, works, statistic=lambda v: float(np.mean(np.unique(v))), resamples=500, seed=1)
  assert out["n_works"] == 2 and out["n"] == 12 and out["ci95"] == [0.0, 1.0]
  with pytest.raises(ValueError, match="differ in length"):
    work_bootstrap([1.0], ["a", "b"])


def test_work_bootstrap_covers_the_true_mean_about_95_percent():
  rng = np.random.default_rng(0)
  hits = 0
  for trial in range(60):
    work_means = rng.normal(1.0, 1.0, size=30)  # true mean of work means: 1.0
    values = np.repeat(work_means, 5) + rng.normal(0, 0.1, size=150)
    out = work_bootstrap(values, np.repeat(np.arange(30), 5), resamples=400, seed=trial)
    hits += out["ci95"][0] <= 1.0 <= out["ci95"][1]
  assert 50 <= hits <= 60  # ~95% of 60, loosely


def test_grouped_auc_matches_sklearn_and_separates():
  rng = np.random.default_rng(0)
  labels = np.array([True] * 40 + [False] * 40)
  scores = np.concatenate([rng.normal(1, 1, 40), rng.normal(0, 1, 40)])
  groups = np.concatenate([np.repeat(np.arange(10), 4), 100 + np.repeat(np.arange(10), 4)])
  out = grouped_auc(scores, labels, groups, resamples=300, seed=0)
  assert out["mean"] == pytest.approx(roc_auc_score(labels, scores))
  assert out["n_member_works"] == 10 and out["n_nonmember_works"] == 10
  assert out["ci95"][0] < out["mean"] < out["ci95"][1]
  chance = grouped_auc(rng.normal(size=80), labels, groups, resamples=300, seed=0)
  assert chance["ci95"][0] < 0.5 < chance["ci95"][1]


def test_paired_difference_pairs_seeds_and_works():
  a = {0: {"w1": 1.0, "w2": 2.0}, 1: {"w1": 1.5, "w2": 2.5, "w3": 9.0}}
  b = {0: {"w1": 0.5, "w2": 1.5}, 1: {"w1": 1.0, "w2": 2.0}, 2: {"w1": 0.0}}
  out = paired_difference(a, b, resamples=200, seed=0)
  assert out["mean_diff"] == pytest.approx(0.5) and out["ci95"] == pytest.approx([0.5, 0.5])
  assert out["n_seeds"] == 2 and out["n_pairs"] == 4
  with pytest.raises(ValueError, match="share no"):
    paired_difference({0: {"x": 1.0}}, {1: {"x": 1.0}})
  nested = seed_work_bootstrap({0: {"a": 1.0, "b": 3.0}, 1: {"a": 2.0}}, resamples=200, seed=0)
  assert nested["mean"] == pytest.approx(2.0) and nested["per_seed"] == {"0": 2.0, "1": 2.0}


def test_clopper_pearson_and_verdicts():
  assert clopper_pearson(0, 3892, one_sided=True)[1] == pytest.approx(0.00077, abs=1e-5)
  lo, hi = clopper_pearson(5, 10)
  assert lo == pytest.approx(0.187, abs=1e-3) and hi == pytest.approx(0.813, abs=1e-3)
  assert verdict([0.1, 0.2]) == "supported" and verdict([-0.3, -0.1]) == "contradicted"
  assert verdict([-0.3, -0.1], direction="less") == "supported" and verdict([0.4, 0.6], null=0.5) == "not resolved"
  assert verdict([float("nan"), 1.0]) == "not resolved"


def test_grouped_auc_paired_difference_uses_the_same_draws():
  rng = np.random.default_rng(0)
  labels = rng.random(200) < 0.3
  groups = np.repeat(np.arange(50), 4)
  strong = labels + rng.normal(0, 0.5, 200)
  weak = labels + rng.normal(0, 2.0, 200)
  out = grouped_auc(strong, labels, groups, resamples=300, versus=weak)
  alone = grouped_auc(weak, labels, groups, resamples=0)
  assert out["minus_versus"]["mean"] == pytest.approx(out["mean"] - alone["mean"])
  low, high = out["minus_versus"]["ci95"]
  assert 0 < low <= out["minus_versus"]["mean"] <= high
  same = grouped_auc(strong, labels, groups, resamples=50, versus=strong)["minus_versus"]
  assert same == {"mean": 0.0, "ci95": [0.0, 0.0]}
  assert "minus_versus" not in grouped_auc(strong, labels, groups, resamples=10)
