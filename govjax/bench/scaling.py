"""Scaling: per-device bytes of the size ladder (replicated vs FSDP) and sharded == single-device on fake devices.

Protocol (``govjax bench scaling --json [--ladder experiments/configs/ladder.py] [--devices 1,2,4]
[--examples 100000] [--check-steps 3] [--timing]``):

1. **Bytes per device.** For every rung of the ladder config (``LADDER``, ``get_config(name)``, ``num_params``;
   experiments/configs/ladder.py: demo to ~1B parameters) the train state (parameters, the governed optimizer
   chain's state, the memorization probe's per-example state for ``--examples`` examples) is built abstractly
   (``jax.eval_shape``: nothing is allocated) and laid out on an ``AbstractMesh`` of ``N`` devices for every
   ``--devices`` count, replicated and FSDP (:mod:`govjax.train.sharding`). ``param_bytes_per_device[N]`` gives the
   bytes of the most loaded device per part (``params``, ``opt_state``, ``probe``, ``total``) for both layouts and
   ``fsdp_over_replicated`` (total bytes). These come from the actual shardings the train step uses, not from a
   formula.
2. **Sharded == single device.** In a subprocess with 4 fake CPU devices a small governed model (per-group
   routing, contributor normaliser, the probe on) trains ``--check-steps`` steps single-device and FSDP-sharded on
   a ``4 x 1`` and a ``2 x 2`` (data x model) mesh from the same state and batches. Reported per mesh: the largest
   absolute difference of the per-step losses and of the final parameters, optimizer and probe state, against
   ``tolerance``. Attention key biases are reported apart (``key_bias_max_abs_diff``): softmax ignores them, so
   their exact gradient is zero and the computed one is rounding noise that Adam scales up to the learning rate;
   their bound is ``2 * steps * learning_rate``.
3. ``--timing`` (off by default): the old data-parallel timing, step seconds on each device count (fake CPU
   devices share the same cores: a smoke test, not a speed-up figure).

The default run (steps 1 and 2) takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from govjax.core.config import GovernanceSpec, ModelSpec, ProbeSpec, TrainConfig
from govjax.core.mesh import data_mesh, gather_to_host, shard_batch, shard_rows
from govjax.train.governance import governance_components
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.sharding import PARAM_SHARDINGS, abstract_train_state, state_bytes_per_device
from govjax.train.step import create_train_state, make_train_step

VOCAB_SIZE = 72
TOLERANCE = 1e-5  # float32: the sharded step reorders additions (all-reduce, reduce-scatter) and nothing else
DEFAULT_LADDER = "experiments/configs/ladder.py"


def load_ladder(path: str | os.PathLike):
  """The ladder config module (``LADDER``, ``get_config(name)``, ``num_params(config)``) from its file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"ladder config not found: {path} (pass --ladder PATH)")
  spec = importlib.util.spec_from_file_location(f"govjax_ladder_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name in ("LADDER", "get_config", "num_params"):
    if not hasattr(module, name):
      raise ValueError(f"{path}: a ladder config defines LADDER, get_config(name) and num_params(config); "
                       f"{name} is missing")
  return module


def abstract_governed_state(config: TrainConfig, *, num_examples: int, vocab_size: int = VOCAB_SIZE):
  """The governed train state of ``config`` (optimizer chain and plugins of its governance) as abstract arrays."""
  components = governance_components(config)
  extras = {p.name: jax.eval_shape(lambda p=p: p.init(num_examples)) for p in components.plugins}
  return abstract_train_state(config, vocab_size=vocab_size, extras=extras, tx=components.tx)


def bytes_per_device(state, device_counts) -> dict:
  """``{N: {layout: {params, opt_state, probe, total}, "fsdp_over_replicated": r}}`` on ``N x 1`` meshes."""
  out = {}
  for n in device_counts:
    mesh = jax.sharding.AbstractMesh((n, 1), ("data", "model"))
    row = {}
    for mode in PARAM_SHARDINGS:
      counted = state_bytes_per_device(state, mesh, mode)
      row[mode] = {"params": counted["params"], "opt_state": counted["opt_state"], "probe": counted["extras"],
                   "total": counted["total"]}
    row["fsdp_over_replicated"] = round(row["fsdp"]["total"] / row["replicated"]["total"], 4)
    out[str(n)] = row
  return out


def ladder_bytes(ladder, device_counts, *, num_examples: int) -> dict:
  """Parameter counts and per-device bytes of every rung of ``ladder`` (the module from :func:`load_ladder`)."""
  result = {}
  for name in ladder.LADDER:
    config = ladder.get_config(name)
    state = abstract_governed_state(config, num_examples=num_examples)
    count = int(ladder.num_params(config))
    low, high = ladder.LADDER[name].params_range
    result[name] = {"num_params": count, "params_range": [low, high], "in_range": bool(low <= count <= high),
                    "model": dataclasses.asdict(config.model),
                    "param_bytes_per_device": bytes_per_device(state, device_counts)}
  return result


def _check_config() -> TrainConfig:
  return TrainConfig(model=ModelSpec(num_layers=2, width=32, num_heads=2, context=16), batch_size=8, num_steps=10,
                     learning_rate=1e-2, warmup_steps=1, seed=3,
                     governance=GovernanceSpec(routing="per_group", normaliser="contributors"),
                     probe=ProbeSpec(enabled=True, min_seen=1))


def _max_abs(a, b) -> float:
  return max((float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True) if np.size(x)), default=0.0)


