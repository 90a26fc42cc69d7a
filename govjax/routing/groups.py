"""Depth groups: which routing group each parameter leaf belongs to.

Gradient routing decides, per example, which *groups* of parameters its gradient may reach. A group is named by
an int ``0..G-1``; for the govjax transformer group 0 holds the embeddings (nearest the input), group ``i`` holds
``blocks[i - 1]`` and group ``num_layers + 1`` the final norm and unembedding (nearest the output).

Groups are assigned from ordered ``(regex, group)`` rules matched (``re.fullmatch``, first match wins) against the
``'/'``-joined path of every leaf, e.g. ``"blocks/0/mlp/up/kernel"`` (the trailing ``value`` attribute of an
``nnx.Variable`` is not part of the path). Every leaf must be matched: an uncovered leaf is an error that lists all
uncovered paths (as big_vision does for learning-rate multipliers), so a new parameter can never silently escape
routing.

The number of groups ``G`` is defined by the rules (:func:`rules_num_groups`: the largest group + 1); masks must
have exactly ``G`` columns. A parameter must belong to one group only: an ``nnx.Module`` given to
:func:`depth_groups` is checked for parameters reachable under two paths that the rules put in different groups
(e.g. a tied embedding stored as both ``embed`` and ``head``), which raise :class:`SharedParameterError`. (A
group that *reads* another group's parameter, e.g. ``self.embed.attend(h)`` in the head, is found by
:func:`govjax.routing.protocol.check_routable`, which traces each group.)

Example:
  >>> import jax.numpy as jnp
  >>> params = {"embed": {"embedding": jnp.zeros((5, 2))}, "blocks": [{"w": jnp.zeros(3)}],
  ...           "unembed": {"kernel": jnp.zeros((2, 5))}}
  >>> ids = depth_groups(params, [(r"embed/.*", 0), (r"blocks/0/.*", 1), (r"unembed/.*", 2)])
  >>> ids
  {'blocks': [{'w': 1}], 'embed': {'embedding': 0}, 'unembed': {'kernel': 2}}
  >>> group_sizes(params, ids, num_groups=3)
  [10, 3, 10]
  >>> rules_num_groups([(r"embed/.*", 0), (r"blocks/0/.*", 1), (r"unembed/.*", 2)])
  3
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import jax
from flax import nnx

from govjax.core.trees import path_key

__all__ = [
    "GroupCoverageError", "Rules", "SharedParameterError", "check_group_ids", "check_shared_parameters",
    "depth_groups", "group_count", "group_leaves", "group_sizes", "is_region_path", "is_rules", "leaf_paths",
    "model_group_rules", "model_num_groups", "path_string", "resolve_group_ids", "rules_num_groups",
    "shared_parameters", "transformer_group_rules",
]

Rules = Sequence[tuple[str, int]]


class GroupCoverageError(ValueError):
  """Raised when some parameter leaves match no group rule."""


class SharedParameterError(ValueError):
  """Raised when one parameter belongs to, or is read by, two depth groups (e.g. tied embeddings).

  Routing decides per group which examples may train a parameter; a parameter used by two groups would be
  trained through the upper group by examples barred from the lower one (the depth gate cannot see the sharing).
  Untie it (give each group its own copy) or put every use of it into one group.
  """


def path_string(path: Sequence[Any]) -> str:
  """``'/'``-joined name of a pytree key path: :func:`govjax.core.trees.path_key` (one spelling everywhere).

  Accepts JAX key entries (``jax.tree_util.tree_flatten_with_path``) and the plain tuples of
  ``nnx.to_flat_state`` (e.g. ``('blocks', 0, 'mlp', 'up', 'kernel')``); a trailing ``.value`` is dropped.

  Args:
    path: sequence of jax key entries or of plain str/int keys.

  Returns:
    The path as ``"blocks/0/mlp/up/kernel"``.
  """
  return path_key(path)


def is_region_path(name: str) -> bool:
  """Whether a ``'/'``-joined parameter path belongs to a removable region (has a ``region`` component)."""
  return "region" in name.split("/")


def leaf_paths(tree: Any) -> list[str]:
  """The ``'/'``-joined path of every leaf of ``tree``, in ``jax.tree.leaves`` order."""
  return [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _compile(rules: Rules) -> list[tuple[re.Pattern, int]]:
  compiled = []
  for i, rule in enumerate(rules):
    try:
      pattern, group = rule
    except (TypeError, ValueError) as err:
      raise ValueError(f"group rule #{i} must be a (regex, group) pair, got {rule!r}") from err
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
      raise ValueError(f"group rule #{i} ({pattern!r}): group must be an int >= 0, got {group!r}")
    try:
      compiled.append((re.compile(pattern), group))
    except re.error as err:
      raise ValueError(f"group rule #{i}: invalid regex {pattern!r}: {err}") from err
  return compiled


def rules_num_groups(rules: Rules) -> int:
  """The number of groups ``G`` the rules define: the largest group they name, plus one.

  Args:
    rules: ``(regex, group)`` pairs (a group without parameters still needs a rule naming it).

  Returns:
    ``G``; a routing mask for these rules is ``[B, G]``.

  Raises:
    ValueError: empty or malformed rules.
  """
  compiled = _compile(rules)
  if not compiled:
    raise ValueError("group rules are empty: give at least one (regex, group) pair")
  return max(group for _, group in compiled) + 1


def group_count(group_ids: Any, num_groups: int | None = None) -> int:
  """``G`` for group rules or a pytree of group ids, optionally widened by an explicit ``num_groups``.

  Args:
    group_ids: group rules (``G`` = :func:`rules_num_groups`) or a pytree of int ids (``G`` = largest id + 1).
    num_groups: explicit ``G`` (for groups without parameters above the largest one named); must not be smaller
      than the largest group named.

  Returns:
    The number of mask columns routing with these groups expects.
  """
  if is_rules(group_ids):
    derived = rules_num_groups(group_ids)
  else:
    ids = group_leaves(group_ids)
    if not ids:
      raise ValueError("group_ids has no leaves; pass group rules [(regex, group), ...] or depth_groups(params, "
                       "rules)")
    derived = max(ids) + 1
  if num_groups is None:
    return derived
  if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < derived:
    raise ValueError(f"num_groups={num_groups!r} is smaller than the {derived} groups the rules / group ids name")
  return num_groups


def _rule_group(compiled: list[tuple[re.Pattern, int]], name: str) -> int | None:
  return next((g for pattern, g in compiled if pattern.fullmatch(name)), None)


def shared_parameters(model: Any, rules: Rules) -> list[tuple[str, str, int | None, int | None]]:
  """Parameters of an ``nnx.Module`` reachable under two paths that the rules put in different groups.

  Args:
    model: an ``nnx.Module`` (other objects have no shared references to find; the result is then empty).
    rules: the group rules.

  Returns:
    ``(path, other_path, group, other_group)`` for each such parameter (``None`` where no rule matches).
  """
  if not isinstance(model, nnx.Module):
    return []
  compiled = _compile(rules)
  params = [tuple(path) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
  found = []
  for paths in nnx.find_duplicates(model):
    paths = [tuple(p) for p in paths]
    for key in params:
      canonical = next((p for p in paths if key[:len(p)] == p), None)
      if canonical is None:
        continue
      suffix = key[len(canonical):]
      name = path_string(key)
      group = _rule_group(compiled, name)
      for other in paths:
        if other == canonical:
          continue
        other_name = path_string(other + suffix)
        other_group = _rule_group(compiled, other_name)
        if other_group != group:
          found.append((name, other_name, group, other_group))
  return found


def check_shared_parameters(model: Any, rules: Rules) -> None:
  """Raises :class:`SharedParameterError` if :func:`shared_parameters` finds any."""
  found = shared_parameters(model, rules)
  if found:
    listed = "; ".join(f"{a!r} (group {ga}) is also {b!r} (group {gb})" for a, b, ga, gb in found)
    raise SharedParameterError(
        f"{type(model).__name__}: {len(found)} parameter(s) shared by two depth groups: {listed}. Examples barred "
        "from the lower group would train it through the upper one. Untie the parameter (give each group its own "
        "copy) or make the rules put every path of it into one group.")


def depth_groups(params: Any, rules: Rules) -> Any:
  """Assigns each leaf of ``params`` to a group.

  Args:
    params: any pytree, e.g. the ``nnx.State`` from ``nnx.split(model, nnx.Param)``, a Linen ``params`` dict,
      or an ``nnx.Module`` (its ``nnx.Param`` state, after checking that no parameter is shared by two groups).
    rules: ordered ``(regex, group)`` pairs; a leaf takes the group of the first regex that fully matches its
      ``'/'``-joined path.

  Returns:
    A pytree with the same structure as ``params`` (``nnx.State`` and ``nnx.Param`` wrappers included) whose
    leaves are Python ints, usable with ``jax.tree.map(f, grads, group_ids)``.

  Raises:
    GroupCoverageError: listing every path that no rule matches.
    SharedParameterError: for an ``nnx.Module`` with a parameter reachable under paths of two groups.
  """
  if isinstance(params, nnx.Module):
    check_shared_parameters(params, rules)
    params = nnx.state(params, nnx.Param)
  compiled = _compile(rules)
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  groups, uncovered = [], []
  for path, _ in flat:
    name = path_string(path)
    group = _rule_group(compiled, name)
    if group is None:
      uncovered.append(name)
    groups.append(group)
  if uncovered:
    raise GroupCoverageError(
        f"{len(uncovered)} of {len(flat)} parameter leaves match no group rule: {uncovered}; "
        f"rules: {[p for p, _ in rules]}")
  return jax.tree_util.tree_unflatten(treedef, groups)


def transformer_group_rules(num_layers: int, *, prefix: str = "") -> list[tuple[str, int]]:
  """Default rules for :class:`govjax.models.transformer.Transformer`.

  Args:
    num_layers: number of transformer blocks ``n``; there are ``n + 2`` groups.
    prefix: path prefix of the transformer inside a larger model, e.g. ``"trunk/"``.

  Returns:
    ``embed``/``pos_embed`` -> 0, ``blocks/i/...`` -> ``i + 1``, ``final_norm``/``unembed`` -> ``n + 1``.
  """
  p = re.escape(prefix)
  rules = [(rf"{p}(embed|pos_embed)/.*", 0)]
  rules += [(rf"{p}blocks/{i}/.*", i + 1) for i in range(num_layers)]
  rules.append((rf"{p}(final_norm|unembed)/.*", num_layers + 1))
  return rules


def model_group_rules(model: Any) -> list[tuple[str, int]]:
  """Group rules for a model: its own ``group_rules()`` if it has one, else the transformer defaults."""
  if hasattr(model, "group_rules"):
    return list(model.group_rules())
  config = getattr(model, "config", None)
  if config is None or not hasattr(config, "num_layers"):
    raise ValueError(f"cannot derive group rules for {type(model).__name__}: it has neither group_rules() nor "
                     "config.num_layers; pass rules explicitly")
  return transformer_group_rules(config.num_layers)


def model_num_groups(model: Any) -> int:
  """Number of routing groups of a model (``model.num_groups`` or ``model.config.num_groups``)."""
  if hasattr(model, "num_groups"):
    return int(model.num_groups)
  return int(model.config.num_groups)


def is_rules(groups: Any) -> bool:
  """Whether ``groups`` is a rule list (``[(regex, group), ...]``) rather than a pytree of group ids."""
  return (isinstance(groups, (list, tuple)) and len(groups) > 0
          and all(isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], str) for r in groups))


def resolve_group_ids(groups: Any, tree: Any) -> Any:
  """Group ids for ``tree``: ``groups`` itself if it is a pytree of ids, else ``depth_groups(tree, groups)``.

  Transforms accept rules so that they can be built before the parameters exist (paths are the same for
  parameters, gradients and per-example gradients).
  """
  return depth_groups(tree, groups) if is_rules(groups) else groups


def group_sizes(params: Any, group_ids: Any, num_groups: int | None = None) -> list[int]:
  """Number of scalar parameters in each group.

  Args:
    params: the parameter pytree.
    group_ids: from :func:`depth_groups` (same structure).
    num_groups: length of the result (default: largest group id + 1).

  Returns:
    ``sizes[g]`` = total size of the leaves in group ``g``.
  """
  ids = jax.tree.leaves(group_ids)
  leaves = jax.tree.leaves(params)
  if len(ids) != len(leaves):
    raise ValueError(f"group_ids has {len(ids)} leaves but params has {len(leaves)}")
  n = num_groups if num_groups is not None else (max(ids) + 1 if ids else 0)
  sizes = [0] * n
  for g, leaf in zip(ids, leaves, strict=True):
    if g >= n:
      raise ValueError(f"group id {g} >= num_groups={n}")
    sizes[g] += int(leaf.size)
  return sizes


def group_leaves(group_ids: Any) -> list[int]:
  """The group ids in ``jax.tree.leaves`` order."""
  return [int(g) for g in jax.tree.leaves(group_ids)]


def check_group_ids(group_ids: Any, num_groups: int, *, where: str = "group_mask") -> None:
  """Raises if a group id does not index a mask with ``num_groups`` columns."""
  ids: Iterable[int] = group_leaves(group_ids)
  bad = sorted({g for g in ids if not 0 <= g < num_groups})
  if bad:
    raise ValueError(f"{where} has {num_groups} group columns but group ids {bad} were assigned")
