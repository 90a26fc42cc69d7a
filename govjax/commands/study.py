"""``govjax study --config experiments/configs/study_demo.py --out runs/demo``: the whole study job."""

from __future__ import annotations

import argparse

from govjax.study.pipeline import run_pipeline


def run(args: argparse.Namespace) -> int:

  report = run_pipeline(args.config, args.out, data_dir=args.data_dir)
  print(f"report: {report}")
  return 0
