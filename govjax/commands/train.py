"""``govjax train --config FILE --workdir DIR [--set key=value ...]``: train or resume a run."""

from __future__ import annotations

import argparse
import dataclasses

from govjax.core.config import apply_overrides, load_config
from govjax.core.mesh import data_mesh
from govjax.train.hosts import initialize_distributed
from govjax.train.loop import train


def run(args: argparse.Namespace) -> int:
  mesh = None
  if args.distributed:

    info = initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    print(f"process {info['process_index']}/{info['process_count']}: {info['local_devices']} local of "
          f"{info['devices']} devices")
  if args.distributed or args.data_parallel:

    mesh = data_mesh()

  config = apply_overrides(load_config(args.config), args.overrides)
  if args.data_dir:
    config = dataclasses.replace(config, data_dir=args.data_dir)
  result = train(config, args.workdir, progress=not args.no_progress, mesh=mesh)
  nll = "n/a" if result.val_nll is None else f"{result.val_nll:.4f}"
  print(f"trained {config.name}: step {int(result.state.step)} ({result.steps_run} this call, "
        f"{result.wall_s:.1f} s); validation NLL per token: {nll} nats; run directory: {args.workdir}")
  return 0
