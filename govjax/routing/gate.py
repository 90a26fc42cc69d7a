"""Efficient gradient routing inside the model's forward pass.

Two mechanisms, both leaving the forward values unchanged:

- **Depth gate** (:func:`depth_gate`, ``mode="depth"``): the residual stream after group ``k`` is passed through
  :func:`scale_cotangent`, an identity whose backward multiplies example ``b``'s cotangent by
  ``r[b, k] = mask[b, k] / mask[b, k + 1]`` (0 where ``mask[b, k + 1] == 0``). The model is a chain, so the
  cotangent reaching group ``g`` from example ``b`` is ``mask[b, L-1] * prod_{k >= g} r[b, k] = mask[b, g]`` times
  its unrouted value, once the loss of example ``b`` is weighted by ``mask[b, L-1]`` (done by
  :func:`~govjax.routing.loss.routed_loss`). For a 0/1 depth mask the gate stops the backward pass at the example's
  depth: exact and nearly free. A soft mask is exact too, as long as a zero never sits above a non-zero (the
  support of every row is a top segment ``g >= g0``); the cumulative product of the mixing weights
  ``m*h + (1-m)*stop_gradient(h)`` would instead give ``prod_{k >= g} mask[b, k]``, which is why ratios are used.
- **Per-group routing** (``mode="per_group"``, any mask): each group's (embeddings, every block, the head)
  *parameter* cotangent is computed from the cotangent scaled per example by ``mask[b, g]`` and its *input*
  cotangent from the unscaled one, so lower groups still see every example's full gradient signal. Exact for
  arbitrary non-monotone and soft masks. By default the scaling happens at each operation where the group's
  parameters meet the examples (:mod:`govjax.routing.opwise`: one backward pass, about the cost of a plain one);
  where that cannot be proved exact for a group, the group runs under one ``custom_vjp``
  (:func:`param_routed_parts`) whose backward runs its VJP twice, scaled and unscaled (one extra backward of the
  activations).

:func:`routed_apply` is the full forward for either mode, for any model that follows
:class:`~govjax.routing.protocol.RoutableModel` (``num_groups``, ``group_rules()``, ``apply_group(group, h)``;
NNX modules and bound Linen modules); the built-in transformer is one. The mask is checked strictly
(:func:`~govjax.routing.masks.check_group_mask`: ``[B, G]`` with ``G`` from the model's rules) and the model once
per structure (:func:`~govjax.routing.protocol.check_routable`: no parameter shared by two groups).

Barred examples cannot leak NaN / inf into a group: cotangents are scaled with a select (``where(scale > 0,
ct * scale, 0)``), not a multiply (``0 * NaN = NaN``). What a select cannot stop is a non-finite *forward*
activation of a barred example reaching a parameter gradient through the layer's input (``x^T 0`` is NaN when
``x`` is); the per-example path (:func:`~govjax.routing.transforms.exact_routed_grads`) excludes those too.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=7, num_layers=2, width=16, num_heads=2, context=8),
  ...                     rngs=nnx.Rngs(0))
  >>> tokens = jnp.ones((2, 8), jnp.int32)
  >>> mask = jnp.array([[1., 1., 1., 1.], [0., 0., 1., 1.]])
  >>> bool(jnp.allclose(routed_apply(model, tokens, mask, mode="per_group"), model(tokens), atol=1e-5))
  True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from govjax.routing.groups import depth_groups, group_leaves, is_region_path, model_group_rules, path_string
from govjax.routing.masks import check_group_mask
from govjax.routing.opwise import opwise_call, plan_opwise
from govjax.routing.protocol import FunctionalView, check_routable, forward, functional_view, routing_spec

__all__ = [
    "Gate", "MODES", "batch_size_of", "depth_cotangent_ratios", "depth_gate", "depth_loss_weights",
    "group_routed_call", "is_depth_compatible", "param_routed", "param_routed_call", "param_routed_parts",
    "per_group_forward", "routed_apply", "scale_cotangent", "weighted_per_group_forward",
]

Gate = Callable[[int, jax.Array], jax.Array]
MODES = ("none", "depth", "per_group")


def _per_example(scale: jax.Array, like: jax.Array) -> jax.Array:
  """``scale`` ``[B]`` reshaped to broadcast against ``like`` ``[B, ...]``."""
  return scale.astype(like.dtype).reshape(scale.shape + (1,) * (like.ndim - 1))


@jax.custom_vjp
def scale_cotangent(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity on ``x`` ``[B, ...]`` whose backward multiplies example ``b``'s cotangent by ``scale[b]``.

  ``scale`` receives no gradient. A zero scale gives an exactly-zero cotangent, even for a NaN / inf one.
  """
  del scale
  return x


