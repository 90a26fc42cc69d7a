"""The memorization gap: held-out calibration decisions, the in-step reference against a hand computation from the
step losses of a real run, and adaptive depth on the gap."""

import jax.numpy as jnp
import numpy as np
import pytest

from govjax.core.config import ModelSpec, ProbeSpec, TrainConfig
from govjax.probe.gap import HELDOUT_ROWS, fold_reference, heldout_update
from govjax.probe.monitor import make_probe_plugin
from govjax.train.counterfactual import Trainer, train_and_measure


def _empty():
  return np.full(HELDOUT_ROWS, np.nan, np.float32)


def test_heldout_update_snapshots_at_a_new_minimum_and_thresholds_otherwise():
  first = heldout_update(best=np.float32(np.inf), heldout_reference=_empty(), heldout_loss=np.array([2.0, 3.0]),
                         percentile=5.0, restore_percentile=20.0, margin=0.0)
  assert first.improved and first.best == np.float32(2.5)
  np.testing.assert_array_equal(first.heldout_reference[:2], [2.0, 3.0])
  assert np.isnan(first.heldout_reference[2:]).all()
  assert first.upper == np.inf and first.restore == -np.inf  # nothing flagged while generalisation improves
  rising = np.linspace(2.1, 3.5, 2)  # held-out gaps -0.1 and -0.5
  later = heldout_update(best=first.best, heldout_reference=first.heldout_reference, heldout_loss=rising,
                         percentile=5.0, restore_percentile=20.0, margin=0.0)
  assert not later.improved and later.best == first.best
  np.testing.assert_allclose(later.drift, 0.3, rtol=1e-5)  # held-out mean 2.8 against its minimum 2.5
  # margin 0: the noise (-0.12) is above -drift (-0.3), so the held-out percentiles decide
  np.testing.assert_allclose(later.upper, np.percentile([-0.1, -0.5], 95.0), rtol=1e-6)
  np.testing.assert_allclose(later.restore, np.percentile([-0.1, -0.5], 80.0), rtol=1e-6)
  np.testing.assert_array_equal(later.heldout_reference, first.heldout_reference)  # frozen
  again = heldout_update(best=later.best, heldout_reference=later.heldout_reference,
                         heldout_loss=np.array([1.0, 1.5]), percentile=5.0, restore_percentile=20.0, margin=0.0)
  assert again.improved and again.best == np.float32(1.25)


def test_heldout_update_flags_above_the_margin_in_counterfactual_nats():
  """Gap + drift estimates counterfactual memorization: it is centred on zero for the held-out windows, and
  the threshold is the margin minus the drift unless the held-out noise is higher."""
  rng = np.random.default_rng(0)
  reference = rng.normal(2.0, 0.3, 200).astype(np.float32)
  first = heldout_update(best=np.float32(np.inf), heldout_reference=_empty(), heldout_loss=reference,
                         percentile=5.0, restore_percentile=20.0, margin=0.5)
  now = reference + rng.normal(0.4, 0.05, 200).astype(np.float32)  # never trained: the loss drifts up 0.4
  update = heldout_update(best=first.best, heldout_reference=first.heldout_reference, heldout_loss=now,
                          percentile=5.0, restore_percentile=20.0, margin=0.5)
  gaps = reference - now
  np.testing.assert_allclose(np.mean(gaps + update.drift), 0.0, atol=1e-5)
  np.testing.assert_allclose(update.upper, 0.5 - update.drift, rtol=1e-5)  # ~0.1: the margin decides
  spread = np.percentile(gaps, 95.0) - np.percentile(gaps, 80.0)
  np.testing.assert_allclose(update.restore, update.upper - spread, rtol=1e-4)
  assert update.restore < update.upper
  noisy = heldout_update(best=first.best, heldout_reference=first.heldout_reference, heldout_loss=now,
                         percentile=5.0, restore_percentile=20.0, margin=0.0)
  np.testing.assert_allclose(noisy.upper, np.percentile(gaps, 95.0), rtol=1e-5)  # the noise decides


def test_heldout_update_rejects_empty_and_misshaped_input():
  with pytest.raises(ValueError, match="held-out rows"):
    heldout_update(best=np.inf, heldout_reference=_empty(), heldout_loss=np.array([]), percentile=5,
                   restore_percentile=20, margin=0.5)
  with pytest.raises(ValueError, match="heldout_reference"):
    heldout_update(best=np.inf, heldout_reference=np.zeros(3), heldout_loss=np.ones(2), percentile=5,
                   restore_percentile=20, margin=0.5)


