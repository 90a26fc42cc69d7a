"""Routing cost and exactness: plain vs gated (depth) vs per-group vs exact (per-example) train steps.

Protocol (``govjax bench routing --json [--quick]``):

1. Build the demo transformer (experiments/configs/demo.py: 4 layers, width 128, 4 heads, context 128; vocab 72)
   and a random batch of ``--batch`` rows with a random depth mask (each row trains the top 1..G groups).
2. Build five train steps with :func:`govjax.train.step.make_train_step` and the components of
   :func:`govjax.train.governance.governance_components` (normaliser ``"contributors"``, clip + AdamW): ``plain``
   (routing ``"none"``), ``gated`` (``"depth"``), ``per_group`` (routed at each operation where parameters meet
   the examples, :mod:`govjax.routing.opwise`), ``per_group_whole_group`` (the same gradients from one
   ``custom_vjp`` per group whose backward runs twice: the implementation before the per-operation one) and
   ``exact`` (per-example gradients in microbatches of ``--microbatch``). Each is compiled and warmed up, then
   timed ``--repeats`` times, interleaved (plain, gated, per_group, ..., plain, ...), without buffer donation so
   every call starts from the same state; the medians are reported, with each one's ratio to ``plain`` (all from
   the same run, so a loaded machine shifts them together).
3. ``max_rel_err_vs_reference``: the routed gradients of ``depth`` and ``per_group`` (for the depth mask) and of
   ``per_group`` (both implementations) for an arbitrary non-monotone soft mask, compared with the per-example
   reference (exact path, normaliser ``"batch"``) as ``max |a - b| / max |b|`` over the whole parameter tree.

``--quick`` uses a 2-layer, width-32, context-32 model at batch 8 for a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig
from govjax.models.transformer import count_params
from govjax.routing.loss import make_routed_loss
from govjax.train.governance import governance_components
from govjax.train.step import create_train_state, make_train_step

VOCAB_SIZE = 72




def bench_config(quick: bool, batch: int | None) -> TrainConfig:
  """The benchmarked config: the demo model, or a small one with ``quick``."""
  if quick:
    model = ModelSpec(num_layers=2, width=32, num_heads=2, context=32)
  else:
    model = ModelSpec(num_layers=4, width=128, num_heads=4, context=128)
  return TrainConfig(name="bench-routing", model=model, batch_size=batch or (8 if quick else 32), num_steps=1000,
                     warmup_steps=10)


def _depth_mask(key: jax.Array, batch: int, num_groups: int) -> jax.Array:
  depth = jax.random.randint(key, (batch,), 1, num_groups + 1)
  return (jnp.arange(num_groups)[None, :] >= num_groups - depth[:, None]).astype(jnp.float32)


def _arbitrary_mask(key: jax.Array, batch: int, num_groups: int) -> jax.Array:
  k1, k2 = jax.random.split(key)
  return jnp.where(jax.random.bernoulli(k1, 0.6, (batch, num_groups)),
                   jax.random.uniform(k2, (batch, num_groups)), 0.0)


def _timed(fn, *args) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def _max_rel_err(a, b) -> float:
  """``max |a - b|`` over all parameters divided by ``max |b|`` over all parameters.

  The scale is global rather than per leaf: some leaves (attention key biases, which softmax ignores) have an
  exactly-zero true gradient, so per leaf the ratio would compare float rounding noise with itself.
  """
  pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
  scale = max(float(np.abs(y).max()) for _, y in pairs)
  diff = max(float(np.abs(x - y).max()) for x, y in pairs)
  return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def run(args: argparse.Namespace) -> dict:
  config = bench_config(args.quick, args.batch)
  num_groups = config.model.num_layers + 2
  batch_size, context = config.batch_size, config.model.context
  key_tokens, key_mask, key_arbitrary = jax.random.split(jax.random.PRNGKey(args.seed), 3)
  batch = {"tokens": jax.random.randint(key_tokens, (batch_size, context), 1, VOCAB_SIZE)}
  mask = _depth_mask(key_mask, batch_size, num_groups)

  steps, states = {}, {}
  for name, routing in (("plain", "none"), ("gated", "depth"), ("per_group", "per_group"),
                        ("per_group_whole_group", "per_group"), ("exact", "exact")):
    cfg = dataclasses.replace(config, governance=GovernanceSpec(routing=routing, normaliser="contributors"))
    components = governance_components(cfg, microbatch=args.microbatch)
    graphdef, state, tx, _ = create_train_state(cfg, vocab_size=VOCAB_SIZE, tx=components.tx)
    if name == "per_group_whole_group":
      steps[name] = make_train_step(graphdef, tx, make_routed_loss("per_group", opwise=False),
                                    gradients=components.gradients, plugins=components.plugins, donate=False)
    else:
      steps[name] = components.train_step(graphdef, donate=False)
    states[name] = state
    jax.block_until_ready(steps[name](state, batch, mask))  # compile
    jax.block_until_ready(steps[name](state, batch, mask))  # warm up
  times = {name: [] for name in steps}
  for _ in range(args.repeats):
    for name, step in steps.items():
      times[name].append(_timed(step, states[name], batch, mask))
  median = {name: statistics.median(t) for name, t in times.items()}

  params = states["plain"].params
  grad_fns = {mode: _grad_fn(graphdef, make_routed_loss(mode, microbatch=args.microbatch))
              for mode in ("depth", "per_group", "exact")}
  grad_fns["per_group_whole_group"] = _grad_fn(graphdef, make_routed_loss("per_group", opwise=False))
  reference = grad_fns["exact"](params, batch, mask)
  errors = {f"{mode}_depth_mask": _max_rel_err(grad_fns[mode](params, batch, mask), reference)
            for mode in ("depth", "per_group", "per_group_whole_group")}
  arbitrary = _arbitrary_mask(key_arbitrary, batch_size, num_groups)
  arbitrary_reference = grad_fns["exact"](params, batch, arbitrary)
  for mode in ("per_group", "per_group_whole_group"):
    errors[f"{mode}_arbitrary_mask"] = _max_rel_err(grad_fns[mode](params, batch, arbitrary), arbitrary_reference)
  model = nnx.merge(graphdef, params)
  return {
      "plain_step_s": median["plain"],
      "gated_step_s": median["gated"],
      "per_group_step_s": median["per_group"],
      "exact_step_s": median["exact"],
      "gated_over_plain": median["gated"] / median["plain"],
      "per_group_over_plain": median["per_group"] / median["plain"],
      "per_group_whole_group_step_s": median["per_group_whole_group"],
      "per_group_whole_group_over_plain": median["per_group_whole_group"] / median["plain"],
      "exact_over_plain": median["exact"] / median["plain"],
      "max_rel_err_vs_reference": max(errors.values()),
      "rel_err_vs_reference": errors,
      "num_params": count_params(model),
      "batch_shape": [batch_size, context],
      "num_groups": num_groups,
      "repeats": args.repeats,
      "microbatch": args.microbatch,
      "model": dataclasses.asdict(config.model),
      "device": str(jax.devices()[0]),
  }


def _grad_fn(graphdef, loss_fn):
  @jax.jit
  def grads(params, batch, mask):
    return jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p), batch, mask, None)[0])(params)

  return grads
