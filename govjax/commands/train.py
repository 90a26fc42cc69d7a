"""``govjax train --config FILE --workdir DIR [--set key=value ...]``: train or resume a run."""

from __future__ import annotations

import argparse
import dataclasses

from govjax.train.config import apply_overrides, load_config


def register(subparsers) -> None:
  parser = subparsers.add_parser("train", help="train (or resume) a model from a Python config file")
  parser.add_argument("--config", required=True, help="experiments/configs/*.py defining get_config()")
  parser.add_argument("--workdir", required=True, help="run directory; an existing run is resumed")
  parser.add_argument("--data-dir", default=None, help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field, e.g. --set num_steps=50 --set model.width=64")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from govjax.train.loop import train

  config = apply_overrides(load_config(args.config), args.overrides)
  if args.data_dir:
    config = dataclasses.replace(config, data_dir=args.data_dir)
  result = train(config, args.workdir, progress=not args.no_progress)
  nll = "n/a" if result.val_nll is None else f"{result.val_nll:.4f}"
  print(f"trained {config.name}: step {int(result.state.step)} ({result.steps_run} this call, "
        f"{result.wall_s:.1f} s); validation NLL per token: {nll} nats; run directory: {args.workdir}")
  return 0
