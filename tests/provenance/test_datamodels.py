"""The LDS protocol's functions against hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from govjax.provenance.datamodels import (
    draw_subsets,
    fit_datamodels,
    lds_per_query,
    ngram_overlap,
    query_windows,
    ratio_of_means,
    spread_to_examples,
)


def test_subsets_keep_half_the_works_reproducibly():
  subsets = draw_subsets(10, 6, 0.5, seed=3)
  assert subsets.shape == (6, 10) and (subsets.sum(axis=1) == 5).all()
  np.testing.assert_array_equal(subsets, draw_subsets(10, 6, 0.5, seed=3))
  assert len({row.tobytes() for row in subsets}) > 1


def test_query_windows_are_non_overlapping_full_windows_of_each_work():
  works = [SimpleNamespace(work_id=f"w{i}", tokens=np.arange(n, dtype=np.int32)) for i, n in enumerate([40, 8, 17])]
  tokens, owner = query_windows(works, 8, 3)
  assert owner.tolist() == [0, 0, 0, 1, 2, 2]
  assert tokens[:, 0].tolist() == [0, 16, 32, 0, 0, 8]
  assert (np.diff(tokens, axis=1) == 1).all()


def test_ngram_overlap_counts_distinct_shared_ngrams():
  query = np.array([[1, 2, 3, 1, 2]])
  windows = np.array([[9, 1, 2, 3], [1, 2, 1, 2], [7, 7, 7, 7]])
  np.testing.assert_array_equal(ngram_overlap(query, windows, 2), [[2, 1, 0]])  # {12, 23} / {12} / {}


def test_lds_per_query_is_spearman_across_subsets():
  actual = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
  predicted = np.array([[10.0, 5.0], [20.0, 5.0], [30.0, 5.0], [40.0, 5.0]])
  np.testing.assert_allclose(lds_per_query(predicted, actual), [1.0, 0.0])  # a constant prediction ranks nothing
  np.testing.assert_allclose(lds_per_query(-predicted[:, :1], actual[:, :1]), [-1.0])
  assert np.isnan(lds_per_query(predicted[:, :1], np.ones((4, 1))))[0]


def test_ratio_of_means_with_paired_bootstrap():
  out = ratio_of_means(np.array([3.0, 6.0, 9.0]), np.array([1.0, 2.0, 3.0]), seed=0, resamples=200)
  assert out["mean"] == pytest.approx(3.0) and out["ci95"] == pytest.approx([3.0, 3.0])


def test_datamodels_recover_planted_work_coefficients_and_rank_held_out_subsets():
  rng = np.random.default_rng(4)
  truth = rng.normal(size=(3, 12))  # [Q, W]
  kept = draw_subsets(12, 80, 0.5, seed=1)
  margins = kept @ truth.T + 2.0 + 0.05 * rng.normal(size=(80, 3))
  # Every subset keeps 6 works, so a common shift of the coefficients is absorbed by the intercept; a small ridge
  # picks the centred solution.
  theta = fit_datamodels(kept, margins, ridge=1e-6)
  np.testing.assert_allclose(theta, truth - truth.mean(axis=1, keepdims=True), atol=0.05)
  varied = np.random.default_rng(5).random((80, 12)) < 0.5  # subsets of varying size identify the shift
  np.testing.assert_allclose(fit_datamodels(varied, varied @ truth.T + 2.0, ridge=0.0), truth, atol=1e-8)
  held_out = draw_subsets(12, 30, 0.5, seed=2)
  assert (lds_per_query(held_out @ theta.T, held_out @ truth.T) > 0.95).all()
  # The ridge shrinks towards 0; the intercept is never penalised, so a constant shift changes nothing.
  shrunk = fit_datamodels(kept, margins, ridge=1e4)
  assert np.abs(shrunk).max() < 0.1 * np.abs(theta).max()
  np.testing.assert_allclose(fit_datamodels(kept, margins + 100.0, ridge=3.0), fit_datamodels(kept, margins, ridge=3.0),
                             atol=1e-9)
  with pytest.raises(ValueError, match="share R"):
    fit_datamodels(kept, margins[:-1], ridge=1.0)
  with pytest.raises(ValueError, match="ridge"):
    fit_datamodels(kept, margins, ridge=-1.0)


def test_spread_to_examples_keeps_each_subsets_sum():
  work_scores = np.array([[3.0, -2.0, 5.0]])
  example_work = np.array([0, 0, 0, 1, 2, 2])
  spread = spread_to_examples(work_scores, example_work)
  np.testing.assert_allclose(spread, [[1.0, 1.0, 1.0, -2.0, 2.5, 2.5]])
  keep = np.array([[1, 0, 1], [0, 1, 1]], float)
  np.testing.assert_allclose(keep[:, example_work] @ spread.T, keep @ work_scores.T)


def test_a_prior_is_scaled_to_the_retrains_and_corrected_by_them():
  rng = np.random.default_rng(6)
  truth = rng.normal(size=(2, 10))
  kept = rng.random((60, 10)) < 0.5
  margins = kept @ truth.T + 0.01 * rng.normal(size=(60, 2))
  # A prior that is the truth up to a scale: fitted back exactly, whatever the (huge) ridge on the correction.
  np.testing.assert_allclose(fit_datamodels(kept, margins, ridge=1e9, prior=3.0 * truth), truth, atol=0.01)
  # A useless prior (constant over works, no prediction): the plain ridge fit.
  flat = np.ones((2, 10))
  np.testing.assert_allclose(fit_datamodels(kept, margins, ridge=2.0, prior=flat * 0),
                             fit_datamodels(kept, margins, ridge=2.0), atol=1e-12)
  # With few retrains, a ridge towards a noisy prior beats a ridge towards 0.
  few = kept[:8], margins[:8]
  noisy = truth + 0.3 * rng.normal(size=truth.shape)
  error = {name: np.abs(fit_datamodels(*few, ridge=10.0, prior=p) - truth).mean()
           for name, p in (("prior", noisy), ("zero", None))}
  assert error["prior"] < error["zero"]
  with pytest.raises(ValueError, match=r"prior must be \[Q, W\]"):
    fit_datamodels(kept, margins, ridge=1.0, prior=np.ones((3, 10)))