def _scale_cotangent_fwd(x, scale):
  return x, scale


def _select_scale(ct: jax.Array, scale: jax.Array) -> jax.Array:
  """``ct * scale`` per example, exactly 0 where ``scale <= 0`` (a select, so a NaN / inf cotangent cannot leak)."""
  s = _per_example(scale, ct)
  return jnp.where(s > 0, ct * s, jnp.zeros_like(ct))


def _scale_cotangent_bwd(scale, ct):
  return _select_scale(ct, scale), None


scale_cotangent.defvjp(_scale_cotangent_fwd, _scale_cotangent_bwd)


def depth_cotangent_ratios(group_mask: jax.Array) -> jax.Array:
  """``[B, L - 1]`` backward scale of the gate after group ``k``: ``mask[:, k] / mask[:, k + 1]`` (0 if 0/0).

  For 0/1 depth masks the ratios are exactly 0 or 1.
  """
  mask = jnp.asarray(group_mask, jnp.float32)
  upper = mask[:, 1:]
  safe = jnp.where(upper > 0, upper, 1.0)
  return jnp.where(upper > 0, mask[:, :-1] / safe, 0.0)


def depth_loss_weights(group_mask: jax.Array) -> jax.Array:
  """``[B]`` weight of each example's loss in depth mode: its mask on the top group ``L - 1``."""
  return jnp.asarray(group_mask, jnp.float32)[:, -1]


def is_depth_compatible(group_mask: Any) -> bool:
  """Host-side check that ``mode="depth"`` is exact for this mask: no zero above a non-zero in any row."""
  mask = jnp.asarray(group_mask)
  upper_zero = mask[:, 1:] == 0
  return not bool(jnp.any(upper_zero & (mask[:, :-1] != 0)))


def batch_size_of(x: Any, *, where: str = "routing") -> int:
  """The leading (example) axis shared by every array leaf of ``x``."""
  sizes = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(x) if jnp.ndim(leaf) > 0}
  if len(sizes) != 1:
    raise ValueError(f"{where}: the inputs must share one leading batch axis B, got leading sizes {sorted(sizes)}")
  return sizes.pop()


def _gate_tree(h: Any, scale: jax.Array) -> Any:
  return jax.tree.map(lambda leaf: scale_cotangent(leaf, scale) if jnp.issubdtype(leaf.dtype, jnp.inexact)
                      else leaf, h)


def depth_gate(group_mask: jax.Array, *, num_groups: int | None = None, checked: bool = False) -> Gate:
  """A ``gate(group_index, h)`` that routes gradients by depth, for a model that calls it between its groups.

  Call it on the output of groups ``0 .. G - 2`` (``Transformer.__call__(tokens, gate=...)`` does; for a
  :class:`~govjax.routing.protocol.RoutableModel`, :func:`routed_apply` does).

  Args:
    group_mask: ``[B, G]`` float mask.
    num_groups: ``G`` from the group rules; when given, the mask must have exactly that many columns.
    checked: check traced mask values with ``checkify`` (see :mod:`govjax.routing.masks`).

  Returns:
    The gate; the forward values are unchanged. Combine with a loss weighted by :func:`depth_loss_weights`
    (:func:`govjax.routing.loss.routed_loss` does both) so that the gradient reaching group ``g`` from example
    ``b`` is exactly ``mask[b, g]`` times its unrouted gradient (for masks where :func:`is_depth_compatible`
    holds). The gate raises if called with a group index outside ``0 .. G - 2`` or a batch other than ``B``.
  """
  mask = jnp.asarray(group_mask)
  mask = check_group_mask(mask, num_groups if num_groups is not None else (mask.shape[-1] if mask.ndim else 0),
                          where="depth_gate", checked=checked)
  return _depth_gate(mask)