def test_fold_reference_is_an_ema_started_at_the_first_sighting():
  out = fold_reference(jnp.array([9.0, 2.0]), jnp.array([1.0, 1.0]), jnp.array([0, 3]), 0.5)
  np.testing.assert_allclose(out, [1.0, 1.5])


def test_gap_needs_the_high_direction():
  with pytest.raises(ValueError, match="direction must be 'high'"):
    ProbeSpec(enabled=True, signal="memorization_gap", direction="low")


def test_the_default_probe_is_the_gap_on_its_own_side():
  spec = ProbeSpec(enabled=True)
  assert (spec.signal, spec.direction, spec.side) == ("memorization_gap", None, "high")
  assert ProbeSpec(signal="loss").side == "low"  # each signal's own side unless a direction is set
  assert ProbeSpec(signal="loss", direction="both").side == "both"
  assert make_probe_plugin(spec, num_groups=3).gap


def test_reference_is_the_loss_ema_as_of_the_best_heldout_calibration():
  """The plugin's reference equals an EMA of the step losses up to the calibration with the lowest held-out
  loss, found from the models measured at every calibration step (an independent forward pass); the gap is
  that reference minus the same EMA at the end."""
  rng = np.random.default_rng(0)
  windows = rng.integers(3, 20, (20, 12)).astype(np.int32)
  heldout = rng.integers(3, 20, (6, 12)).astype(np.int32)
  rows = np.arange(16)
  config = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=12), num_steps=40, batch_size=8,
                       learning_rate=1e-2, warmup_steps=2, seed=0)
  spec = ProbeSpec(enabled=True, signal="memorization_gap", direction="high", ema=0.9, adaptive=False,
                   calibrate_every=4, reference_ema=0.5)
  plugin = make_probe_plugin(spec, num_groups=3)
  trainer = Trainer(config, 20, plugins=(plugin,))
  calibrations = tuple(range(4, 40, 4))
  everything = np.concatenate([windows, heldout])
  result = train_and_measure(config, everything, rows, vocab_size=20, measure_at=calibrations, data_seed=1,
                             trainer=trainer, heldout=heldout)
  heldout_loss = [result["signals"][s]["loss"][20:].mean() for s in calibrations]
  best = calibrations[int(np.argmin(heldout_loss))]
  assert 4 < best < 36, "the run must pass its held-out optimum inside the calibrations for the test to bite"
  reference = np.full(20, np.nan)
  running = np.full(20, np.nan)
  for step in range(config.num_steps):
    ids, loss = result["step_ids"][step], result["step_loss"][step]
    running[ids] = np.where(np.isnan(running[ids]), loss, 0.5 * running[ids] + 0.5 * loss)
    if step + 1 == best:
      reference = running.copy()
  state = result["extras"]["probe"]
  np.testing.assert_allclose(np.asarray(state.reference)[:16], reference[:16], rtol=1e-5)
  assert np.isnan(np.asarray(state.reference)[16:]).all()  # never trained: no reference
  np.testing.assert_allclose(float(state.best_heldout), min(heldout_loss), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(plugin.gap_nats(state))[:16], reference[:16] - running[:16], rtol=1e-4,
                             atol=1e-5)
  # the ranking scale: the root loss, snapshotted at the same calibration
  root = np.asarray(state.reference_root)
  assert np.isfinite(root[:16]).all() and np.isnan(root[16:]).all()
  evidence = plugin.evidence(state)
  np.testing.assert_allclose(evidence[:16], root[:16] - np.asarray(state.running_root)[:16], rtol=1e-6)
  assert np.isfinite(float(state.gap_upper))  # frozen after the optimum: thresholds from the held-out gaps


