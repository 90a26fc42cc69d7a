"""The probe bench's equal-frequency measurement runs end to end at toy size and reports every statistic."""

import numpy as np

from govjax.bench.probe import flags_against_counterfactual, measure_equal_frequency


def test_equal_frequency_measurement_reports_probe_and_statistics():
  out = measure_equal_frequency(models=4, pool_works=8, steps=8, signal="memorization_gap", ema=0.9, seeds=(0, 1),
                                layers=1, width=16, context=16, batch=8, resamples=20, calibrate_every=2,
                                flag_steps=(4, 8))
  assert 0.0 <= out["probe_auc_equal_frequency"] <= 1.0
  assert out["probe_direction"] == "high" and out["equal_frequency_pairs"] == 2 * 32
  assert set(out["probe_auc_equal_frequency_per_seed"]) == {"0", "1"}
  rates = out["probe_flag_rate"]
  assert 0.0 <= rates["memorized"] <= 1.0 and 0.0 <= rates["other"] <= 1.0
  assert all(np.isfinite(v) for v in out["probe_auc_equal_frequency_per_seed"].values())
  by_step = out["probe_flags_by_counterfactual"]
  assert set(by_step) == {"4", "8"} and out["probe_margin"] == 0.5
  for entry in by_step.values():
    assert entry["pairs_above"] + entry["pairs_below"] == 2 * 32
    assert 0.0 <= entry["share_above_margin"] <= 1.0
  for name in ("loss", "rep_c0", "rep_u1", "attn1", "zlib_bits", "predictive_entropy", "min_k", "ngram_reference",
               "memorization_gap_root", "memorization_gap_nats"):
    assert name in out["auc_equal_frequency"]
  assert out["probe_reference_order"] == 4
  assert -1.0 <= out["probe_auc_minus_gap_without_reference"]["mean"] <= 1.0


def test_without_the_reference_the_probe_is_the_root_gap():
  out = measure_equal_frequency(models=4, pool_works=8, steps=8, signal="memorization_gap", ema=0.9, seeds=(0,),
                                layers=1, width=16, context=16, batch=8, resamples=20, calibrate_every=2,
                                reference_order=0)
  assert out["probe_auc_equal_frequency"] == out["auc_equal_frequency"]["memorization_gap_root"]
  assert out["probe_auc_minus_gap_without_reference"]["mean"] == 0.0
  assert np.isnan(out["auc_equal_frequency"]["ngram_reference"])


def test_flags_against_counterfactual_splits_pairs_at_the_margin():
  memorization = np.array([0.1, 0.4, 0.6, 2.0, np.nan])
  flag = np.array([True, False, True, False, True])
  out = flags_against_counterfactual(memorization, flag, 0.5)
  assert out["pairs_above"] == 2 and out["pairs_below"] == 2  # the NaN pair is in neither
  assert out["flagged_above"] == 0.5 and out["flagged_below"] == 0.5
  lo, hi = out["flagged_above_ci95"]
  assert 0.0 < lo < 0.5 < hi < 1.0
  empty = flags_against_counterfactual(np.array([0.1]), np.array([True]), 0.5)
  assert empty["flagged_above"] is None and empty["flagged_below"] == 1.0
