"""Tiny models, data and a plugin-like per-example state shared by the multi-device tests."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from govjax.core.config import ModelSpec, TrainConfig
from tests.train.synthetic import synthetic_data


def tiny_config(**kw) -> TrainConfig:
  base = dict(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=16), batch_size=8, num_steps=6,
              learning_rate=1e-2, warmup_steps=2, seed=3)
  base.update(kw)
  return TrainConfig(**base)


def tiny_data(batch_size: int = 8):
  # 4 works with depths 3, 2, 1, 1 of G = 3 groups (1 block): a governed, depth-masked batch.
  return synthetic_data(context=16, num_windows=32, batch_size=batch_size, vocab_size=12, num_groups=3,
                        depth=[3, 2, 1, 1])


class DepthState(NamedTuple):
  ema_loss: jax.Array  # float32 [N]
  seen: jax.Array  # int32 [N]
  depth: jax.Array  # int32 [N]: the adaptive depth each example may still train at


class AdaptiveDepthPlugin:
  """Plugin-like per-example state keyed by ``example_id``: an EMA of each example's loss; an example whose
  EMA falls below ``threshold`` loses one depth group (never below 1)."""

  name = "adaptive"
  needs_hidden = False

  def __init__(self, num_groups: int, threshold: float = 2.3, decay: float = 0.5):
    self.num_groups = num_groups
    self.threshold = threshold
    self.decay = decay

  def init(self, num_examples: int) -> DepthState:
    return DepthState(jnp.zeros((num_examples,), jnp.float32), jnp.zeros((num_examples,), jnp.int32),
                      jnp.full((num_examples,), self.num_groups, jnp.int32))

  def effective_mask(self, state: DepthState, batch: dict, group_mask: jax.Array) -> jax.Array:
    depth = state.depth[batch["example_id"]]
    allowed = (jnp.arange(self.num_groups)[None, :] >= self.num_groups - depth[:, None]).astype(group_mask.dtype)
    return jnp.minimum(group_mask, allowed)

  def update(self, state: DepthState, batch: dict, aux: dict, step: jax.Array):
    del step
    ids = batch["example_id"]
    loss = aux["per_example_loss"]
    old = state.ema_loss[ids]
    new = jnp.where(state.seen[ids] > 0, self.decay * old + (1 - self.decay) * loss, loss)
    ema = state.ema_loss.at[ids].set(new)
    seen = state.seen.at[ids].add(1)
    lowered = jnp.where(new < self.threshold, jnp.maximum(state.depth[ids] - 1, 1), state.depth[ids])
    depth = state.depth.at[ids].set(lowered)
    return DepthState(ema, seen, depth), {"mean_depth": depth.astype(jnp.float32).mean()}


def leaves(state) -> list[tuple[str, np.ndarray]]:
  tree = (state.params, state.opt_state, state.extras, state.step)
  return [(jax.tree_util.keystr(path), np.asarray(x)) for path, x in jax.tree_util.tree_leaves_with_path(tree)]


def assert_states_close(ref, par, *, lr_bound: float, rtol: float = 2e-5, atol: float = 2e-6) -> None:
  """Every leaf of two train states agrees tightly, except attention key biases.

  A key bias shifts every attention logit of a query by the same amount, so softmax ignores it and its exact
  gradient is zero; the computed one is float rounding noise (~1e-9) that Adam normalises to an update of up
  to the learning rate, whatever the summation order. For those leaves the test checks the bound instead.
  """
  for (path, a), (path_b, b) in zip(leaves(ref), leaves(par), strict=True):
    assert path == path_b
    if "'key'" in path and "'bias'" in path and a.dtype.kind == "f":
      assert np.abs(a - b).max() <= lr_bound, path
      continue
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=path)


def governed_components(config: TrainConfig):
  """The "depth" routed loss with contributor normalisation when routing is available, else the plain loss."""
  import dataclasses

  from govjax.core.config import GovernanceSpec
  from govjax.train.governance import governance_components

  try:
    import govjax.routing.loss  # noqa: F401

    config = dataclasses.replace(config, governance=GovernanceSpec(routing="depth", normaliser="contributors"))
  except ImportError:
    pass
  return governance_components(config)


def probe_config(probe: bool) -> TrainConfig:
  """The tiny config, with the memorization probe (default signal, calibrated every step) when ``probe``."""
  from govjax.core.config import ProbeSpec

  return tiny_config(probe=ProbeSpec(enabled=True, min_seen=1, calibrate_every=1)) if probe else tiny_config()


def step_plugins(config: TrainConfig):
  """``(components, plugins)``: the governed components and the step's plugins (the probe when the config enables
  it, else the test's :class:`AdaptiveDepthPlugin`)."""
  components = governed_components(config)
  plugins = tuple(components.plugins) if config.probe.enabled else (AdaptiveDepthPlugin(num_groups=3),)
  return components, plugins
