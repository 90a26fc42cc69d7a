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
- **Per-group routing** (``mode="per_group"``, any mask): each group (embeddings, every block, the head) runs
  under a ``custom_vjp`` (:func:`param_routed_call`) whose backward computes the group's *parameter* cotangent from
  the cotangent scaled per example by ``mask[b, g]`` and its *input* cotangent from the unscaled one, so lower
  groups still see every example's full gradient signal. Exact for arbitrary non-monotone and soft masks; costs
  roughly one extra backward of the activations (XLA drops the unused half of each ``vjp`` under ``jit``).

:func:`routed_apply` is the full forward for either mode.

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

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from govjax.routing.groups import is_region_path, model_group_rules, model_num_groups, path_string

Gate = Callable[[int, jax.Array], jax.Array]
MODES = ("plain", "depth", "per_group")


def _per_example(scale: jax.Array, like: jax.Array) -> jax.Array:
  """``scale`` ``[B]`` reshaped to broadcast against ``like`` ``[B, ...]``."""
  return scale.astype(like.dtype).reshape(scale.shape + (1,) * (like.ndim - 1))


@jax.custom_vjp
def scale_cotangent(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity on ``x`` ``[B, ...]`` whose backward multiplies example ``b``'s cotangent by ``scale[b]``.

  ``scale`` receives no gradient. A zero scale gives an exactly-zero cotangent (for finite cotangents).
  """
  del scale
  return x


def _scale_cotangent_fwd(x, scale):
  return x, scale


def _scale_cotangent_bwd(scale, ct):
  return ct * _per_example(scale, ct), None


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


def depth_gate(group_mask: jax.Array) -> Gate:
  """A ``gate(group_index, h)`` for ``Transformer.__call__`` that routes gradients by depth.

  Args:
    group_mask: ``[B, L]`` float mask (``L = num_layers + 2``).

  Returns:
    The gate; the forward values are unchanged. Combine with a loss weighted by :func:`depth_loss_weights`
    (:func:`govjax.routing.loss.routed_loss` does both) so that the gradient reaching group ``g`` from example
    ``b`` is exactly ``mask[b, g]`` times its unrouted gradient (for masks where :func:`is_depth_compatible`
    holds).
  """
  ratios = depth_cotangent_ratios(group_mask)

  def gate(group_index: int, h: jax.Array) -> jax.Array:
    return scale_cotangent(h, ratios[:, group_index])

  return gate


def param_routed(fn: Callable[[Any, Any], jax.Array], params: Any, x: Any, scale: jax.Array) -> jax.Array:
  """``fn(params, x)`` whose parameter gradient takes example ``b``'s cotangent scaled by ``scale[b]``.

  ``fn`` must treat the leading axis of ``x`` and of its output as independent examples (true for embeddings,
  transformer blocks with per-example attention, norms and linear heads). The input cotangent is the unscaled one,
  so the gradient flowing to earlier computations is unchanged. ``x`` may be an int array (it then gets no
  cotangent).

  Args:
    fn: ``fn(params, x) -> y`` with ``y`` ``[B, ...]``.
    params: pytree of float arrays.
    x: input with leading axis ``B``.
    scale: ``[B]`` per-example weight of the parameter gradient.

  Returns:
    ``fn(params, x)``.
  """
  return param_routed_parts(lambda parts, inp: fn(parts[0], inp), (params,), x, (scale,))


def param_routed_parts(fn: Callable[[tuple, Any], jax.Array], parts: tuple, x: Any,
                       scales: tuple) -> jax.Array:
  """Like :func:`param_routed` with several parameter parts, each with its own per-example scale.

  The gradient of ``parts[k]`` takes example ``b``'s output cotangent scaled by ``scales[k][b]``; the input
  cotangent is the unscaled one.

  Args:
    fn: ``fn(parts, x) -> y`` with ``y`` ``[B, ...]``.
    parts: tuple of parameter pytrees.
    x: input with leading axis ``B`` (float: gets a cotangent; int: none).
    scales: tuple of ``[B]`` arrays, one per part.

  Returns:
    ``fn(parts, x)``.
  """
  parts, scales = tuple(parts), tuple(scales)
  if len(parts) != len(scales):
    raise ValueError(f"param_routed_parts: {len(parts)} parameter parts but {len(scales)} scales")
  differentiable_x = jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)

  @jax.custom_vjp
  def call(parts, x, scales):
    del scales
    return fn(parts, x)

  def fwd(parts, x, scales):
    if differentiable_x:
      y, vjp = jax.vjp(fn, parts, x)
    else:
      y, vjp = jax.vjp(lambda p: fn(p, x), parts)
    return y, (vjp, scales)

  def bwd(res, ct):
    vjp, scales = res
    param_ct = tuple(vjp(ct * _per_example(scale, ct))[0][k] for k, scale in enumerate(scales))
    x_ct = vjp(ct)[1] if differentiable_x else None
    return param_ct, x_ct, tuple(jnp.zeros_like(scale) for scale in scales)

  call.defvjp(fwd, bwd)
  return call(parts, x, scales)


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


def _check_mask_for(model: Any, group_mask: jax.Array, tokens: jax.Array, num_groups: int) -> jax.Array:
  group_mask = jnp.asarray(group_mask)
  if group_mask.shape != (tokens.shape[0], num_groups):
    raise ValueError(f"group_mask must be [B, G] = [{tokens.shape[0]}, {num_groups}] for "
                     f"{type(model).__name__}, got {group_mask.shape}")
  return group_mask


class _GroupFilter:
  """NNX filter selecting the ``nnx.Param`` leaves of one group (by the group rules), optionally only the region
  leaves (``region=True``) or only the others (``region=False``)."""

  def __init__(self, rules, group: int, region: bool | None = None):
    self.patterns = [(re.compile(p), g) for p, g in rules]
    self.group = group
    self.region = region

  def __call__(self, path, value) -> bool:
    if not isinstance(value, nnx.Param):
      return False
    name = path_string(path)
    if self.region is not None and is_region_path(name) != self.region:
      return False
    group = next((g for p, g in self.patterns if p.fullmatch(name)), None)
    return group == self.group


def group_routed_call(model: Any, group: int, call: Callable[[Any, Any], jax.Array], x: Any,
                      scale: jax.Array, rules=None, region_scale: jax.Array | None = None) -> jax.Array:
  """Runs ``call(model, x)`` with only group ``group``'s parameter gradient scaled per example by ``scale``.

  The group's parameters are selected by the group rules (so they agree with the optimizer's grouping); ``call``
  must only use parameters of that group (others are held constant inside the call).

  Args:
    model: the model.
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
  if region_scale is None:
    graphdef, group_params, rest = nnx.split(model, _GroupFilter(rules, group), ...)
    parts, scales = (group_params,), (scale,)
  else:
    graphdef, base, region, rest = nnx.split(
        model, _GroupFilter(rules, group, region=False), _GroupFilter(rules, group, region=True), ...)
    parts, scales = (base, region), (scale, region_scale)
  rest = jax.lax.stop_gradient(rest)

  def fn(p, inp):
    return call(nnx.merge(graphdef, *p, rest), inp)

  return param_routed_parts(fn, parts, x, scales)


