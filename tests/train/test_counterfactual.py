"""Half-subset retrains: balanced complementary subsets, equal-frequency epochs, counterfactual scores."""

import numpy as np
import pytest

from govjax.core.config import ModelSpec, TrainConfig
from govjax.train.counterfactual import (
    Trainer,
    complementary_subsets,
    counterfactual_scores,
    epoch_batches,
    leave_one_out_scores,
    top_quantile_labels,
    train_and_measure,
    within_model_ranks,
)


def test_complementary_subsets_are_balanced_pairs():
  subsets = complementary_subsets(10, 6, seed=3)
  assert (subsets.sum(axis=0) == 3).all() and (subsets.sum(axis=1) == 5).all()
  assert (subsets[0] ^ subsets[1]).all() and (subsets[4] ^ subsets[5]).all()
  with pytest.raises(ValueError, match="even"):
    complementary_subsets(9, 6, seed=0)


def test_epoch_batches_train_every_row_equally_often():
  rows = np.r_[np.arange(6), [6, 6]]  # row 6 listed twice: trained twice per epoch
  batches = list(epoch_batches(rows, 4, 10, seed=0))
  counts = np.bincount(np.concatenate(batches[:8]), minlength=7)  # four whole epochs
  np.testing.assert_array_equal(counts, [4] * 6 + [8])
  assert not np.array_equal(batches[0], batches[2])  # reshuffled per epoch
  with pytest.raises(ValueError, match="divide"):
    next(epoch_batches(np.arange(7), 4, 1, seed=0))


def test_counterfactual_and_leave_one_out_scores():
  losses = np.array([[1.0, 3.0], [2.0, 1.0], [4.0, 2.0], [6.0, 0.0]])
  member = np.array([[True, False], [True, True], [False, False], [False, True]])
  np.testing.assert_allclose(counterfactual_scores(losses, member), [5.0 - 1.5, 2.5 - 0.5])
  loo = leave_one_out_scores(losses, member)
  np.testing.assert_allclose(loo[0], [5.0 - 2.0, 2.0 - 0.5])
  np.testing.assert_allclose(loo[3, 0], 4.0 - 1.5)


def test_labels_and_within_model_ranks():
  np.testing.assert_array_equal(top_quantile_labels(np.arange(8.0), 0.25), [False] * 6 + [True] * 2)
  ranks = within_model_ranks(np.array([5.0, 1.0, 1.0, 100.0, np.nan]), np.array([0, 0, 0, 1, 1]))
  np.testing.assert_allclose(ranks[:4], [1.0, 0.5, 0.5, 1.0])
  assert np.isnan(ranks[4])


def test_train_and_measure_records_sightings_and_signals():
  config = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=8), num_steps=6, batch_size=4,
                       warmup_steps=1, seed=0)
  windows = np.random.default_rng(0).integers(3, 20, (10, 8)).astype(np.int32)
  trainer = Trainer(config, 20)
  result = train_and_measure(config, windows, np.arange(8), vocab_size=20, measure_at=(3, 6), data_seed=0,
                             trainer=trainer)
  assert sorted(result["signals"]) == [3, 6] and result["signals"][6]["loss"].shape == (10,)
  assert np.isnan(result["first_loss"][8:]).all() and np.isfinite(result["first_loss"][:8]).all()
  assert result["step_ids"].shape == (6, 4) and set(result["step_ids"].ravel()) == set(range(8))
  assert result["signals"][6]["loss"][:8].mean() < result["signals"][3]["loss"][:8].mean() + 0.5