def _depth_gate(mask: jax.Array) -> Gate:
  """:func:`depth_gate` for a mask already checked."""
  batch, groups = mask.shape
  ratios = depth_cotangent_ratios(mask)

  def gate(group_index: int, h: jax.Array) -> jax.Array:
    if isinstance(group_index, bool) or not isinstance(group_index, int) or not 0 <= group_index < groups - 1:
      raise ValueError(f"depth_gate: group_index must be an int in [0, {groups - 2}] (a gate follows every group "
                       f"but the last of G={groups}), got {group_index!r}")
    if batch_size_of(h, where="depth_gate") != batch:
      raise ValueError(f"depth_gate: the mask has B={batch} rows but h has leading axis "
                       f"{batch_size_of(h, where='depth_gate')}")
    return _gate_tree(h, ratios[:, group_index])

  return gate


def param_routed(fn: Callable[[Any, Any], jax.Array], params: Any, x: Any, scale: jax.Array, *,
                 opwise: bool = True) -> jax.Array:
  """``fn(params, x)`` whose parameter gradient takes example ``b``'s cotangent scaled by ``scale[b]``.

  ``fn`` must treat the leading axis of ``x`` and of its output as independent examples (true for embeddings,
  transformer blocks with per-example attention, norms and linear heads). The input cotangent is the unscaled one,
  so the gradient flowing to earlier computations is unchanged. Integer leaves of ``x`` get no cotangent.

  Args:
    fn: ``fn(params, x) -> y`` with ``y`` ``[B, ...]``.
    params: pytree of float arrays.
    x: input (a pytree of arrays) with leading axis ``B``.
    scale: ``[B]`` per-example weight of the parameter gradient.
    opwise: scale at each operation where the parameters meet the examples (one backward pass,
      :mod:`govjax.routing.opwise`) when that is provably exact; False: always the whole-group VJP.

  Returns:
    ``fn(params, x)``.
  """
  return param_routed_parts(lambda parts, inp: fn(parts[0], inp), (params,), x, (scale,), opwise=opwise)


def param_routed_parts(fn: Callable[[tuple, Any], jax.Array], parts: tuple, x: Any,
                       scales: tuple, *, opwise: bool = True) -> jax.Array:
  """Like :func:`param_routed` with several parameter parts, each with its own per-example scale.

  The gradient of ``parts[k]`` takes example ``b``'s output cotangent scaled by ``scales[k][b]``; the input
  cotangent is the unscaled one.

  Two implementations with the same gradients (up to float rounding): per operation
  (:func:`govjax.routing.opwise.opwise_call`, one backward pass through the group; used whenever
  :func:`~govjax.routing.opwise.plan_opwise` can prove it exact) and per group (a ``custom_vjp`` around the whole
  group whose backward runs the group's VJP twice, once with the scaled and once with the unscaled cotangent).

  Args:
    fn: ``fn(parts, x) -> y`` with ``y`` ``[B, ...]``.
    parts: tuple of parameter pytrees.
    x: input (pytree) with leading axis ``B`` (float leaves get a cotangent; int leaves none).
    scales: tuple of ``[B]`` arrays, one per part.
    opwise: allow the per-operation implementation.

  Returns:
    ``fn(parts, x)``.
  """
  parts, scales = tuple(parts), tuple(scales)
  if len(parts) != len(scales):
    raise ValueError(f"param_routed_parts: {len(parts)} parameter parts but {len(scales)} scales")
  if opwise:
    plan = plan_opwise(fn, parts, x)
    if plan.supported:
      return opwise_call(plan, parts, x, scales)
  return _group_routed_vjp(fn, parts, x, scales)


