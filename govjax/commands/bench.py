"""``govjax bench NAME [--json]``: runs a benchmark from :mod:`govjax.bench` and prints its result.

Each benchmark module ``govjax/bench/NAME.py`` defines ``run(args) -> dict`` and optionally
``add_arguments(parser)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil

import govjax.bench


def available() -> list[str]:
  """Names of the benchmarks."""
  return sorted(m.name for m in pkgutil.iter_modules(govjax.bench.__path__) if not m.name.startswith("_"))


def register(subparsers) -> None:
  parser = subparsers.add_parser("bench", help="run a benchmark (routing, probe, provenance, lookup, scaling)")
  sub = parser.add_subparsers(dest="bench_name", metavar="NAME")
  for name in available():
    module = importlib.import_module(f"govjax.bench.{name}")
    bench_parser = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
    bench_parser.add_argument("--json", action="store_true", help="print one JSON object")
    bench_parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    if hasattr(module, "add_arguments"):
      module.add_arguments(bench_parser)
    bench_parser.set_defaults(func=run, bench_module=module)
  parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run(args: argparse.Namespace) -> int:
  result = args.bench_module.run(args)
  text = json.dumps(result, sort_keys=True)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  if args.json:
    print(text)
  else:
    for key, value in sorted(result.items()):
      print(f"{key:>32}: {value}")
  return 0
