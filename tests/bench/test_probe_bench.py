"""The probe bench's equal-frequency measurement runs end to end at toy size and reports every statistic."""

from govjax.bench.probe import measure_equal_frequency


def test_equal_frequency_measurement_reports_probe_and_statistics():
  out = measure_equal_frequency(models=4, pool_works=8, steps=4, signal="loss", ema=0.9, seed=0, layers=1, width=16,
                                context=16, batch=8, resamples=20)
  assert 0.0 <= out["probe_auc_equal_frequency"] <= 1.0
  assert out["probe_direction"] == "high" and out["equal_frequency_pairs"] == 32
  for name in ("loss", "rep_c0", "rep_u1", "attn1", "zlib_bits", "predictive_entropy", "min_k"):
    assert name in out["auc_equal_frequency"]
