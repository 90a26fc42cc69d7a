"""``govjax train --config FILE --workdir DIR [--set key=value ...]``: train or resume a run."""

from __future__ import annotations

import argparse
import dataclasses

from govjax.core.config import apply_overrides, load_config
from govjax.core.mesh import data_mesh
from govjax.train.hosts import initialize_distributed
from govjax.train.loop import train


def register(subparsers) -> None:
  parser = subparsers.add_parser("train", help="train (or resume) a model from a Python config file")
  parser.add_argument("--config", required=True, help="experiments/configs/*.py defining get_config()")
  parser.add_argument("--workdir", required=True, help="run directory; an existing run is resumed")
  parser.add_argument("--data-dir", default=None, help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field, e.g. --set num_steps=50 --set model.width=64")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  dist = parser.add_argument_group("distributed (data-parallel over all devices of all processes)")
  dist.add_argument("--distributed", action="store_true",
                    help="join a jax.distributed job and train data-parallel on a mesh of all its devices")
  dist.add_argument("--coordinator", default=None, help="host:port of process 0 (default $GOVJAX_COORDINATOR)")
  dist.add_argument("--num-processes", type=int, default=None, help="default $GOVJAX_NUM_PROCESSES")
  dist.add_argument("--process-id", type=int, default=None, help="default $GOVJAX_PROCESS_ID")
  dist.add_argument("--data-parallel", action="store_true",
                    help="train data-parallel on this process's devices (no jax.distributed)")
  parser.set_defaults(func=run)


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
