"""The ``govjax`` command line.

Subcommands are discovered from the modules of :mod:`govjax.commands`: each defines ``register(subparsers)``,
which adds its parser and sets ``func`` to a ``run(args) -> int``. Run ``govjax --help`` for the list.

Example::

    main(["--version"])
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import govjax
import govjax.commands


def build_parser() -> argparse.ArgumentParser:
  """The top-level parser with every discovered subcommand."""
  parser = argparse.ArgumentParser(
      prog="govjax", description="Training governance for creative generative models (JAX/Flax)."
  )
  parser.add_argument("--version", action="version", version=f"govjax {govjax.__version__}")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  for info in sorted(pkgutil.iter_modules(govjax.commands.__path__), key=lambda m: m.name):
    module = importlib.import_module(f"govjax.commands.{info.name}")
    if hasattr(module, "register"):
      module.register(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``govjax`` script; returns the exit code."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "func", None):
    parser.print_help()
    return 2
  return int(args.func(args) or 0)


if __name__ == "__main__":
  sys.exit(main())
