"""Routing masks: strict validation and builders from per-example depths or licence classes.

A routing mask is a float ``[B, G]`` array: ``mask[b, g]`` in ``[0, 1]`` is the weight with which example ``b``'s
gradient may reach depth group ``g`` (0 = barred). ``G`` is the number of groups the group rules define
(:func:`govjax.routing.groups.rules_num_groups`), so builders take the rules (or a routable model) instead of a
hand-typed count, and every consumer checks the shape against them.

:func:`check_group_mask` is the one check every transform, gate and loss runs:

- at trace time, the shape must be exactly ``[B, G]`` (``B`` where the consumer knows the batch): ``[B, G + 1]``,
  ``[1, G]`` broadcasting and transposed masks are errors naming the expected shape;
- a concrete (not traced) mask must hold finite values in ``[0, 1]``; a bad value is a ``ValueError`` naming its
  row and column;
- a traced mask (inside ``jax.jit``) cannot raise; with ``checked=True`` the values are checked with
  ``jax.experimental.checkify`` (wrap the jitted function in ``checkify.checkify`` and call ``err.throw()``);
  otherwise they are clamped so that a bad mask can never widen routing: NaN and negative entries bar the
  example, entries above 1 count as 1. A valid mask passes unchanged, bit for bit.

Example:
  >>> rules = [(r"embed/.*", 0), (r"blocks/0/.*", 1), (r"head/.*", 2)]
  >>> masks_from_depths([3, 1, 0], rules).astype(int).tolist()
  [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
  >>> masks_from_classes(["permissive", "restrictive"], {"permissive": "full", "restrictive": 1}, rules).tolist()
  [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
  >>> check_group_mask(jnp.ones((2, 4)), 3)  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  ValueError: group_mask must be [B, G] = [B, 3] (one column per depth group, ...), got shape (2, 4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from govjax.routing.groups import is_rules, rules_num_groups

__all__ = ["SURFACES", "check_group_mask", "depth_rows_to_mask", "masks_from_classes", "masks_from_depths",
           "resolve_num_groups"]

SURFACES = ("output", "input")

FULL = "full"


def resolve_num_groups(groups: Any) -> int:
  """``G`` from an int, group rules, or a routable model (whose ``num_groups`` must match its rules).

  Args:
    groups: an int ``G >= 1``, rules ``[(regex, group), ...]``, or a model with ``num_groups`` and
      ``group_rules()``.

  Returns:
    The number of depth groups.
  """
  if isinstance(groups, bool):
    raise TypeError(f"num_groups must be an int, group rules or a routable model, got {groups!r}")
  if isinstance(groups, (int, np.integer)):
    if groups < 1:
      raise ValueError(f"num_groups must be >= 1, got {groups}")
    return int(groups)
  if is_rules(groups):
    return rules_num_groups(groups)
  if hasattr(groups, "group_rules") and hasattr(groups, "num_groups"):
    declared, from_rules = int(groups.num_groups), rules_num_groups(list(groups.group_rules()))
    if declared != from_rules:
      raise ValueError(f"{type(groups).__name__}.num_groups={declared} but its group_rules() define {from_rules} "
                       "groups; they must agree")
    return declared
  raise TypeError(f"num_groups must be an int, group rules [(regex, group), ...] or a routable model, got "
                  f"{type(groups).__name__}")


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer) and getattr(x, "is_fully_addressable", True)


def _first_bad(mask: np.ndarray) -> tuple[int, int, float, int]:
  bad = ~(np.isfinite(mask) & (mask >= 0) & (mask <= 1))
  rows, cols = np.nonzero(bad)
  return int(rows[0]), int(cols[0]), float(mask[rows[0], cols[0]]), int(bad.sum())


def check_group_mask(group_mask: Any, num_groups: int, *, batch_size: int | None = None,
                     where: str = "group_mask", checked: bool = False) -> jax.Array:
  """Validates a routing mask and returns it as a float array.

  Args:
    group_mask: the ``[B, G]`` mask (bool and int 0/1 masks are cast to float32).
    num_groups: ``G``, the number of groups the rules define.
    batch_size: ``B`` when the caller knows it (the leading axis of the inputs or per-example gradients).
    where: the caller's name, for messages.
    checked: check the values of a traced mask with ``checkify`` (see the module docstring).

  Returns:
    The mask (floating dtype); a traced mask is clamped into ``[0, 1]`` with NaN set to 0 (a valid mask is
    returned unchanged).

  Raises:
    ValueError: missing mask, wrong shape, or (concrete masks) a value that is not finite or not in ``[0, 1]``.
  """
  if group_mask is None:
    raise ValueError(f"{where} needs the extra argument group_mask=[B, G]")
  mask = jnp.asarray(group_mask)
  rows = "B" if batch_size is None else str(batch_size)
  expected = f"[{rows}, {num_groups}]"
  shape = tuple(mask.shape)
  if mask.ndim != 2 or shape[1] != num_groups or (batch_size is not None and shape[0] != batch_size):
    hint = ""
    if mask.ndim == 2 and shape[0] == num_groups and shape[1] != num_groups:
      hint = " (transposed? rows are examples, columns are groups)"
    elif mask.ndim == 2 and shape[1] == num_groups and batch_size is not None and shape[0] == 1:
      hint = (f" (a [1, G] mask is not broadcast: give one row per example; B = {batch_size} is the leading axis "
              "of the inputs / per-example gradients)")
    elif mask.ndim == 2 and shape[1] == num_groups and batch_size is not None:
      hint = f" (B = {batch_size} is the leading axis of the inputs / per-example gradients)"
    elif mask.ndim == 2 and shape[0] == batch_size and shape[1] != num_groups:
      hint = " (build masks from the same group rules, e.g. masks_from_depths(depths, rules))"
    prefix = "group_mask" if where == "group_mask" else f"{where}: group_mask"
    raise ValueError(f"{prefix} must be [B, G] = {expected} (one column per depth group, G from the group rules / "
                     f"group ids), got shape {shape}{hint}")
  if not jnp.issubdtype(mask.dtype, jnp.floating):
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
      raise TypeError(f"{where}: group_mask must be a float (or bool / 0-1 int) array, got dtype {mask.dtype}")
    mask = mask.astype(jnp.float32)
  if _is_concrete(mask):
    host = np.asarray(mask, np.float64)
    if host.size and not np.all(np.isfinite(host) & (host >= 0) & (host <= 1)):
      row, col, value, count = _first_bad(host)
      raise ValueError(f"{where}: group_mask values must be finite and in [0, 1]; {count} are not, e.g. "
                       f"group_mask[{row}, {col}] = {value}")
    return mask
  if checked:
    valid = jnp.isfinite(mask) & (mask >= 0) & (mask <= 1)
    checkify.check(jnp.all(valid), f"{where}: group_mask values must be finite and in [0, 1]; {{}} are not",
                   jnp.sum(~valid))
  return jnp.where(mask > 0, jnp.minimum(mask, 1), jnp.zeros_like(mask))


def depth_rows_to_mask(depth: Any, num_groups: int, surface: str = "output", *, xp: Any = jnp) -> Any:
  """``[B, G]`` float32 mask from int depths ``[B]`` (no checks: the fast path of trusted callers).

  Args:
    depth: int ``[B]`` in ``[0, G]``.
    num_groups: ``G``.
    surface: ``"output"``: row ``b`` reaches the top ``depth[b]`` groups (``g >= G - depth[b]``); ``"input"``:
      the bottom ``depth[b]`` groups (``g < depth[b]``).
    xp: ``jax.numpy`` (traceable) or ``numpy`` (host side).

  Returns:
    float32 ``[B, G]`` array of ``xp``.

  Example:
    >>> import numpy as np
    >>> depth_rows_to_mask(np.array([1, 3]), 4, "input", xp=np).astype(int).tolist()
    [[1, 0, 0, 0], [1, 1, 1, 0]]
  """
  if surface not in SURFACES:
    raise ValueError(f"surface must be one of {SURFACES}, got {surface!r}")
  groups = xp.arange(num_groups)[None, :]
  depth = depth[:, None]
  keep = groups >= num_groups - depth if surface == "output" else groups < depth
  return keep.astype(xp.float32)


def masks_from_depths(depths: Any, num_groups: Any, *, surface: str = "output") -> jax.Array:
  """``[B, G]`` float32 mask: example ``b`` trains the top ``depths[b]`` groups (those nearest the output).

  Args:
    depths: int ``[B]`` in ``[0, G]`` (0 = trains nothing, ``G`` = full depth), e.g. a policy's per-work depth
      gathered per batch row.
    num_groups: ``G`` as group rules, a routable model, or an int.
    surface: ``"output"`` (the default: depth counts from the output end) or ``"input"`` (from the embeddings:
      ``mask[b, g] = 1`` for ``g < depths[b]``; only routers that accept any mask, ``per_group`` and ``exact``).

  Returns:
    float32 ``[B, G]`` with ``mask[b, g] = 1`` for ``g >= G - depths[b]`` (output surface).

  Raises:
    ValueError: depths not ``[B]``, (concrete arrays) not integers in ``[0, G]``, or an unknown surface. Traced
      depths are clipped.
  """
  num_groups = resolve_num_groups(num_groups)
  depth = jnp.asarray(depths)
  if depth.ndim != 1:
    raise ValueError(f"depths must be [B] (one depth per example), got shape {tuple(depth.shape)}")
  if _is_concrete(depth):
    host = np.asarray(depth)
    if host.dtype.kind not in "iub" and not (host.dtype.kind == "f" and np.all(host == np.round(host))):
      raise ValueError(f"depths must be integers in [0, {num_groups}], got {host.tolist()[:10]}")
    bad = sorted({int(d) if np.isfinite(d) else d for d in host.tolist() if not 0 <= d <= num_groups})
    if bad:
      raise ValueError(f"depths must be in [0, {num_groups}] (G = {num_groups} groups); got {bad}")
  elif not jnp.issubdtype(depth.dtype, jnp.integer):
    raise TypeError(f"traced depths must have an integer dtype, got {depth.dtype}")
  depth = jnp.clip(depth.astype(jnp.int32), 0, num_groups)
  return depth_rows_to_mask(depth, num_groups, surface)


def _table_depth(key: Any, value: Any, num_groups: int) -> int:
  if value == FULL:
    return num_groups
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= num_groups:
    raise ValueError(f"table[{key!r}] must be a depth in [0, {num_groups}] or {FULL!r}, got {value!r}")
  return int(value)


def masks_from_classes(classes: Any, table: Mapping[Any, int | str] | Sequence[int], num_groups: Any) -> jax.Array:
  """``[B, G]`` mask from per-example classes (e.g. licence classes) and a class -> depth table.

  Args:
    classes: ``[B]`` class labels: strings (host side) with a mapping ``table``, or int class ids (jittable)
      with a sequence ``table`` indexed by id.
    table: ``{class: depth}`` (depth an int in ``[0, G]`` or ``"full"``), or ``[depth of class 0, ...]``.
    num_groups: ``G`` as group rules, a routable model, or an int.

  Returns:
    float32 ``[B, G]`` (see :func:`masks_from_depths`).

  Raises:
    ValueError: a class missing from the table (all of them are listed) or a bad depth.
  """
  num_groups = resolve_num_groups(num_groups)
  if isinstance(table, Mapping):
    depth_of = {key: _table_depth(key, value, num_groups) for key, value in table.items()}
    labels = np.asarray(classes).tolist() if not isinstance(classes, (list, tuple)) else list(classes)
    unknown = sorted({str(c) for c in labels if c not in depth_of})
    if unknown:
      raise ValueError(f"classes {unknown} are not in the table (known: {sorted(map(str, depth_of))})")
    return masks_from_depths(np.asarray([depth_of[c] for c in labels], np.int32), num_groups)
  depths = np.asarray([_table_depth(i, v, num_groups) for i, v in enumerate(table)], np.int32)
  ids = jnp.asarray(classes)
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"with a sequence table, classes must be int class ids, got dtype {ids.dtype}")
  if _is_concrete(ids):
    bad = sorted({int(c) for c in np.asarray(ids).ravel() if not 0 <= c < len(depths)})
    if bad:
      raise ValueError(f"class ids {bad} are outside the table's {len(depths)} classes")
  return masks_from_depths(jnp.take(jnp.asarray(depths), ids, axis=0, mode="clip"), num_groups)
