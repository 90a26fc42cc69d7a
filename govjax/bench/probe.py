"""Memorization probe: step-time overhead and how well its evidence predicts extractable memorization.

Protocol (``govjax bench probe --json [--quick]``):

1. ``probe_overhead``: one model (4 layers, width 128, context 128, batch 32; ``--quick``: 2 layers, width 64,
   context 64, batch 16), two jitted train steps from the same state: the plain step and the step with the
   probe plugin (statistics from the step's own forward pass, per-example EMA, adaptive depth). Both are
   compiled first, then timed alternately (``--overhead-steps`` each, blocking on the result); the figure is
   median(with probe) / median(without). Target <= 1.03.
2. ``probe_auc``: a small model (2 layers, width 64, context 64) trains on ``--num-windows`` windows drawn from a
   random first-order Markov chain over 40 pitches (learnable structure, but each window is its own sequence);
   ``--repeated-fraction`` of them are sampled ``--repeat-factor`` times more often. The probe observes
   (``adaptive=False`` so that depth changes do not alter what is measured) and is calibrated on held-out
   windows of the same chain. At the end, the extraction audit labels every training window extractable or
   not (``k = m = 16``, greedy); ``probe_auc`` is the ROC AUC of the probe's evidence (minus the EMA of its
   signal) against these labels. AUCs of each statistic and against the "repeated" label are reported too.
   Target >= 0.9.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn.metrics import roc_auc_score

from govjax.audit.extraction import extraction_audit
from govjax.audit.membership import membership_inference
from govjax.core.config import ModelSpec, TrainConfig
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.probe.monitor import ProbeSpec, make_probe_plugin
from govjax.probe.stats import STATISTICS
from govjax.train.step import create_train_state, make_train_step, plain_loss


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
  ok = ~np.isnan(scores)
  labels, scores = labels[ok], scores[ok]
  if labels.min(initial=1) == labels.max(initial=0):
    return None
  return float(roc_auc_score(labels, scores))


def measure_overhead(*, layers: int, width: int, context: int, batch: int, steps: int, seed: int) -> dict:
  """Median step time with the probe over without, same state and batches, timed alternately."""
  config = TrainConfig(model=ModelSpec(num_layers=layers, width=width, num_heads=4, context=context),
                       num_steps=1000, batch_size=batch, seed=seed)
  groups = layers + 2
  num_examples = 4096
  plugin = make_probe_plugin(ProbeSpec(enabled=True), groups)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=VOCAB_SIZE,
                                              extras={"probe": plugin.init(num_examples)})
  plain = make_train_step(graphdef, tx, plain_loss, donate=False)
  probed = make_train_step(graphdef, tx, functools.partial(plain_loss, return_hidden=True), plugins=(plugin,),
                           donate=False)
  plain_state = state._replace(extras={})
  rng = np.random.default_rng(seed)
  batches = [{"tokens": jnp.asarray(rng.integers(3, VOCAB_SIZE, (batch, context)), jnp.int32),
              "example_id": jnp.asarray(rng.integers(0, num_examples, batch), jnp.int32)} for _ in range(4)]
  mask = jnp.ones((batch, groups), jnp.float32)
  for b in batches[:2]:
    jax.block_until_ready(plain(plain_state, b, mask))
    jax.block_until_ready(probed(state, b, mask))
  times = {"plain": [], "probe": []}
  for i in range(steps):
    b = batches[i % len(batches)]
    order = (("plain", plain, plain_state), ("probe", probed, state))
    for name, fn, st in order if i % 2 == 0 else order[::-1]:
      t0 = time.perf_counter()
      jax.block_until_ready(fn(st, b, mask))
      times[name].append(time.perf_counter() - t0)
  plain_ms = statistics.median(times["plain"]) * 1e3
  probe_ms = statistics.median(times["probe"]) * 1e3
  return {"probe_overhead": probe_ms / plain_ms, "step_ms_plain": plain_ms, "step_ms_probe": probe_ms,
          "overhead_model": f"{layers} layers, width {width}, context {context}, batch {batch}",
          "overhead_timed_steps": steps}


def markov_windows(seed: int, num: int, context: int, *, states: int = 40, alpha: float = 0.2) -> np.ndarray:
  """``[num, context]`` windows of a random first-order Markov chain over ``states`` tokens (from 3)."""
  rng = np.random.default_rng(seed)
  transition = np.random.default_rng(12345).dirichlet(np.full(states, alpha), size=states)
  cumulative = np.cumsum(transition, axis=1)
  out = np.zeros((num, context), np.int64)
  out[:, 0] = rng.integers(0, states, num)
  for t in range(1, context):
    u = rng.random(num)[:, None]
    out[:, t] = np.minimum((u > cumulative[out[:, t - 1]]).sum(axis=1), states - 1)
  return (out + 3).astype(np.int32)


def measure_auc(*, num_windows: int, repeated_fraction: float, repeat_factor: float, steps: int, signal: str,
                seed: int, batch: int = 32, context: int = 64) -> dict:
  """Trains with the observing probe, then compares its evidence with the extraction audit's labels."""
  config = TrainConfig(model=ModelSpec(num_layers=2, width=64, num_heads=4, context=context, mlp_ratio=4),
                       num_steps=steps, batch_size=batch, learning_rate=1e-2, warmup_steps=20, seed=seed)
  groups = config.model.num_layers + 2
  windows = markov_windows(seed, num_windows, context)
  heldout = markov_windows(seed + 1, 256, context)
  rng = np.random.default_rng(seed)
  repeated = np.zeros(num_windows, bool)
  repeated[rng.choice(num_windows, int(round(repeated_fraction * num_windows)), replace=False)] = True
  weights = np.where(repeated, repeat_factor, 1.0)
  weights /= weights.sum()
  spec = ProbeSpec(enabled=True, signal=signal, adaptive=False, calibrate_every=max(steps // 4, 1))
  plugin = make_probe_plugin(spec, groups)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=VOCAB_SIZE,
                                              extras={"probe": plugin.init(num_windows)})
  step_fn = make_train_step(graphdef, tx, functools.partial(plain_loss, return_hidden=True), plugins=(plugin,))
  eval_batches = [{"tokens": heldout[i:i + 64]} for i in range(0, len(heldout), 64)]
  mask = jnp.ones((batch, groups), jnp.float32)
  t0 = time.perf_counter()
  for s in range(steps):
    if s % spec.calibrate_every == 0:
      extras = dict(state.extras)
      extras["probe"] = plugin.calibrate(extras["probe"], nnx.merge(graphdef, state.params), eval_batches)
      state = state._replace(extras=extras)
    ids = np.random.default_rng([seed, s]).choice(num_windows, batch, p=weights)
    state, _ = step_fn(state, {"tokens": jnp.asarray(windows[ids]), "example_id": jnp.asarray(ids, jnp.int32)},
                       mask)
  jax.block_until_ready(state.params)
  train_s = time.perf_counter() - t0
  model = nnx.merge(graphdef, state.params)
  probe_state = state.extras["probe"]
  train_audit = extraction_audit(model, windows, k=16, m=16)
  held_audit = extraction_audit(model, heldout, k=16, m=16)
  labels = train_audit.exact.astype(int)
  seen = np.asarray(probe_state.seen) > 0
  ema = np.asarray(probe_state.ema, np.float64)
  evidence = plugin.evidence(probe_state)
  result = {
      "probe_auc": _auc(labels[seen], evidence[seen]),
      "probe_signal": signal,
      "probe_auc_repeated": _auc(repeated[seen].astype(int), evidence[seen]),
      "num_examples": int(num_windows),
      "num_seen": int(seen.sum()),
      "num_repeated": int(repeated.sum()),
      "num_extractable": int(labels.sum()),
      "num_extractable_repeated": int(labels[repeated].sum()),
      "extraction_rate_train": float(labels.mean()),
      "extraction_rate_heldout": float(held_audit.exact.mean()),
      "token_match_train": float(np.nanmean(train_audit.token_match)),
      "token_match_heldout": float(np.nanmean(held_audit.token_match)),
      "membership_auc": membership_inference(train_audit.loss, held_audit.loss)["auc"],
      "auc_train_steps": steps,
      "auc_train_s": train_s,
      "calibrated_threshold": float(probe_state.low[plugin.signal_index]),
      "num_below_threshold": int(np.sum(seen & (ema[:, plugin.signal_index] < float(
          probe_state.low[plugin.signal_index])))),
  }
  for index, name in enumerate(STATISTICS):
    result[f"auc_by_{name}"] = _auc(labels[seen], -ema[seen, index])
  return result


def run(args: argparse.Namespace) -> dict:
  if args.quick:
    overhead = measure_overhead(layers=2, width=64, context=64, batch=16, steps=args.overhead_steps, seed=args.seed)
    steps = min(args.steps, 200)
  else:
    overhead = measure_overhead(layers=4, width=128, context=128, batch=32, steps=args.overhead_steps,
                                seed=args.seed)
    steps = args.steps
  auc = measure_auc(num_windows=args.num_windows, repeated_fraction=args.repeated_fraction,
                    repeat_factor=args.repeat_factor, steps=steps, signal=args.signal, seed=args.seed)
  result = {**overhead, **auc, "quick": bool(args.quick), "backend": jax.default_backend()}
  result["targets_met"] = bool(result["probe_overhead"] <= 1.03 and (result["probe_auc"] or 0.0) >= 0.9)
  return result
