"""Data-parallel scaling: step time and examples/s of the sharded governed step on 1, 2, 4 devices.

Protocol (``govjax bench scaling --json [--devices 1,2,4] [--steps 20] [--batch-size 32]``): for every device
count ``N`` a fresh subprocess runs with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (fake CPU
devices; on a GPU/TPU host ``--platform gpu`` uses the first ``N`` real devices instead), builds a transformer
(``--layers``, ``--width``, context ``--context``), a ``data_mesh(N)`` and the sharded governed step ("depth"
routing with contributor normalisation), and times ``--steps`` steps after 2 warm-up steps on the same global
batch size. Reported per ``N``: median step seconds, examples/s, final loss (identical across ``N`` up to float
rounding: the runs are the same computation). Fake CPU devices share the same cores, so CPU figures are a
correctness smoke, not a speed-up measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig
from govjax.core.mesh import data_mesh, shard_batch, shard_rows
from govjax.train.governance import governance_components
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.step import create_train_state


def measure(num_devices: int, *, steps: int, batch_size: int, layers: int, width: int, context: int) -> dict:
  """Runs in the subprocess: times the sharded step on ``num_devices`` devices."""



  config = TrainConfig(model=ModelSpec(num_layers=layers, width=width, num_heads=4, context=context),
                       batch_size=batch_size, num_steps=steps + 2, warmup_steps=1)
  config = dataclasses.replace(config, governance=GovernanceSpec(routing="depth", normaliser="contributors"))
  groups = layers + 2
  components = governance_components(config)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=72, tx=components.tx)
  mesh = data_mesh(num_devices)
  step = sharded_train_step(graphdef, tx, components.loss_fn, components.plugins, mesh,
                            gradients=components.gradients)
  state = place_state(state, mesh)
  rng = np.random.default_rng(0)
  depth = rng.integers(1, groups + 1, size=batch_size)
  mask = (np.arange(groups)[None] >= groups - depth[:, None]).astype(np.float32)
  batch = shard_batch({"tokens": rng.integers(1, 72, size=(batch_size, context)).astype(np.int32),
                       "example_id": np.arange(batch_size, dtype=np.int32)}, mesh)
  mask = shard_rows(mask, mesh)
  times, loss = [], None
  for i in range(steps + 2):
    start = time.perf_counter()
    state, metrics = step(state, batch, mask)
    loss = float(metrics["loss"])
    if i >= 2:
      times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  return {"devices": len(jax.devices()), "mesh": dict(mesh.shape), "step_s": round(step_s, 5),
          "examples_per_s": round(batch_size / step_s, 1), "final_loss": round(loss, 6),
          "platform": jax.devices()[0].platform}


def run(args: argparse.Namespace) -> dict:
  counts = [int(x) for x in str(args.devices).split(",") if x]
  result = {"batch_size": args.batch_size, "steps": args.steps, "layers": args.layers, "width": args.width,
            "context": args.context, "platform": args.platform, "runs": {}}
  for n in counts:
    env = dict(os.environ)
    if args.platform == "cpu":
      env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
      env["JAX_PLATFORMS"] = "cpu"
    kwargs = dict(steps=args.steps, batch_size=args.batch_size, layers=args.layers, width=args.width,
                  context=args.context)
    code = ("import json, sys; from govjax.bench.scaling import measure; "
            f"print('RESULT' + json.dumps(measure({n}, **{kwargs!r})))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode or not lines:
      raise RuntimeError(f"scaling run with {n} device(s) failed:\n{proc.stderr[-2000:]}")
    result["runs"][str(n)] = json.loads(lines[-1][len("RESULT"):])
  base = result["runs"].get(str(counts[0]))
  if base:
    for r in result["runs"].values():
      r["speedup_vs_first"] = round(base["step_s"] / r["step_s"], 3)
      r["loss_diff_vs_first"] = abs(r["final_loss"] - base["final_loss"])
  return result
