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


def path_key(path: Sequence[Any]) -> str:
  """A parameter path as ``'blocks/0/mlp/kernel'`` (``jax.tree_util.keystr`` with ``/``).

  A trailing ``.value`` attribute (the payload of an ``nnx.Variable`` in a flattened state) is dropped, so a
  parameter has one name whichever way its tree was flattened.

  Args:
    path: a tuple of plain keys (``nnx.to_flat_state``) or of JAX key entries (``tree_flatten_with_path``).

  Returns:
    The elements joined by ``/``.
  """
  path = tuple(path)
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
    path = path[:-1]
  return jax.tree_util.keystr(path, simple=True, separator="/")
