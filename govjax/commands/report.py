"""``govjax report --workdir DIR [--premise premise.json]``: (re)builds the HTML report of a study output
directory."""

from __future__ import annotations

import argparse
import pathlib
import sys

from govjax.core.rundir import RunDir
from govjax.study.report import write_run_report, write_study_report


def run(args: argparse.Namespace) -> int:
  workdir = pathlib.Path(args.workdir)
  if args.premise is not None and not pathlib.Path(args.premise).is_file():
    print(f"govjax report: --premise {args.premise} is not a file (experiments/premise.py writes one)",
          file=sys.stderr)
    return 2
  if (workdir / "results.json").is_file():
    print(f"report: {write_study_report(workdir, premise=args.premise)}")
  elif RunDir(workdir).is_run():
    print(f"report: {write_run_report(workdir)}")
  else:
    print(f"govjax report: {workdir} is neither a study directory (results.json) nor a run directory "
          "(config.json); run `govjax study`, `make demo` or `govjax train` first", file=sys.stderr)
    return 2
  return 0
