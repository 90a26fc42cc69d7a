"""``govjax report --workdir DIR``: (re)builds the HTML report of a study output directory."""

from __future__ import annotations

import argparse
import pathlib
import sys

from govjax.study.report import write_run_report, write_study_report


def register(subparsers) -> None:
  parser = subparsers.add_parser("report", help="build report.html (figures, tables) of a study or run directory")
  parser.add_argument("--workdir", required=True, help="a directory written by `govjax study` / `make demo`")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

  workdir = pathlib.Path(args.workdir)
  if (workdir / "results.json").is_file():
    print(f"report: {write_study_report(workdir)}")
  elif (workdir / "config.json").is_file():
    print(f"report: {write_run_report(workdir)}")
  else:
    print(f"govjax report: {workdir} is neither a study directory (results.json) nor a run directory "
          "(config.json); run `govjax study`, `make demo` or `govjax train` first", file=sys.stderr)
    return 2
  return 0
