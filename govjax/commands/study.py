"""``govjax study --config experiments/configs/study_demo.py --out runs/demo``: the whole study job."""

from __future__ import annotations

import argparse

from govjax.study.pipeline import run_pipeline


def register(subparsers) -> None:
  parser = subparsers.add_parser("study", help="run a governance study: train methods, audit, trace, report")
  parser.add_argument("--config", required=True, help="study config file defining get_study()")
  parser.add_argument("--out", required=True, help="output directory (runs resume when already there)")
  parser.add_argument("--data-dir", default=None, help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

  report = run_pipeline(args.config, args.out, data_dir=args.data_dir)
  print(f"report: {report}")
  return 0
