"""Errors a user can fix: the command line prints their message on one line (no traceback) and exits non-zero.

Library code raises :class:`UserError` (or a subclass) when the input, not the program, is wrong: a bad path, a
malformed file, an invalid value. The message names the file, record and field at fault and, where there is one,
the command that fixes it.

Example:
  >>> try:
  ...   raise ConfigError("num_steps: input should be a valid integer, got 'abc'")
  ... except UserError as error:
  ...   (error.exit_code, str(error))
  (2, "num_steps: input should be a valid integer, got 'abc'")
"""

from __future__ import annotations

__all__ = ["ConfigError", "RunDirError", "UserError"]


class UserError(Exception):
  """Wrong input or state that the user can fix; ``exit_code`` is what the command line returns."""

  exit_code = 1


class ConfigError(UserError, ValueError):
  """An invalid configuration value, override or config file (exit code 2, like a usage error)."""

  exit_code = 2


class RunDirError(UserError):
  """A run directory that cannot be used as asked (locked by another writer, mismatched config, corrupt files)."""
