"""The ``govjax`` command line: an explicit, lazy command table.

The parser is built from :data:`govjax.commands.arguments.COMMANDS` (a light module), so ``govjax --help`` and
``govjax CMD --help`` load none of jax, music21 or sklearn. Only the chosen command's module is imported, by name
(``target = "module:function"``), and called with the parsed arguments.

An error the user can fix (:class:`govjax.core.errors.UserError`, a bad value, a missing or unreadable file) is
printed on one line, ``govjax CMD: error: ...``, with a non-zero exit code and no traceback; ``--debug`` shows the
traceback instead. Control characters in messages are escaped, so nothing raw reaches the terminal.

Example::

    main(["--version"])
    main(["train", "--config", "experiments/configs/demo.py", "--workdir", "runs/demo", "--set", "num_steps=abc"])
    # govjax train: error: num_steps: input should be a valid integer, ... (exit code 2)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

from govjax.commands.arguments import COMMANDS
from govjax.core.errors import UserError
from govjax.core.text import terminal_safe

__all__ = ["build_parser", "main"]

# Errors whose message is meant for the user: printed on one line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _version() -> str:
  try:
    return importlib.metadata.version("govjax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def build_parser() -> argparse.ArgumentParser:
  """The top-level parser with every command of the table."""
  parser = argparse.ArgumentParser(
      prog="govjax", description="Training governance for creative generative models (JAX/Flax).")
  parser.add_argument("--version", action="version", version=f"govjax {_version()}")
  parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  for add in COMMANDS.values():
    add(subparsers)
  return parser


def _resolve(target: str):
  module_name, function = target.split(":")
  return getattr(importlib.import_module(module_name), function)


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``govjax`` script; returns the exit code."""
  parser = build_parser()
  args = parser.parse_args(argv)
  target = getattr(args, "target", None)
  if target is None:
    (getattr(args, "help_parser", None) or parser).print_help()
    return 2
  try:
    return int(_resolve(target)(args) or 0)
  except USER_ERRORS as error:
    if args.debug:
      raise
    message = terminal_safe(" ".join(str(error).split()) or type(error).__name__)
    print(f"govjax {args.command}: error: {message}", file=sys.stderr)
    return int(getattr(error, "exit_code", 2 if isinstance(error, ValueError) else 1))
  except KeyboardInterrupt:
    print(f"govjax {args.command}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
