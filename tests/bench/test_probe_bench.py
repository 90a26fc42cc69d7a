"""The probe bench's equal-frequency measurement runs end to end at toy size and reports every statistic."""

import numpy as np

from govjax.bench.probe import measure_equal_frequency


def test_equal_frequency_measurement_reports_probe_and_statistics():
  out = measure_equal_frequency(models=4, pool_works=8, steps=8, signal="memorization_gap", ema=0.9, seeds=(0, 1),
                                layers=1, width=16, context=16, batch=8, resamples=20, calibrate_every=2)
  assert 0.0 <= out["probe_auc_equal_frequency"] <= 1.0
  assert out["probe_direction"] == "high" and out["equal_frequency_pairs"] == 2 * 32
  assert set(out["probe_auc_equal_frequency_per_seed"]) == {"0", "1"}
  rates = out["probe_flag_rate"]
  assert 0.0 <= rates["memorized"] <= 1.0 and 0.0 <= rates["other"] <= 1.0
  assert all(np.isfinite(v) for v in out["probe_auc_equal_frequency_per_seed"].values())
  for name in ("loss", "rep_c0", "rep_u1", "attn1", "zlib_bits", "predictive_entropy", "min_k"):
    assert name in out["auc_equal_frequency"]