def per_group_forward(model: Any, tokens: jax.Array, group_mask: jax.Array, *, gate: Gate | None = None,
                      return_hidden: bool = False, rules=None, region: jax.Array | None = None,
                      region_mask: jax.Array | None = None):
  """Transformer forward with per-group parameter-gradient routing (any mask).

  Args:
    model: a :class:`~govjax.models.transformer.Transformer` (embed_tokens, blocks, head).
    tokens: ``[B, T]`` ints.
    group_mask: ``[B, G]``; column ``g`` weights example ``b``'s contribution to group ``g``'s parameters.
    gate: optional extra ``gate(group_index, h)`` applied after the routing, as in ``Transformer.__call__``.
    return_hidden: also return the residual stream after group 0 and each block.
    rules: group rules (default: the model's).
    region: forward scale of the removable region's output (``Transformer.__call__``'s ``region``).
    region_mask: ``[B, G]`` weights of the region parameters (default: ``group_mask``, i.e. the region is part
      of its block's group).

  Returns:
    logits, or ``(logits, hidden)``.
  """
  rules = rules if rules is not None else model_group_rules(model)
  num_layers = len(model.blocks)
  hidden = []
  h = group_routed_call(model, 0, lambda m, t: m.embed_tokens(t), tokens, group_mask[:, 0], rules)
  if gate is not None:
    h = gate(0, h)
  hidden.append(h)
  for i in range(num_layers):
    region_scale = None if region_mask is None else region_mask[:, i + 1]
    h = group_routed_call(model, i + 1, lambda m, x, i=i: m.blocks[i](x, region), h, group_mask[:, i + 1], rules,
                          region_scale=region_scale)
    if gate is not None:
      h = gate(i + 1, h)
    hidden.append(h)
  logits = group_routed_call(model, num_layers + 1, lambda m, x: m.head(x), h, group_mask[:, num_layers + 1],
                             rules)
  return (logits, hidden) if return_hidden else logits


def routed_apply(model: Any, tokens: jax.Array, group_mask: jax.Array, *, mode: str = "depth",
                 gate: Gate | None = None, return_hidden: bool = False):
  """The model's forward with gradient routing.

  Args:
    model: a :class:`~govjax.models.transformer.Transformer`.
    tokens: ``[B, T]`` int tokens.
    group_mask: ``[B, L]`` float mask.
    mode: ``"depth"`` (:func:`depth_gate`; exact for depth masks), ``"per_group"`` (any mask) or ``"plain"``
      (no routing).
    gate: an extra gate composed after the routing one (e.g. region adapters).
    return_hidden: also return the residual streams.

  Returns:
    logits ``[B, T, V]`` (or ``(logits, hidden)``), equal to the plain forward. In ``"depth"`` mode the caller
    must weight example ``b``'s loss by ``mask[b, L-1]`` (:func:`depth_loss_weights`); in ``"per_group"`` mode
    the head's own mask column already does this.
  """
  if mode not in MODES:
    raise ValueError(f"routing mode must be one of {MODES}, got {mode!r}")
  group_mask = _check_mask_for(model, group_mask, tokens, model_num_groups(model))
  if mode == "per_group":
    return per_group_forward(model, tokens, group_mask, gate=gate, return_hidden=return_hidden)
  combined = gate
  if mode == "depth":
    routing = depth_gate(group_mask)
    combined = routing if gate is None else (lambda i, h: gate(i, routing(i, h)))
  return model(tokens, gate=combined, return_hidden=return_hidden)
