import dataclasses

import chex
import jax
import numpy as np
import pytest

from govjax.core.config import GovernanceSpec
from govjax.core.mesh import data_mesh, shard_batch, shard_rows
from govjax.train.governance import governance_components
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.step import create_train_state, make_train_step
from tests.multidevice.common import AdaptiveDepthPlugin, assert_states_close, tiny_config, tiny_data

STEPS = 4


def _run_both(config, plugins):
  data = tiny_data()
  components = governance_components(config)
  extras = {p.name: p.init(data.batches.num_examples) for p in plugins}
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size, tx=components.tx,
                                              extras=extras)
  single = make_train_step(graphdef, tx, components.loss_fn, gradients=components.gradients, plugins=plugins,
                           donate=False)
  mesh = data_mesh(4)
  sharded = sharded_train_step(graphdef, tx, components.loss_fn, plugins, mesh, gradients=components.gradients)
  ref, par = state, place_state(state, mesh)
  ref_metrics, par_metrics = [], []
  for s in range(STEPS):
    batch = data.batches.train[s]
    mask = data.batches.group_mask(batch)
    ref, m1 = single(ref, batch, mask)
    if s % 2:  # host arrays (this process's rows) or global arrays already on the mesh
      batch, mask = shard_batch(batch, mesh), shard_rows(mask, mesh)
    par, m2 = sharded(par, batch, mask)
    ref_metrics.append(jax.device_get(m1))
    par_metrics.append(jax.device_get(m2))
  assert int(par.step) == STEPS
  assert_states_close(ref, par, lr_bound=2 * STEPS * config.learning_rate)
  for m1, m2 in zip(ref_metrics, par_metrics, strict=True):
    chex.assert_trees_all_close(m1, m2, rtol=2e-5, atol=2e-6)
  # Parameters and optimizer state stay replicated on all 4 devices.
  for leaf in jax.tree.leaves((par.params, par.opt_state, par.extras)):
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
  return ref, par, data


def test_sharded_plain_step_with_per_example_state_equals_single_device():
  plugin = AdaptiveDepthPlugin(num_groups=3)
  ref, par, data = _run_both(tiny_config(), (plugin,))
  depth = par.extras["adaptive"].depth
  # Every device holds the same per-example state, equal to the single-device one, and it did change.
  shards = [np.asarray(s.data) for s in depth.addressable_shards]
  assert all(np.array_equal(shards[0], s) for s in shards[1:])
  np.testing.assert_array_equal(np.asarray(ref.extras["adaptive"].depth), shards[0])
  assert int(np.asarray(par.extras["adaptive"].seen).sum()) == STEPS * 8
  assert (shards[0] < 3).any()


def test_sharded_depth_routed_step_equals_single_device():
  config = tiny_config()
  config = dataclasses.replace(config, governance=GovernanceSpec(routing="depth", normaliser="contributors"))
  _run_both(config, (AdaptiveDepthPlugin(num_groups=3),))


@pytest.mark.parametrize("governance", [
    GovernanceSpec(routing="none", baseline="dpsgd", dp_clip=0.05, dp_noise=1.0),  # per-example, clipped, noised
    GovernanceSpec(routing="exact", normaliser="contributors"),  # per-example, routed aggregate
], ids=["dpsgd", "exact"])
def test_sharded_per_example_strategies_equal_single_device(governance):
  """DP-SGD and the exact router are a gradient strategy plus an optax transform: the same step, data-parallel."""
  config = dataclasses.replace(tiny_config(), governance=governance)
  ref, _, _ = _run_both(config, ())
  assert int(ref.step) == STEPS


def test_batch_not_divisible_by_devices_is_refused():
  config = tiny_config()
  data = tiny_data()
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size)
  mesh = data_mesh(4)
  step = sharded_train_step(graphdef, tx, mesh=mesh)
  batch = {k: v[:6] for k, v in data.batches.train[0].items()}
  with pytest.raises(ValueError, match="not divisible"):
    step(place_state(state, mesh), batch, data.batches.group_mask(batch))
