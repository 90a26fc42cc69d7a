"""Parameters, optimizer and plugin state sharded over 4 fake devices (FSDP, 1-D and 2-D meshes): the governed
step (depth, per-group and exact routing; the probe) equals the single-device step, and so do influence features.

Each routing mode is trained once (module cache); the probe, feature and checkpoint checks reuse the per-group run
on the 2-D mesh, which has the probe on.
"""

import dataclasses

import chex
import jax
import numpy as np
import pytest

from govjax.core.checkpoint import Checkpoints
from govjax.core.config import GovernanceSpec, ProbeSpec
from govjax.core.mesh import data_mesh, gather_to_host
from govjax.provenance.featurize import FeatureConfig, transformer_featurizer
from govjax.train.governance import governance_components
from govjax.train.hosts import restore_on_mesh
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.sharding import state_bytes_per_device, state_shardings
from govjax.train.step import create_train_state, make_train_step
from tests.multidevice.common import AdaptiveDepthPlugin, assert_states_close, tiny_config, tiny_data

STEPS = 3
MIN_ELEMENTS = 64  # the tiny model's leaves are small: shard everything but norms and biases


def _sharded_leaves(state) -> list:
  leaves = jax.tree.leaves((state.params, state.opt_state, state.extras))
  return [x for x in leaves if not x.sharding.is_fully_replicated]


def _run(config, plugins, mesh):
  data = tiny_data()
  components = governance_components(config)
  plugins = tuple(plugins) + tuple(components.plugins)
  extras = {p.name: p.init(data.batches.num_examples) for p in plugins}
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size, tx=components.tx,
                                              extras=extras)
  single = make_train_step(graphdef, tx, components.loss_fn, gradients=components.gradients, plugins=plugins,
                           donate=False)
  sharded = sharded_train_step(graphdef, tx, components.loss_fn, plugins, mesh, gradients=components.gradients,
                               state_like=state, param_sharding="fsdp", min_elements=MIN_ELEMENTS)
  ref, par = state, place_state(state, mesh, "fsdp", min_elements=MIN_ELEMENTS)
  for s in range(STEPS):
    batch = data.batches.train[s]
    mask = data.batches.group_mask(batch)
    ref, m1 = single(ref, batch, mask)
    par, m2 = sharded(par, batch, mask)
    chex.assert_trees_all_close(jax.device_get(m1), gather_to_host(m2, mesh), rtol=2e-5, atol=2e-6)
  # The layout is kept from step to step, and it is really sharded: most bytes live on one device only once.
  assert par.params is not None and _sharded_leaves(par)
  expected = state_shardings(state, mesh, "fsdp", min_elements=MIN_ELEMENTS)
  for leaf, sharding in zip(jax.tree.leaves(par), jax.tree.leaves(expected), strict=True):
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
  replicated = state_bytes_per_device(state, mesh, "replicated")["total"]
  sharded_bytes = state_bytes_per_device(state, mesh, "fsdp", min_elements=MIN_ELEMENTS)["total"]
  assert sharded_bytes < 0.6 * replicated
  assert_states_close(ref, gather_to_host(par, mesh), lr_bound=2 * STEPS * config.learning_rate)
  return graphdef, ref, par, data


CASES = {"depth-1d": ("depth", 1, False), "per_group-2d-probe": ("per_group", 2, True),
         "exact-1d": ("exact", 1, False)}


@pytest.fixture(scope="module")
def runs() -> dict:
  return {}


def _case(runs, name):
  """Trains a case once per module: ``(mesh, graphdef, single-device state, sharded state, data)``."""
  if name not in runs:
    routing, model_parallel, probe = CASES[name]
    config = dataclasses.replace(tiny_config(), governance=GovernanceSpec(routing=routing, normaliser="contributors"),
                                 probe=ProbeSpec(enabled=probe, min_seen=1))
    mesh = data_mesh(4, model_parallel=model_parallel)
    runs[name] = (mesh, *_run(config, (AdaptiveDepthPlugin(num_groups=3),), mesh))
  return runs[name]


@pytest.mark.parametrize("name", list(CASES))
def test_fsdp_routed_step_equals_single_device(runs, name):
  _case(runs, name)  # _run asserts metrics, layout, bytes and the final state


def test_fsdp_probe_state_sharded_and_features_equal(runs, tmp_path):
  mesh, graphdef, ref, par, data = _case(runs, "per_group-2d-probe")
  probe_leaves = [x for x in jax.tree.leaves(par.extras) if x.ndim and x.shape[0] == data.batches.num_examples]
  assert any(not x.sharding.is_fully_replicated for x in probe_leaves)  # [N, 3] statistics: split by example
  # Influence features from sharded parameters equal those from the single-device ones.
  featurizer = transformer_featurizer(graphdef, num_layers=1, config=FeatureConfig(k=16))
  batch = data.batches.train[0]
  mask = np.asarray(data.batches.group_mask(batch))
  expected = featurizer(jax.device_get(ref.params), {"tokens": batch["tokens"]}, mask)
  got = featurizer(par.params, {"tokens": batch["tokens"]}, mask)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  # A sharded state checkpoints and restores with the same layout (each device reading its slices).
  with Checkpoints(tmp_path / "ckpt", max_to_keep=None) as ckpts:
    ckpts.save(par, {"step": STEPS}, step=STEPS)
  shardings = state_shardings(ref, mesh, "fsdp", min_elements=MIN_ELEMENTS)
  restored, meta = restore_on_mesh(tmp_path / "ckpt", ref, mesh, shardings=shardings)
  assert meta["step"] == STEPS
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(par), strict=True):
    assert a.sharding.is_equivalent_to(b.sharding, a.ndim)
    np.testing.assert_array_equal(gather_to_host(a, mesh), gather_to_host(b, mesh))