def _split_key_biases(tree) -> tuple[list, list]:
  keyed = jax.tree_util.tree_leaves_with_path(tree)
  is_key_bias = ["'key'" in jax.tree_util.keystr(p) and "'bias'" in jax.tree_util.keystr(p) for p, _ in keyed]
  return ([x for (_, x), k in zip(keyed, is_key_bias, strict=True) if not k],
          [x for (_, x), k in zip(keyed, is_key_bias, strict=True) if k])


def check_equivalence(steps: int) -> dict:
  """Runs in a process with 4 devices: single-device vs FSDP-sharded governed steps (see the module docstring)."""
  config = _check_config()
  rng = np.random.default_rng(0)
  num_examples, groups, batch_size, context = 32, config.model.num_groups, config.batch_size, config.model.context
  components = governance_components(config)
  extras = {p.name: p.init(num_examples) for p in components.plugins}
  graphdef, state, tx, _ = create_train_state(config, vocab_size=VOCAB_SIZE, tx=components.tx, extras=extras)
  single = make_train_step(graphdef, tx, components.loss_fn, gradients=components.gradients,
                           plugins=components.plugins, donate=False)
  batches = []
  for _ in range(steps):
    ids = rng.choice(num_examples, size=batch_size, replace=False).astype(np.int32)
    depth = rng.integers(1, groups + 1, size=batch_size)
    mask = (np.arange(groups)[None] >= groups - depth[:, None]).astype(np.float32)
    batches.append(({"tokens": rng.integers(1, VOCAB_SIZE, size=(batch_size, context)).astype(np.int32),
                     "example_id": ids}, mask))
  ref, ref_losses = state, []
  for batch, mask in batches:
    ref, metrics = single(ref, batch, mask)
    ref_losses.append(float(metrics["loss"]))
  ref = jax.device_get(ref)
  out = {"devices": len(jax.devices()), "steps": steps, "tolerance": TOLERANCE,
         "key_bias_bound": 2 * steps * config.learning_rate, "routing": config.governance.routing,
         "probe": config.probe.enabled, "meshes": {}}
  for model_parallel in (1, 2):
    mesh = data_mesh(4, model_parallel=model_parallel)
    sharded = sharded_train_step(graphdef, tx, components.loss_fn, components.plugins, mesh,
                                 gradients=components.gradients, state_like=state, param_sharding="fsdp",
                                 donate=False)
    par, losses = place_state(state, mesh, "fsdp"), []
    for batch, mask in batches:
      par, metrics = sharded(par, shard_batch(batch, mesh), shard_rows(mask, mesh))
      losses.append(float(gather_to_host(metrics["loss"], mesh)))
    par = gather_to_host(par, mesh)
    params, key_biases = _split_key_biases(par.params)
    ref_params, ref_key_biases = _split_key_biases(ref.params)
    row = {"loss_max_abs_diff": _max_abs(losses, ref_losses), "params_max_abs_diff": _max_abs(params, ref_params),
           "opt_state_max_abs_diff": _max_abs(_split_key_biases(par.opt_state)[0],
                                              _split_key_biases(ref.opt_state)[0]),
           "probe_max_abs_diff": _max_abs(par.extras, ref.extras),
           "key_bias_max_abs_diff": _max_abs(key_biases, ref_key_biases)}
    row["equal_within_tolerance"] = bool(
        max(v for k, v in row.items() if k != "key_bias_max_abs_diff") <= TOLERANCE
        and row["key_bias_max_abs_diff"] <= out["key_bias_bound"])
    out["meshes"][f"{4 // model_parallel}x{model_parallel}"] = row
  out["equal_within_tolerance"] = all(r["equal_within_tolerance"] for r in out["meshes"].values())
  return out


