"""``govjax prepare chorales [--data-dir DIR] [--steps-per-quarter 4] [--max-works N]``: build it once.

The work is done by :func:`govjax.data.chorales.prepare_chorales`; re-running is a no-op that says so.
"""

from __future__ import annotations

import argparse
import os
import sys

from govjax.data.chorales import prepare_chorales


def register(subparsers) -> None:
  parser = subparsers.add_parser("prepare", help="prepare a dataset (offline, once)")
  datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
  chorales = datasets.add_parser(
      "chorales", help="Bach chorales from music21's bundled corpus as a TFDS array_record dataset"
  )
  chorales.add_argument("--data-dir", default=None,
                        help="root data dir (default: $GOVJAX_DATA_DIR or ~/.cache/govjax/data)")
  chorales.add_argument("--steps-per-quarter", type=int, default=4,
                        help="grid steps per quarter note (4: 16ths)")
  chorales.add_argument("--max-works", type=int, default=None,
                        help="build a small version with at most N works (N >= 3; every split non-empty)")
  chorales.add_argument("--workers", type=int, default=None,
                        help="parsing processes (default: 2 for the whole corpus, 1 with --max-works)")
  chorales.add_argument("--no-progress", action="store_true", help="no progress bars")
  chorales.set_defaults(func=run)


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