def _group_routed_vjp(fn: Callable[[tuple, Any], jax.Array], parts: tuple, x: Any, scales: tuple) -> jax.Array:
  """:func:`param_routed_parts` per group: one ``custom_vjp`` whose backward runs the group's VJP twice."""
  leaves, treedef = jax.tree.flatten(x)
  differentiable = [jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact) for v in leaves]
  fixed = [v for v, d in zip(leaves, differentiable, strict=True) if not d]

  def with_inputs(diff_leaves, fixed_leaves):
    diff_iter, fixed_iter = iter(diff_leaves), iter(fixed_leaves)
    return jax.tree.unflatten(treedef, [next(diff_iter) if d else next(fixed_iter) for d in differentiable])

  @jax.custom_vjp
  def call(parts, diff_leaves, fixed_leaves, scales):
    del scales
    return fn(parts, with_inputs(diff_leaves, fixed_leaves))

  def fwd(parts, diff_leaves, fixed_leaves, scales):
    y, vjp = jax.vjp(lambda p, d: fn(p, with_inputs(d, fixed_leaves)), parts, diff_leaves)
    return y, (vjp, scales)

  def bwd(res, ct):
    vjp, scales = res
    param_ct = tuple(vjp(jax.tree.map(lambda c, s=scale: _select_scale(c, s), ct))[0][k]
                     for k, scale in enumerate(scales))
    x_ct = vjp(ct)[1] if any(differentiable) else []
    return param_ct, x_ct, None, tuple(jnp.zeros_like(scale) for scale in scales)

  call.defvjp(fwd, bwd)
  return call(parts, [v for v, d in zip(leaves, differentiable, strict=True) if d], fixed, scales)


