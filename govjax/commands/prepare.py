"""``govjax prepare chorales [--data-dir DIR] [--steps-per-quarter 4] [--max-works N]``: build it once.

The work is done by :func:`govjax.data.chorales.prepare_chorales`; re-running is a no-op that says so.
"""

from __future__ import annotations

import argparse
import os
import sys

from govjax.data.chorales import prepare_chorales


def run(args: argparse.Namespace) -> int:

  try:
    report = prepare_chorales(
        args.data_dir,
        steps_per_quarter=args.steps_per_quarter,
        max_works=args.max_works,
        num_workers=args.workers or (1 if args.max_works else max(1, min(2, os.cpu_count() or 1))),
        progress=not args.no_progress,
    )
  except ValueError as error:
    print(f"govjax prepare chorales: {error}", file=sys.stderr)
    return 2
  print(report.format())
  return 0