def test_adaptive_depth_lowers_large_gaps_and_restores_small_ones():
  spec = ProbeSpec(enabled=True, signal="memorization_gap", direction="high", ema=0.0, min_seen=1)
  plugin = make_probe_plugin(spec, num_groups=4)
  state = plugin.init(3)._replace(reference=jnp.array([3.0, 3.0, jnp.nan]), gap_upper=jnp.float32(1.0),
                                  gap_restore=jnp.float32(0.2))
  batch = {"tokens": jnp.ones((3, 4), jnp.int32), "example_id": jnp.array([0, 1, 2])}
  aux = {"per_example_loss": jnp.array([0.5, 2.9, 0.1]), "logits": jnp.zeros((3, 4, 5)),
         "hidden": [jnp.ones((3, 4, 3))] * 2}
  state, metrics = plugin.update(state, batch, aux, jnp.int32(0))
  np.testing.assert_array_equal(state.depth, [3, 4, 4])  # gaps 2.5 (lowered), 0.1, NaN (never referenced)
  assert int(metrics["flagged"]) == 1
  state = state._replace(depth=jnp.array([2, 2, 4]))
  state, metrics = plugin.update(state, batch, aux, jnp.int32(1))
  np.testing.assert_array_equal(state.depth, [1, 3, 4])  # 0: still above; 1: gap 0.1 < restore: back one group


@pytest.mark.parametrize("margin", [0.0, 50.0])
def test_adaptive_depth_in_a_run_follows_the_margin(margin):
  """A run past its held-out optimum: with margin 0 the gap lowers depths once the training windows pull away from
  the held-out ones; a margin of 50 nats per token is never reached, so no depth changes."""
  rng = np.random.default_rng(0)
  windows = rng.integers(3, 20, (22, 12)).astype(np.int32)
  heldout = windows[16:]
  config = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=12), num_steps=40, batch_size=8,
                       learning_rate=1e-2, warmup_steps=2, seed=0)
  spec = ProbeSpec(enabled=True, calibrate_every=4, min_seen=1, memorization_margin=margin)
  plugin = make_probe_plugin(spec, num_groups=3)
  result = train_and_measure(config, windows, np.arange(16), vocab_size=20, measure_at=(40,), data_seed=1,
                             trainer=Trainer(config, 20, plugins=(plugin,)), heldout=heldout)
  state = result["extras"]["probe"]
  assert np.isfinite(float(state.gap_upper)), "the run must pass its held-out optimum for the test to bite"
  depth = np.asarray(state.depth)[:16]
  if margin == 0.0:
    assert (depth < 3).any()
    assert float(state.gap_upper) <= np.nanmax(np.asarray(plugin.gap_nats(state)))
  else:
    assert (depth == 3).all() and float(state.gap_upper) > 40.0


def test_root_loss_ema_folds_the_rows_root_losses():
  """The running root loss is an EMA of sqrt(token loss) means, computed by hand from the logits."""
  plugin = make_probe_plugin(ProbeSpec(enabled=True, reference_ema=0.5), num_groups=3)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5)).astype(np.float32)
  tokens = np.array([[1, 2, 3, 4], [4, 3, 0, 0]], np.int32)  # PAD targets are not scored
  logp = logits[:, :-1] - np.log(np.exp(logits[:, :-1]).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  weights = (tokens[:, 1:] != 0).astype(np.float32)
  root = (np.sqrt(nll) * weights).sum(1) / weights.sum(1)
  batch = {"tokens": jnp.asarray(tokens), "example_id": jnp.array([0, 1])}
  aux = {"per_example_loss": jnp.ones(2), "logits": jnp.asarray(logits), "hidden": [jnp.ones((2, 4, 3))] * 2}
  state, _ = plugin.update(plugin.init(2), batch, aux, jnp.int32(0))
  np.testing.assert_allclose(state.running_root, root, rtol=1e-5)
  state, _ = plugin.update(state._replace(running_root=jnp.array([1.0, 1.0])), batch, aux, jnp.int32(1))
  np.testing.assert_allclose(state.running_root, 0.5 + 0.5 * root, rtol=1e-5)


def test_the_gap_refuses_a_state_without_its_running_reference():
  plugin = make_probe_plugin(ProbeSpec(enabled=True), num_groups=3)
  state = plugin.init(2)._replace(running_reference=None)
  batch = {"tokens": jnp.ones((2, 4), jnp.int32), "example_id": jnp.array([0, 1])}
  aux = {"per_example_loss": jnp.ones(2), "logits": jnp.zeros((2, 4, 5)), "hidden": [jnp.ones((2, 4, 3))] * 2}
  with pytest.raises(ValueError, match="running_reference"):
    plugin.update(state, batch, aux, jnp.int32(0))
