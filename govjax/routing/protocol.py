"""What a model implements to use the efficient routing paths (the depth gate and per-group routing).

A :class:`RoutableModel` is a chain of ``G`` depth groups: ``apply_group(0, x)`` takes the model input,
``apply_group(g, h)`` takes group ``g - 1``'s output, and the last group's output is the model output. It has

- ``num_groups``: ``G`` (an int attribute or property);
- ``group_rules()``: ``[(regex, group), ...]`` over the ``'/'``-joined parameter paths (see
  :mod:`govjax.routing.groups`); they must cover every parameter and define exactly ``G`` groups;
- ``apply_group(group, h, **kwargs)``: runs one group; keyword arguments given to
  :func:`~govjax.routing.gate.routed_apply` are passed on (e.g. ``train=False``).

Each group may read only its own group's parameters; :func:`check_routable` traces every group once (abstractly,
no FLOPs) and raises :class:`~govjax.routing.groups.SharedParameterError` when a group reads another's (e.g. a
head that calls ``self.embed.attend(h)``, i.e. tied embeddings), because the depth gate would let examples barred
from the embedding group train it through the head. The routed paths run this check automatically (cached per
model structure and input shape).

Examples must be independent along the leading batch axis in every group (no batch statistics). ``"per_group"``
and ``"exact"`` routing run each group on a functional copy of the model, so ``apply_group`` must not rely on
updating module state (RNG counters, running averages): pass randomness in through keyword arguments (e.g. a
``key``) instead.

Both module systems work:

- **Flax NNX**: an ``nnx.Module`` with the three members (the built-in
  :class:`govjax.models.transformer.Transformer` is one). Routing differentiates its ``nnx.Param`` state.
- **Flax Linen**: a module with a ``num_groups`` field, ``group_rules()`` and an ``apply_group`` method (define
  submodules in ``setup``), *bound* to its variables: ``module.bind({"params": params})``, e.g. inside the loss
  you differentiate with respect to ``params``. Paths are those of ``variables["params"]``.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> class TwoLayer(nnx.Module):
  ...   num_groups = 2
  ...   def __init__(self, rngs):
  ...     self.hidden, self.out = nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)
  ...   def group_rules(self):
  ...     return [(r"hidden/.*", 0), (r"out/.*", 1)]
  ...   def apply_group(self, group, h):
  ...     return jnp.tanh(self.hidden(h)) if group == 0 else self.out(h)
  >>> model = TwoLayer(nnx.Rngs(0))
  >>> isinstance(model, RoutableModel), routing_spec(model)[0]
  (True, 2)
  >>> check_routable(model, jnp.ones((5, 3)))
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
from flax import nnx

from govjax.routing.groups import (
    SharedParameterError,
    check_shared_parameters,
    depth_groups,
    group_leaves,
    is_rules,
    path_string,
    rules_num_groups,
)

__all__ = ["FunctionalView", "RoutableModel", "check_routable", "forward", "functional_view", "routing_spec"]

REQUIRED = ("num_groups", "group_rules", "apply_group")
_CHECKED: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 256


@runtime_checkable
class RoutableModel(Protocol):
  """A model made of ``num_groups`` depth groups applied in sequence (see the module docstring)."""

  @property
  def num_groups(self) -> int:
    """``G``, the number of depth groups."""
    ...

  def group_rules(self) -> Sequence[tuple[str, int]]:
    """``(regex, group)`` rules covering every parameter path and defining exactly ``num_groups`` groups."""
    ...

  def apply_group(self, group: int, h: Any, /) -> Any:
    """Runs group ``group`` on ``h`` (the model input for group 0); the last group returns the output."""
    ...


@dataclasses.dataclass(frozen=True)
class FunctionalView:
  """A model as ``(params, others)`` and a function rebuilding it: ``build(params, others)``.

  Attributes:
    params: the differentiable parameters (``nnx.Param`` state or Linen ``variables["params"]``).
    others: the remaining state / collections, passed through unchanged.
    build: ``build(params, others) -> model``.
    key: a hashable description of the model's structure (None when there is none).
  """

  params: Any
  others: Any
  build: Callable[[Any, Any], Any]
  key: Any = None


def _linen_bound(model: Any) -> bool:
  return isinstance(model, nn.Module) and model.scope is not None


def functional_view(model: Any, *, where: str = "routing") -> FunctionalView:
  """Splits an NNX module or a bound Linen module into its parameters and a rebuild function.

  Args:
    model: an ``nnx.Module`` or a Linen module bound with ``module.bind(variables)``.
    where: the caller's name, for messages.

  Returns:
    The :class:`FunctionalView`.
  """
  if isinstance(model, nnx.Module):
    graphdef, params, others = nnx.split(model, nnx.Param, ...)
    return FunctionalView(params, others, lambda p, o: nnx.merge(graphdef, p, o), graphdef)
  if isinstance(model, nn.Module):
    if model.scope is None:
      raise TypeError(f"{where}: the Linen module {type(model).__name__} is not bound to its variables; pass "
                      "module.bind({'params': params}) (bind inside the function you differentiate)")
    module, variables = model.unbind()
    if "params" not in variables:
      raise ValueError(f"{where}: the bound Linen module {type(model).__name__} has no 'params' collection")
    others = {k: v for k, v in variables.items() if k != "params"}
    try:
      key = hash(module)
    except TypeError:
      key = None
    return FunctionalView(variables["params"], others, lambda p, o: module.bind({"params": p, **o}),
                          None if key is None else (type(module), module))
  raise TypeError(f"{where}: {type(model).__name__} is neither an nnx.Module nor a bound Linen module")


def routing_spec(model: Any, *, where: str = "routing") -> tuple[int, list[tuple[str, int]]]:
  """Checks that ``model`` follows :class:`RoutableModel`; returns ``(num_groups, rules)``.

  Args:
    model: the model.
    where: the caller's name, for messages.

  Returns:
    ``G`` and the model's group rules.

  Raises:
    TypeError: a missing member (all are named) or an unbound Linen module.
    ValueError: ``num_groups`` disagrees with the number of groups the rules define.
  """
  if isinstance(model, nn.Module) and not _linen_bound(model):
    raise TypeError(f"{where}: the Linen module {type(model).__name__} is not bound to its variables; pass "
                    "module.bind({'params': params})")
  missing = [name for name in REQUIRED if not hasattr(model, name)]
  if missing:
    legacy = " (embed_tokens/blocks/head alone are not enough)" if hasattr(model, "blocks") else ""
    raise TypeError(
        f"{where}: {type(model).__name__} does not follow govjax.routing.RoutableModel: it has no "
        f"{', '.join(missing)}{legacy}. A routable model defines num_groups (int), group_rules() -> "
        "[(regex, group), ...] and apply_group(group, h) (group 0 takes the input, the last group returns the "
        "output); see docs/API.md")
  num_groups = model.num_groups
  if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
    raise TypeError(f"{where}: {type(model).__name__}.num_groups must be an int >= 1, got {num_groups!r}")
  rules = list(model.group_rules())
  if not is_rules(rules):
    raise TypeError(f"{where}: {type(model).__name__}.group_rules() must return [(regex, group), ...], got "
                    f"{rules!r:.200}")
  from_rules = rules_num_groups(rules)
  if from_rules != num_groups:
    raise ValueError(f"{where}: {type(model).__name__}.num_groups={num_groups} but its group_rules() define "
                     f"{from_rules} groups (largest group + 1); they must agree")
  return num_groups, rules


def forward(model: Any, x: Any, num_groups: int, gate: Callable[[int, Any], Any] | None = None,
            **kwargs: Any) -> tuple[Any, list]:
  """Runs the groups in sequence with an optional ``gate(group_index, h)`` after every group but the last.

  Args:
    model: a routable model.
    x: the model input.
    num_groups: ``G``.
    gate: applied to the output of groups ``0 .. G - 2``.
    **kwargs: passed to every ``apply_group`` call.

  Returns:
    ``(output, hidden)`` with ``hidden`` the ``G - 1`` (gated) outputs of groups ``0 .. G - 2``.
  """
  hidden = []
  h = x
  for group in range(num_groups):
    h = model.apply_group(group, h, **kwargs)
    if group < num_groups - 1:
      if gate is not None:
        h = gate(group, h)
      hidden.append(h)
  return h, hidden


def _abstract(tree: Any) -> tuple[list, Any, list[bool]]:
  leaves, treedef = jax.tree.flatten(tree)
  is_array = [hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves]
  return ([jax.ShapeDtypeStruct(jnp.shape(leaf), leaf.dtype) if a else leaf for leaf, a in zip(leaves, is_array,
                                                                                                  strict=True)],
          treedef, is_array)


def _signature(abstract: list, is_array: list[bool]) -> tuple:
  return tuple((leaf.shape, str(leaf.dtype)) if a else repr(leaf) for leaf, a in zip(abstract, is_array, strict=True))


def _used_inputs(jaxpr: Any, count: int) -> list[bool]:
  used = set()
  for eqn in jaxpr.eqns:
    used.update(v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal))
  used.update(v for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal))
  return [v in used for v in jaxpr.invars[:count]]


def _cross_group_reads(model: Any, x: Any, num_groups: int, rules: list, kwargs: dict) -> list[tuple[str, int, int]]:
  view = functional_view(model, where="check_routable")
  owners = group_leaves(depth_groups(view.params, rules))
  flat, params_def = jax.tree_util.tree_flatten_with_path(view.params)
  paths = [path_string(p) for p, _ in flat]
  p_abs, _, _ = _abstract(view.params)
  o_abs, others_def, _ = _abstract(view.others)
  kw_abs, kw_def, kw_is_array = _abstract(kwargs)
  h_abs, _, _ = _abstract(x)
  h = jax.tree.unflatten(jax.tree.structure(x), h_abs)
  static_kw = [None if a else leaf for leaf, a in zip(kw_abs, kw_is_array, strict=True)]
  dynamic_kw = [leaf for leaf, a in zip(kw_abs, kw_is_array, strict=True) if a]
  reads = []
  for group in range(num_groups):

    def run(p, o, h, dyn, group=group):
      dyn = iter(dyn)
      kw = jax.tree.unflatten(kw_def, [next(dyn) if a else s for s, a in zip(static_kw, kw_is_array, strict=True)])
      built = view.build(jax.tree.unflatten(params_def, p), jax.tree.unflatten(others_def, o))
      return built.apply_group(group, h, **kw)

    closed, h = jax.make_jaxpr(run, return_shape=True)(p_abs, o_abs, h, dynamic_kw)
    for path, owner, used in zip(paths, owners, _used_inputs(closed.jaxpr, len(p_abs)), strict=True):
      if used and owner != group:
        reads.append((path, owner, group))
  return reads


def check_routable(model: Any, x: Any, **kwargs: Any) -> None:
  """Checks that ``model`` can be routed on inputs like ``x``; cached per model structure and input shape.

  Checks the :class:`RoutableModel` members, that ``num_groups`` matches the rules, that the rules cover every
  parameter, that no NNX parameter is reachable under paths of two groups, and, tracing each group abstractly,
  that no group reads another group's parameters.

  Args:
    model: the model.
    x: an input batch (arrays or ``jax.ShapeDtypeStruct``; only shapes and dtypes are used).
    **kwargs: the keyword arguments the routed call passes to ``apply_group``.

  Raises:
    TypeError, ValueError: see :func:`routing_spec`; ``GroupCoverageError`` for uncovered parameters.
    SharedParameterError: a parameter shared by, or read across, two groups.
  """
  num_groups, rules = routing_spec(model, where="check_routable")
  view = functional_view(model, where="check_routable")
  key = None
  if view.key is not None:
    p_abs, _, p_arr = _abstract(view.params)
    x_abs, _, x_arr = _abstract(x)
    kw_abs, kw_def, kw_arr = _abstract(kwargs)
    try:
      key = (view.key, tuple(map(tuple, rules)), _signature(p_abs, p_arr), jax.tree.structure(x),
             _signature(x_abs, x_arr), kw_def, _signature(kw_abs, kw_arr))
      hash(key)
    except TypeError:
      key = None
  if key is not None and key in _CHECKED:
    _CHECKED.move_to_end(key)
    return
  check_shared_parameters(model, rules)
  reads = _cross_group_reads(model, x, num_groups, rules, kwargs)
  if reads:
    listed = "; ".join(f"group {reader} reads {path!r} (group {owner})" for path, owner, reader in reads)
    raise SharedParameterError(
        f"{type(model).__name__}: a depth group reads parameters of another group: {listed}. Examples barred "
        "from the owning group would train them through the reading group (e.g. tied embeddings). Untie them "
        "(give the reading group its own copy) or move both uses into one group.")
  if key is not None:
    _CHECKED[key] = True
    while len(_CHECKED) > _CACHE_SIZE:
      _CHECKED.popitem(last=False)