def param_routed_call(module: Any, x: jax.Array, scale: jax.Array,
                      method: Callable[[Any, jax.Array], jax.Array] | None = None) -> jax.Array:
  """Calls an NNX module (or a pytree of modules) with :func:`param_routed` parameter-gradient scaling.

  Args:
    module: an ``nnx.Module`` (or e.g. a tuple of modules).
    x: input ``[B, ...]``.
    scale: ``[B]`` weight of each example's contribution to the module's ``nnx.Param`` gradients.
    method: ``method(module, x)``; default ``module(x)``.

  Returns:
    The module output.
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  method = method if method is not None else (lambda m, inp: m(inp))

  def fn(p, inp):
    return method(nnx.merge(graphdef, p, rest), inp)

  return param_routed(fn, params, x, scale)


def _split_by_group(view: FunctionalView, ids: list[int], regions: list[bool], group: int,
                    split_region: bool) -> tuple[tuple[list, ...], Callable[[tuple], Any]]:
  """The group's parameter leaves (base and region parts with ``split_region``) and ``rebuild(parts) -> model``
  with every other parameter held constant (``stop_gradient``)."""
  leaves, treedef = jax.tree.flatten(view.params)
  if split_region:
    selections = ([i for i, g in enumerate(ids) if g == group and not regions[i]],
                  [i for i, g in enumerate(ids) if g == group and regions[i]])
  else:
    selections = ([i for i, g in enumerate(ids) if g == group],)
  chosen = {i for selection in selections for i in selection}
  fixed = [leaf if i in chosen else jax.lax.stop_gradient(leaf) for i, leaf in enumerate(leaves)]
  others = jax.lax.stop_gradient(view.others)
  parts = tuple([leaves[i] for i in selection] for selection in selections)

  def rebuild(new_parts: tuple) -> Any:
    merged = list(fixed)
    for selection, values in zip(selections, new_parts, strict=True):
      for i, value in zip(selection, values, strict=True):
        merged[i] = value
    return view.build(jax.tree.unflatten(treedef, merged), others)

  return parts, rebuild


def _group_layout(view: FunctionalView, rules) -> tuple[list[int], list[bool]]:
  ids = group_leaves(depth_groups(view.params, rules))
  paths = [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(view.params)[0]]
  return ids, [is_region_path(p) for p in paths]


def _routed_group(view, ids, regions, group, call, x, scale, region_scale=None, opwise=True):
  parts, rebuild = _split_by_group(view, ids, regions, group, region_scale is not None)
  scales = (scale,) if region_scale is None else (scale, region_scale)
  return param_routed_parts(lambda p, inp: call(rebuild(p), inp), parts, x, scales, opwise=opwise)


def group_routed_call(model: Any, group: int, call: Callable[[Any, Any], jax.Array], x: Any,
                      scale: jax.Array, rules=None, region_scale: jax.Array | None = None) -> jax.Array:
  """Runs ``call(model, x)`` with only group ``group``'s parameter gradient scaled per example by ``scale``.

  The group's parameters are selected by the group rules (so they agree with the optimizer's grouping); ``call``
  must only use parameters of that group (others are held constant inside the call).

  Args:
    model: an NNX module or a bound Linen module.
    group: the group index.
    call: ``call(model, x) -> y``.
    x: input ``[B, ...]``.
    scale: ``[B]`` weight of each example's contribution to the group's parameters.
    rules: group rules (default: the model's).
    region_scale: if given, the group's region parameters (paths with a ``region`` component) take this ``[B]``
      scale instead of ``scale``.

  Returns:
    ``call(model, x)``.
  """
  rules = rules if rules is not None else model_group_rules(model)
  view = functional_view(model, where="group_routed_call")
  ids, regions = _group_layout(view, rules)
  return _routed_group(view, ids, regions, group, call, x, scale, region_scale)


def _per_group(model, x, mask, num_groups, rules, gate, return_hidden, region_mask, call_kwargs, opwise=True):
  view = functional_view(model, where="per_group_forward")
  ids, regions = _group_layout(view, rules)
  # Per-example keyword arguments (e.g. the region scale [B]) travel with the rows, so that the per-operation
  # routing (govjax.routing.opwise) sees them as examples rather than as constants of the group.
  batch = mask.shape[0]
  row_kwargs = {k: v for k, v in call_kwargs.items() if hasattr(v, "shape") and jnp.ndim(v) and v.shape[0] == batch}
  static_kwargs = {k: v for k, v in call_kwargs.items() if k not in row_kwargs}
  hidden = []
  h = x
  for group in range(num_groups):
    region_scale = None if region_mask is None else region_mask[:, group]
    h = _routed_group(view, ids, regions, group,
                      lambda m, inp, g=group: m.apply_group(g, inp[0], **static_kwargs, **inp[1]), (h, row_kwargs),
                      mask[:, group], region_scale, opwise)
    if group < num_groups - 1:
      if gate is not None:
        h = gate(group, h)
      hidden.append(h)
  return (h, hidden) if return_hidden else h


def per_group_forward(model: Any, x: Any, group_mask: jax.Array, *, gate: Gate | None = None,
                      return_hidden: bool = False, rules=None, region: jax.Array | None = None,
                      region_mask: jax.Array | None = None, checked: bool = False, **call_kwargs: Any):
  """Forward with per-group parameter-gradient routing (any mask), for any routable model.

  Args:
    model: a :class:`~govjax.routing.protocol.RoutableModel` (e.g. the built-in transformer).
    x: the model input, leading axis ``B``.
    group_mask: ``[B, G]``; column ``g`` weights example ``b``'s contribution to group ``g``'s parameters.
    gate: optional extra ``gate(group_index, h)`` applied after each group but the last.
    return_hidden: also return the outputs of groups ``0 .. G - 2``.
    rules: group rules (default: the model's).
    region: forward scale of the removable region's output (passed to ``apply_group`` as ``region=``).
    region_mask: ``[B, G]`` weights of the region parameters (default: ``group_mask``, i.e. the region is part
      of its block's group).
    checked: check traced mask values with ``checkify``.
    **call_kwargs: passed to every ``apply_group`` call.

  Returns:
    The output, or ``(output, hidden)``.
  """
  num_groups, model_rules = routing_spec(model, where="per_group_forward")
  rules = rules if rules is not None else model_rules
  batch = batch_size_of(x, where="per_group_forward")
  mask = check_group_mask(group_mask, num_groups, batch_size=batch, where="per_group_forward", checked=checked)
  if region_mask is not None:
    region_mask = check_group_mask(region_mask, num_groups, batch_size=batch, where="per_group_forward(region_mask)",
                                   checked=checked)
  if region is not None:
    call_kwargs = {**call_kwargs, "region": region}
  check_routable(model, x, **call_kwargs)
  return _per_group(model, x, mask, num_groups, rules, gate, return_hidden, region_mask, call_kwargs)


def weighted_per_group_forward(model: Any, x: Any, weights: jax.Array, *, region: jax.Array | None = None,
                               region_weights: jax.Array | None = None, return_hidden: bool = False):
  """:func:`per_group_forward` with per-example weights that are not masks (e.g. normalised, above 1).

  Used by the ``"region"`` loss, whose weights carry the normaliser; only the shapes are checked.

  Args:
    model: a routable model.
    x: the model input, leading axis ``B``.
    weights: ``[B, G]`` weights of each example's contribution to each group's parameters.
    region: forward scale of the removable region's output (``apply_group(..., region=)``).
    region_weights: ``[B, G]`` weights of the region parameters.
    return_hidden: also return the outputs of groups ``0 .. G - 2``.

  Returns:
    The output, or ``(output, hidden)``.
  """
  num_groups, rules = routing_spec(model, where="weighted_per_group_forward")
  batch = batch_size_of(x, where="weighted_per_group_forward")
  for name, value in (("weights", weights), ("region_weights", region_weights)):
    if value is not None and jnp.shape(value) != (batch, num_groups):
      raise ValueError(f"weighted_per_group_forward: {name} must be [B, G] = [{batch}, {num_groups}], got "
                       f"{jnp.shape(value)}")
  call_kwargs = {} if region is None else {"region": region}
  check_routable(model, x, **call_kwargs)
  return _per_group(model, x, weights, num_groups, rules, None, return_hidden, region_weights, call_kwargs)


def routed_apply(model: Any, x: Any, group_mask: jax.Array, *, mode: str = "depth", gate: Gate | None = None,
                 return_hidden: bool = False, checked: bool = False, opwise: bool = True, **call_kwargs: Any):
  """The model's forward with gradient routing.

  Args:
    model: a :class:`~govjax.routing.protocol.RoutableModel` (NNX module or bound Linen module; e.g. the built-in
      :class:`~govjax.models.transformer.Transformer`).
    x: the model input (e.g. ``[B, T]`` tokens), leading axis ``B``.
    group_mask: ``[B, G]`` float mask, ``G`` = ``model.num_groups``.
    mode: ``"depth"`` (:func:`depth_gate`; exact for depth masks), ``"per_group"`` (any mask) or ``"none"``
      (no routing).
    gate: an extra gate composed after the routing one (e.g. region adapters).
    return_hidden: also return the outputs of groups ``0 .. G - 2`` (the residual streams).
    checked: check traced mask values with ``checkify`` (see :mod:`govjax.routing.masks`).
    opwise: ``"per_group"`` routes at each operation where parameters meet the examples (one backward pass;
      :mod:`govjax.routing.opwise`) where that is provably exact; False: the whole-group VJP (two backward passes
      through each group; the same gradients, kept for comparison).
    **call_kwargs: passed to every ``model.apply_group`` call.

  Returns:
    The output (or ``(output, hidden)``), equal to the plain forward. In ``"depth"`` mode the caller must weight
    example ``b``'s loss by ``mask[b, G-1]`` (:func:`depth_loss_weights`); in ``"per_group"`` mode the last
    group's own mask column already does this.

  Raises:
    TypeError: the model misses a protocol member (named in the message).
    ValueError: a mask that is not ``[B, G]`` or holds values outside ``[0, 1]``.
    SharedParameterError: a parameter used by two groups.
  """
  if mode not in MODES:
    raise ValueError(f"routing mode must be one of {MODES}, got {mode!r}")
  num_groups, rules = routing_spec(model, where="routed_apply")
  batch = batch_size_of(x, where="routed_apply")
  mask = check_group_mask(group_mask, num_groups, batch_size=batch, where="routed_apply", checked=checked)
  if mode != "none":
    check_routable(model, x, **call_kwargs)
  if mode == "per_group":
    return _per_group(model, x, mask, num_groups, rules, gate, return_hidden, None, call_kwargs, opwise)
  combined = gate
  if mode == "depth":
    routing = _depth_gate(mask)
    combined = routing if gate is None else (lambda i, h: gate(i, routing(i, h)))
  out, hidden = forward(model, x, num_groups, combined, **call_kwargs)
  if mode == "depth":
    # Rows barred from the last group get an exactly-zero output cotangent (their loss weight is 0; the select
    # also stops a NaN / inf from their loss).
    out = _gate_tree(out, (depth_loss_weights(mask) > 0).astype(jnp.float32))
  return (out, hidden) if return_hidden else out
