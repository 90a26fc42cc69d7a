"""Audit metrics on constructed cases with known values."""

import numpy as np
import pytest

from govjax.audit.exposure import CanaryBatches, exposure, make_canaries
from govjax.audit.membership import membership_inference, tpr_at_fpr


def test_exposure_known_values():
  refs = np.arange(1.0, 1024.0)  # |R| = 1024 with the canary
  assert exposure(0.0, refs) == pytest.approx(10.0)  # rank 1: log2 |R|
  assert exposure(1023.5, refs) == pytest.approx(0.0)  # rank |R|
  assert exposure(2.5, refs) == pytest.approx(10.0 - np.log2(3))
  assert exposure(1.0, refs) == pytest.approx(10.0)  # ties count in the canary's favour


def test_membership_known_values():
  perfect = membership_inference([0.1, 0.2, 0.3], np.linspace(1, 2, 2000))
  assert perfect["auc"] == 1.0 and perfect["tpr_at_0.1pct_fpr"] == 1.0 and perfect["tpr_at_1pct_fpr"] == 1.0
  reversed_ = membership_inference([5.0, 6.0], [1.0, 2.0])
  assert reversed_["auc"] == 0.0 and reversed_["tpr_at_1pct_fpr"] == 0.0
  same = membership_inference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
  assert same["auc"] == 0.5
  # 100 non-members: FPR 1% allows exactly one false positive
  members = np.array([0.5, 1.5, 9.0, 9.5])
  nonmembers = np.r_[1.0, np.full(99, 5.0)]
  result = membership_inference(members, nonmembers)
  assert result["tpr_at_1pct_fpr"] == 0.5 and result["tpr_at_0.1pct_fpr"] == 0.25
  assert result["min_resolvable_fpr"] == 0.01
  empty = membership_inference([1.0, np.nan], [])
  assert np.isnan(empty["auc"]) and empty["num_skipped"] == 1


def test_tpr_at_fpr():
  assert tpr_at_fpr(np.array([0.0, 0.005, 0.02, 1.0]), np.array([0.1, 0.4, 0.8, 1.0]), 0.01) == 0.4


def test_canary_batches_schedule():
  base = {s: {"tokens": np.ones((4, 8), np.int32), "example_id": np.arange(4, dtype=np.int32),
              "work_index": np.zeros(4, np.int32)} for s in range(10)}
  canaries = make_canaries(0, 2, 8)
  assert canaries.min() >= 3 and canaries.max() < 72
  wrapped = CanaryBatches(base, canaries, [5, 1], num_steps=10, batch_size=4, first_example_id=100)
  seen = {0: 0, 1: 0}
  for s in range(10):
    batch = wrapped[s]
    for row in np.flatnonzero(batch["example_id"] >= 100):
      c = int(batch["example_id"][row]) - 100
      np.testing.assert_array_equal(batch["tokens"][row], canaries[c])
      seen[c] += 1
  assert seen == {0: 5, 1: 1}
  assert base[0]["example_id"].max() == 3  # the base batches are not modified
  with pytest.raises(ValueError, match="repetitions"):
    CanaryBatches(base, canaries, [1], num_steps=10, batch_size=4, first_example_id=0)
