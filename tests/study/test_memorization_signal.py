"""The memorization-signal study: history signals, the increment over loss, and a tiny end-to-end run."""

import json

import numpy as np

from govjax.study.memorization_signal import (
    HISTORY_SIGNALS,
    SignalStudyConfig,
    SizeSpec,
    build_windows,
    epoch_rows,
    history_signals,
    increment_over_loss,
    plot_results,
    replication_summary,
    run_study,
)


def _tiny_config(**overrides):
  values = dict(sizes=(SizeSpec("t", 1, 16, 2, 8, 4),), kinds=("folk",), context=16, batch_size=8, pool_works=8,
                set_works=2, copies=2, calib_works=4, resamples=20, warmup_steps=1, gap_calibrate_every=2)
  values.update(overrides)
  return SignalStudyConfig(**values)


def test_history_signals_follow_the_sightings():
  record = {"step_ids": np.array([[0, 1], [1, 0], [0, 1]]), "step_loss": np.array([[4.0, 2.0], [1.0, 2.0], [1.0, 0.5]])}
  windows = np.full((3, 8), 5, np.int32)
  out = history_signals(record, windows)
  assert set(out) == set(HISTORY_SIGNALS)
  np.testing.assert_allclose(out["first_loss"][:2], [4.0, 2.0])
  np.testing.assert_allclose(out["last_loss"][:2], [1.0, 0.5])
  np.testing.assert_allclose(out["mid_loss"][:2], [2.0, 1.0])  # the middle step (1)
  np.testing.assert_allclose(out["ema50_loss"][:2], [0.5 * (0.5 * 4 + 0.5 * 2) + 0.5, 0.5 * (0.5 * 2 + 0.5) + 0.25])
  assert np.isnan(out["first_loss"][2]) and np.isfinite(out["zlib_bits"]).all()


def test_increment_over_loss_separates_informative_from_useless_signals():
  rng = np.random.default_rng(0)
  labels = rng.random(300) < 0.3
  works = np.arange(300) // 3
  loss = rng.normal(size=300)
  useful = increment_over_loss(labels, loss, labels + rng.normal(0, 0.5, 300), works, seed=0, resamples=100)
  useless = increment_over_loss(labels, loss, rng.normal(size=300), works, seed=0, resamples=100)
  assert useful["ci95"][0] > 0.2
  assert useless["ci95"][0] < 0.05 < useful["mean"]


def test_windows_roles_and_equal_frequency_rows():
  config = _tiny_config()
  data = build_windows("folk", config)
  roles = {r: int(np.sum(data["role"] == r)) for r in ("pool", "verbatim", "varied", "calib")}
  assert roles == {"pool": 16, "verbatim": 2, "varied": 4, "calib": 4}
  member = np.zeros(8, bool)
  member[:4] = True
  rows = epoch_rows(data, member, copies=2)
  counts = np.bincount(rows, minlength=len(data["role"]))
  assert (counts[data["role"] == "verbatim"] == 2).all() and (counts[data["role"] == "varied"] == 1).all()
  assert counts[data["role"] == "calib"].sum() == 0 and counts[data["role"] == "pool"].sum() == 8


def test_tiny_study_end_to_end(tmp_path):
  result = run_study(_tiny_config(), tmp_path / "run")
  unit = result["units"]["folk/t"]
  assert unit["num_models"] == 4 and unit["num_pairs"] == 16 * 2  # 4 models x 8 trained pool windows
  for name in ("loss", "rep_c0", "rep_u1", "attn1", "zlib_bits", "mid_loss", "memorization_gap"):
    entry = unit["equal_frequency"][name]
    assert 0.0 <= entry["auc"] <= 1.0 and len(entry["ci95"]) == 2
  assert "rep_c1" in unit["increment_over_loss"] and "loss" not in unit["increment_over_loss"]
  assert set(unit["during_training"]) == {"2", "4"}
  assert unit["verbatim_vs_varied_matched_loss"]["n_positive"] == unit["verbatim_vs_varied_matched_loss"]["n_negative"]
  again = run_study(_tiny_config(), tmp_path / "run")  # cached: same records, same numbers
  assert again["units"]["folk/t"]["equal_frequency"]["loss"] == unit["equal_frequency"]["loss"]
  path = plot_results(json.loads(json.dumps(result, default=float)), tmp_path / "figure.png")
  assert path.stat().st_size > 1000


def test_replication_summary_lists_each_seed_and_rejects_repeated_seeds(tmp_path):
  first = run_study(_tiny_config(), tmp_path / "s0")
  second = run_study(_tiny_config(seed=1), tmp_path / "s1")
  summary = replication_summary([first, second])
  entry = summary["units"]["folk/t"]["memorization_gap"]
  assert summary["seeds"] == [0, 1] and entry["seeds"] == 2
  per_seed = [first["units"]["folk/t"]["equal_frequency"]["memorization_gap"]["auc"],
              second["units"]["folk/t"]["equal_frequency"]["memorization_gap"]["auc"]]
  assert entry["per_seed"] == {"0": per_seed[0], "1": per_seed[1]}
  assert entry["min"] == min(per_seed) and entry["mean"] == np.mean(per_seed)
  with np.testing.assert_raises(ValueError):
    replication_summary([first, first])
