"""Parameter paths as strings: one spelling for logs, errors, influence features and group rules.

Example:
  >>> path_key(("blocks", 0, "mlp", "kernel"))
  'blocks/0/mlp/kernel'
  >>> import jax
  >>> path_key(jax.tree_util.tree_flatten_with_path({"a": [1, 2]})[0][1][0])
  'a/1'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["path_key"]


def _part(key: Any) -> str:
  """One path element: a JAX key entry (``DictKey``, ``SequenceKey``, ``GetAttrKey``...) or a plain value."""
  for attr in ("key", "idx", "name"):
    if hasattr(key, attr) and isinstance(key, jax.tree_util.DictKey | jax.tree_util.SequenceKey
                                         | jax.tree_util.GetAttrKey | jax.tree_util.FlattenedIndexKey):
      return str(getattr(key, attr))
  return str(key)


def path_key(path: Sequence[Any]) -> str:
  """A parameter path as ``'blocks/0/mlp/kernel'``.

  Args:
    path: a tuple of plain keys (``nnx.to_flat_state``) or of JAX key entries (``tree_flatten_with_path``).

  Returns:
    The elements joined by ``/``.
  """
  return "/".join(_part(p) for p in path)
