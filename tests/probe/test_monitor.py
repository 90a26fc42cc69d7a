"""The probe plugin: mask combination, EMA and hysteresis on constructed statistics, calibration, a short run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from govjax.probe.monitor import (
    ProbeSpec,
    calibration_statistics,
    direction_from_heldout,
    make_probe_plugin,
    thresholds,
)
from govjax.probe.stats import STATISTICS
from tests.audit.memorize import NUM_FIXED, tiny_run


def _aux_with_loss(loss_values, length=4, width=3, vocab=5):
  """aux whose per-example loss is ``loss_values`` (logits/hidden arbitrary)."""
  b = len(loss_values)
  return {"per_example_loss": jnp.asarray(loss_values, jnp.float32), "logits": jnp.zeros((b, length, vocab)),
          "hidden": [jnp.ones((b, length, width))] * 2}


def test_effective_mask_is_minimum_with_policy_mask():
  plugin = make_probe_plugin(ProbeSpec(enabled=True), num_groups=4)
  state = plugin.init(5)
  state = state._replace(depth=jnp.array([4, 3, 2, 1, 0]))
  policy = jnp.array([[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]], jnp.float32)
  mask = plugin.effective_mask(state, {"example_id": jnp.array([0, 1, 2, 3, -1])}, policy)
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]])


def test_input_surface_keeps_the_bottom_groups():
  plugin = make_probe_plugin(ProbeSpec(enabled=True), num_groups=4, surface="input")
  state = plugin.init(3)._replace(depth=jnp.array([4, 2, 1]))
  mask = plugin.effective_mask(state, {"example_id": jnp.array([0, 1, 2])}, jnp.ones((3, 4)))
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
  with pytest.raises(ValueError, match="surface"):
    make_probe_plugin(ProbeSpec(enabled=True), num_groups=4, surface="middle")


def test_ema_thresholds_and_hysteresis():
  spec = ProbeSpec(enabled=True, signal="loss", ema=0.5, min_seen=1, min_depth=1)
  plugin = make_probe_plugin(spec, num_groups=4)
  update = jax.jit(plugin.update)
  state = plugin.init(3)
  batch = {"tokens": jnp.ones((2, 4), jnp.int32), "example_id": jnp.array([0, 2])}
  # uncalibrated: nothing changes
  state, metrics = update(state, batch, _aux_with_loss([0.1, 5.0]), jnp.int32(0))
  np.testing.assert_array_equal(state.depth, [4, 4, 4])
  np.testing.assert_allclose(state.ema[:, 0], [0.1, 0.0, 5.0])
  state = state._replace(low=jnp.array([1.0, -jnp.inf, -jnp.inf]), high=jnp.array([2.0, jnp.inf, jnp.inf]))
  state, metrics = update(state, batch, _aux_with_loss([0.3, 5.0]), jnp.int32(1))
  np.testing.assert_allclose(state.ema[:, 0], [0.2, 0.0, 5.0], rtol=1e-6)
  np.testing.assert_array_equal(state.depth, [3, 4, 4])
  assert int(metrics["lowered"]) == 1 and int(metrics["flagged"]) == 1
  for _ in range(5):
    state, metrics = update(state, batch, _aux_with_loss([0.3, 5.0]), jnp.int32(2))
  np.testing.assert_array_equal(state.depth, [1, 4, 4])  # floor at min_depth
  np.testing.assert_array_equal(metrics["depth_counts"], [0, 1, 0, 0, 2])
  # between low and high: kept (hysteresis); above high: restored one group per sighting
  state, _ = update(state._replace(ema=state.ema.at[0, 0].set(1.5)), batch, _aux_with_loss([1.5, 5.0]),
                           jnp.int32(3))
  np.testing.assert_array_equal(state.depth, [1, 4, 4])
  state, metrics = update(state, batch, _aux_with_loss([4.0, 5.0]), jnp.int32(4))
  np.testing.assert_array_equal(state.depth, [2, 4, 4])
  assert int(metrics["restored"]) == 1
  np.testing.assert_array_equal(state.seen, [9, 0, 9])


def test_update_requires_hidden():
  plugin = make_probe_plugin(ProbeSpec(enabled=True), num_groups=3)
  aux = _aux_with_loss([1.0])
  del aux["hidden"]
  with pytest.raises(ValueError, match="return_hidden"):
    plugin.update(plugin.init(2), {"tokens": jnp.ones((1, 4), jnp.int32), "example_id": jnp.array([0])}, aux, 0)


def test_spec_validation():
  with pytest.raises(ValueError, match="percentile"):
    make_probe_plugin(ProbeSpec(percentile=30.0, restore_percentile=20.0), num_groups=4)
  with pytest.raises(ValueError, match="min_depth"):
    make_probe_plugin(ProbeSpec(min_depth=9), num_groups=4)
  with pytest.raises(ValueError, match="signal"):
    make_probe_plugin(ProbeSpec(signal="xyz"), num_groups=4)


def test_thresholds_are_percentiles():
  values = np.stack([np.arange(101.0), np.arange(101.0) * 2, np.full(101, np.nan)], axis=1)
  low, high = thresholds(values, 5.0, 20.0)
  np.testing.assert_allclose(low[:2], [5.0, 10.0])
  np.testing.assert_allclose(high[:2], [20.0, 40.0])
  assert low[2] == -np.inf and high[2] == np.inf


def test_calibration_uses_weighted_heldout_rows():
  run = tiny_run()
  batch = {"tokens": run.heldout, "weight": np.r_[np.ones(10), np.zeros(6)].astype(np.float32)}
  values = calibration_statistics(run.model, [batch])
  assert values.shape == (10, len(STATISTICS))
  state = run.plugin.calibrate(run.plugin.init(3), run.model, [batch])
  low, high = thresholds(values, 5.0, 20.0)
  np.testing.assert_allclose(state.low, low, rtol=1e-6)
  np.testing.assert_allclose(state.high, high, rtol=1e-6)
  assert int(state.calibrations) == 1


def test_adaptive_depth_lowers_repeated_examples_in_short_run():
  run = tiny_run()
  state = run.state.extras["probe"]
  depth = np.asarray(state.depth)
  groups = run.plugin.num_groups
  assert (depth[:NUM_FIXED] == 1).all()  # seen every step: memorized, lowered to min_depth
  assert depth[NUM_FIXED:].mean() > depth[:NUM_FIXED].mean() + 0.5
  assert run.depth_counts[0] == [0] * groups + [NUM_FIXED + len(run.pool)]
  assert sum(run.depth_counts[-1]) == NUM_FIXED + len(run.pool)


def test_probe_entropy_lower_on_memorized_set():
  run = tiny_run()
  ema = np.asarray(run.state.extras["probe"].ema)
  heldout = calibration_statistics(run.model, [{"tokens": run.heldout}])
  for column in (0, 1):  # loss and predictive entropy
    assert ema[:NUM_FIXED, column].max() < heldout[:, column].min()
  evidence = run.plugin.evidence(run.state.extras["probe"])
  assert evidence[:NUM_FIXED].min() > np.nanmax(evidence[NUM_FIXED:])


def test_direction_high_flags_the_upper_tail_and_both_either_tail():
  for direction, expected in (("low", [3, 4, 4]), ("high", [4, 4, 3]), ("both", [3, 4, 3])):
    spec = ProbeSpec(enabled=True, signal="loss", ema=0.0, min_seen=1, direction=direction)
    plugin = make_probe_plugin(spec, num_groups=4)
    state = plugin.init(3)
    assert state.upper[0] == np.inf and state.upper_restore[0] == -np.inf  # uncalibrated: nothing flagged
    state = state._replace(low=jnp.array([1.0, -jnp.inf, -jnp.inf]), high=jnp.array([2.0, jnp.inf, jnp.inf]),
                           upper_restore=jnp.array([3.0, -jnp.inf, -jnp.inf]),
                           upper=jnp.array([4.0, jnp.inf, jnp.inf]))
    batch = {"tokens": jnp.ones((3, 4), jnp.int32), "example_id": jnp.array([0, 1, 2])}
    state, _ = plugin.update(state, batch, _aux_with_loss([0.5, 2.5, 5.0]), jnp.int32(0))
    np.testing.assert_array_equal(state.depth, expected, err_msg=direction)
    evidence = plugin.evidence(state)
    if direction == "high":
      assert evidence[2] > evidence[1] > evidence[0]
    elif direction == "both":
      assert evidence[1] < min(evidence[0], evidence[2])


def test_calibration_sets_the_upper_thresholds():
  run = tiny_run()
  batch = {"tokens": run.heldout}
  values = calibration_statistics(run.model, [batch])
  state = run.plugin.calibrate(run.plugin.init(3), run.model, [batch])
  np.testing.assert_allclose(state.upper, np.nanpercentile(values, 95.0, axis=0), rtol=1e-5)
  np.testing.assert_allclose(state.upper_restore, np.nanpercentile(values, 80.0, axis=0), rtol=1e-5)


def test_direction_from_heldout_finds_the_side_the_data_shows():
  rng = np.random.default_rng(0)
  heldout = rng.normal(size=2000)
  assert direction_from_heldout(rng.normal(2.5, 1.0, 200), heldout)["direction"] == "high"
  assert direction_from_heldout(rng.normal(-2.5, 1.0, 200), heldout)["direction"] == "low"
  assert direction_from_heldout(rng.normal(0.0, 4.0, 400), heldout)["direction"] == "both"
  out = direction_from_heldout(rng.normal(size=300), heldout)
  assert out["direction"] == "none" and out["ci_low"][0] <= 0.05 <= out["ci_low"][1] + 0.05


def test_evidence_averages_the_reference_root_with_the_ngram_difficulty():
  from govjax.probe.monitor import with_difficulty
  from govjax.probe.reference import ngram_root_surprisal

  plugin = make_probe_plugin(ProbeSpec(enabled=True, reference_order=2), num_groups=4)
  windows = np.array([[1, 2, 3, 1], [1, 2, 3, 2], [3, 3, 1, 1], [2, 1, 2, 1]])
  groups = np.array([0, 1, 2, 2])
  state = plugin.attach_reference(plugin.init(4), windows, groups, vocab_size=4, train_rows=[0, 1, 2])
  difficulty = ngram_root_surprisal(windows, groups, vocab_size=4, order=2, train_rows=[0, 1, 2])
  np.testing.assert_allclose(np.asarray(state.difficulty), difficulty, rtol=1e-6)
  reference = np.array([1.0, 1.4, 0.8, np.nan])
  running = np.array([0.2, 0.3, 0.1, 0.5])
  state = state._replace(seen=jnp.array([3, 3, 3, 0]), reference_root=jnp.asarray(reference, jnp.float32),
                         running_root=jnp.asarray(running, jnp.float32))
  got = plugin.evidence(state)
  both = np.isfinite(reference)
  mapped = reference[both].mean() + reference[both].std() * (
      (difficulty - difficulty[both].mean()) / difficulty[both].std())
  want = (reference + mapped) / 2 - running
  np.testing.assert_allclose(got[:3], want[:3], rtol=1e-5)
  assert np.isnan(got[3])  # unseen
  np.testing.assert_allclose(with_difficulty(reference, np.full(4, np.nan)), reference)  # nothing attached
  off = make_probe_plugin(ProbeSpec(enabled=True, reference_order=0), num_groups=4)
  assert np.isnan(np.asarray(off.attach_reference(off.init(4), windows, groups, vocab_size=4).difficulty)).all()
  with pytest.raises(ValueError, match="4 examples"):
    plugin.attach_reference(plugin.init(3), windows, groups, vocab_size=4)
