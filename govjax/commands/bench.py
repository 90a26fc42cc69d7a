"""``govjax bench NAME [--json]``: runs a benchmark from :mod:`govjax.bench` and prints its result.

Each benchmark module ``govjax/bench/NAME.py`` defines ``run(args) -> dict``; its arguments are in
:data:`govjax.commands.arguments.BENCHES`.
"""

from __future__ import annotations

import argparse
import importlib
import json


def run(args: argparse.Namespace) -> int:
  result = importlib.import_module(f"govjax.bench.{args.bench_name}").run(args)
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