def measure(num_devices: int, *, steps: int, batch_size: int, layers: int, width: int, context: int) -> dict:
  """Runs in a process with ``num_devices`` devices: times the data-parallel governed step (``--timing``)."""
  config = TrainConfig(model=ModelSpec(num_layers=layers, width=width, num_heads=4, context=context),
                       batch_size=batch_size, num_steps=steps + 2, warmup_steps=1,
                       governance=GovernanceSpec(routing="depth", normaliser="contributors"))
  groups = layers + 2
  components = governance_components(config)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=VOCAB_SIZE, tx=components.tx)
  mesh = data_mesh(num_devices)
  step = sharded_train_step(graphdef, tx, components.loss_fn, components.plugins, mesh,
                            gradients=components.gradients)
  state = place_state(state, mesh)
  rng = np.random.default_rng(0)
  depth = rng.integers(1, groups + 1, size=batch_size)
  mask = shard_rows((np.arange(groups)[None] >= groups - depth[:, None]).astype(np.float32), mesh)
  batch = shard_batch({"tokens": rng.integers(1, VOCAB_SIZE, size=(batch_size, context)).astype(np.int32),
                       "example_id": np.arange(batch_size, dtype=np.int32)}, mesh)
  times, loss = [], None
  for i in range(steps + 2):
    start = time.perf_counter()
    state, metrics = step(state, batch, mask)
    loss = float(metrics["loss"])
    if i >= 2:
      times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  return {"devices": len(jax.devices()), "step_s": round(step_s, 5), "examples_per_s": round(batch_size / step_s, 1),
          "final_loss": round(loss, 6), "platform": jax.devices()[0].platform}


def _in_subprocess(num_devices: int, platform: str, call: str) -> dict:
  """Runs ``call`` (an expression of this module returning a dict) in a fresh process with ``num_devices``."""
  env = dict(os.environ)
  if platform == "cpu":
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={num_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
  code = f"import json; from govjax.bench import scaling; print('RESULT' + json.dumps(scaling.{call}))"
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
  if proc.returncode or not lines:
    raise RuntimeError(f"scaling: {call} with {num_devices} device(s) failed:\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT"):])


def run(args: argparse.Namespace) -> dict:
  counts = [int(x) for x in str(args.devices).split(",") if x]
  ladder = load_ladder(args.ladder)
  result = {"ladder": ladder_bytes(ladder, counts, num_examples=args.examples), "devices": counts,
            "probe_examples": args.examples, "ladder_file": str(args.ladder)}
  if args.check_steps:
    result["sharded_equals_single_device"] = _in_subprocess(4, "cpu", f"check_equivalence({args.check_steps})")
  if args.timing:
    kwargs = dict(steps=args.steps, batch_size=args.batch_size, layers=args.layers, width=args.width,
                  context=args.context)
    result["timing"] = {str(n): _in_subprocess(n, args.platform, f"measure({n}, **{kwargs!r})") for n in counts}
  return result
