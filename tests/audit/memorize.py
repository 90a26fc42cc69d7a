"""One tiny training run shared by the probe and audit tests (computed once per test session).

Each batch of 8 rows holds the 4 windows of a *memorize set* (every step: examples 0..3) and 4 windows of a
*pool* of 60 (examples 4..63, each seen every 15 steps). The memorization probe rides along with adaptive depth
and is calibrated every 10 steps on 16 held-out windows, as the training loop does.
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.config import ModelSpec, TrainConfig
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.probe.monitor import ProbeSpec, make_probe_plugin
from govjax.train.step import create_train_state, make_train_step, plain_loss

CONTEXT = 32
TOKEN_HIGH = 24
NUM_FIXED = 4
NUM_POOL = 60
NUM_STEPS = 60
CALIBRATE_EVERY = 10


def random_windows(seed: int, num: int, context: int = CONTEXT) -> np.ndarray:
  """``[num, context]`` int32 tokens drawn uniformly from ``[3, TOKEN_HIGH)``."""
  return np.random.default_rng(seed).integers(3, TOKEN_HIGH, size=(num, context)).astype(np.int32)


def tiny_config(num_steps: int = NUM_STEPS) -> TrainConfig:
  model = ModelSpec(num_layers=2, width=32, num_heads=2, context=CONTEXT, mlp_ratio=2)
  return TrainConfig(model=model, num_steps=num_steps, learning_rate=1e-2, warmup_steps=10, weight_decay=0.0,
                     batch_size=8)


@dataclasses.dataclass
class TinyRun:
  config: TrainConfig
  model: nnx.Module
  state: object
  plugin: object
  fixed: np.ndarray
  pool: np.ndarray
  heldout: np.ndarray
  depth_counts: list


def batch_at(step: int, fixed: np.ndarray, pool: np.ndarray) -> dict:
  rows = (step * 4 + np.arange(4)) % len(pool)
  tokens = np.concatenate([fixed, pool[rows]])
  ids = np.concatenate([np.arange(len(fixed)), len(fixed) + rows]).astype(np.int32)
  return {"tokens": tokens, "example_id": ids}


@functools.lru_cache(maxsize=1)
def tiny_run() -> TinyRun:
  config = tiny_config()
  fixed, pool, heldout = random_windows(0, NUM_FIXED), random_windows(1, NUM_POOL), random_windows(2, 16)
  groups = config.model.num_layers + 2
  plugin = make_probe_plugin(ProbeSpec(enabled=True, signal="loss", calibrate_every=CALIBRATE_EVERY,
                                       percentile=5.0, restore_percentile=20.0, min_depth=1), groups)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=VOCAB_SIZE,
                                              extras={"probe": plugin.init(NUM_FIXED + NUM_POOL)})
  step = make_train_step(graphdef, tx, functools.partial(plain_loss, return_hidden=True), plugins=(plugin,))
  eval_batches = [{"tokens": heldout, "weight": np.ones(len(heldout), np.float32)}]
  depth_counts = []
  for s in range(config.num_steps):
    if s % CALIBRATE_EVERY == 0:
      extras = dict(state.extras)
      extras["probe"] = plugin.calibrate(extras["probe"], nnx.merge(graphdef, state.params), eval_batches)
      state = state._replace(extras=extras)
    batch = {k: jnp.asarray(v) for k, v in batch_at(s, fixed, pool).items()}
    state, metrics = step(state, batch, jnp.ones((8, groups)))
    depth_counts.append(np.asarray(metrics["probe/depth_counts"]).tolist())
  return TinyRun(config, nnx.merge(graphdef, state.params), state, plugin, fixed, pool, heldout, depth_counts)
