"""Per-example parameter-gradient scaling at each operation where a group's parameters meet the examples.

Per-group routing (:func:`govjax.routing.gate.param_routed_parts`) needs, for a group ``y = fn(parts, x)`` whose
rows are independent examples, the parameter cotangent of ``parts[k]`` computed from the output cotangent scaled
per example by ``scales[k][b]``, and the input cotangent from the unscaled one. Done at the level of the whole
group, that is two backward passes through the group (one scaled, one not): every activation cotangent inside the
group is computed twice.

This module does it once. It traces ``fn`` to a jaxpr and classifies every value as *rows* (depends on ``x``),
*parameter-only* (depends on ``parts[k]`` but not on ``x``: a kernel, its reshape, a broadcast bias) or constant.
An operation that combines a parameter-only value with a rows value (a matmul ``x @ W``, a bias add, a norm's
scale, an embedding lookup) is where a parameter reaches the examples; only those operations get a ``custom_vjp``
whose backward takes the parameter side of the operation's VJP from the cotangent scaled per example (along the
output's batch axis) and the rows side from the unscaled one. Everything else is differentiated as usual, so the
backward pass computes each activation cotangent once and each weight gradient once, as a plain step does (the
extra cost is the elementwise scaling of the cotangents at those operations).

Why it is exact: every path from a parameter to the output leaves the parameter-only region through such an
operation, whose output row ``b`` belongs to example ``b`` (the group treats rows independently); its unscaled
cotangent is example ``b``'s own, so scaling it by ``scales[k][b]`` before the parameter side of the VJP weights
example ``b``'s contribution to ``parts[k]`` by exactly ``scales[k][b]``.

The batch axis of each such operation's output is found by tracing ``fn`` a second time with a different number
of rows: the one axis whose size changes is the batch axis. :func:`plan_opwise` returns an unsupported plan (and
the caller falls back to the whole-group VJP) whenever that is not clear: the two traces differ in structure, an
output's batch axis is merged with another axis, a parameter-only value depends on two parts, or the group's
output depends on the parameters but not on the examples.

Example:
  >>> import jax, jax.numpy as jnp
  >>> fn = lambda parts, x: jnp.tanh(x @ parts[0]["w"]) + parts[0]["b"]
  >>> parts, x = ({"w": jnp.ones((3, 2)), "b": jnp.zeros(2)},), jnp.arange(12.0).reshape(4, 3) / 10
  >>> plan = plan_opwise(fn, parts, x)
  >>> plan.supported, plan.num_routed
  (True, 2)
  >>> scale = jnp.array([1.0, 0.0, 0.5, 1.0])
  >>> g = jax.grad(lambda p: opwise_call(plan, p, x, (scale,)).sum())(parts)
  >>> ref = jax.grad(lambda p: (scale[:, None] * fn(p, x)).sum())(parts)
  >>> bool(jnp.allclose(g[0]["w"], ref[0]["w"])), bool(jnp.allclose(g[0]["b"], ref[0]["b"]))
  (True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

__all__ = ["OpwisePlan", "opwise_call", "plan_opwise"]


class OpwisePlan(NamedTuple):
  """How :func:`opwise_call` evaluates a group.

  Attributes:
    supported: False when the group must use the whole-group VJP (``reason`` says why).
    reason: why not, or ``""``.
    jaxpr: the closed jaxpr of ``fn(parts, x)`` (``None`` when unsupported).
    routed: ``{eqn index: entry}`` for the operations that need more than plain evaluation: ``("op", roles,
      axes)`` for an operation where parameters meet the examples (per input the part index of a parameter-only
      input, ``-1`` for a differentiable rows input, ``-2`` for anything else; per output its batch axis, ``None``
      for outputs without a cotangent), or ``("call", routed)`` for a ``jit`` / ``checkpoint`` (remat) call whose
      body is planned the same way.
    out_tree: the tree structure of ``fn``'s output.
    num_parts: ``len(parts)``.
  """

  supported: bool
  reason: str
  jaxpr: Any = None
  routed: dict | None = None
  out_tree: Any = None
  num_parts: int = 0

  @property
  def num_routed(self) -> int:
    """Number of operations (inside calls too) whose parameter cotangent is scaled per example."""
    return _count(self.routed or {})


_ROWS, _OTHER = -1, -2
_CALLS = ("pjit", "jit", "remat2", "checkpoint")  # call primitives whose bodies are planned, not wrapped whole
_NO_DEPS = (frozenset(), False)


class _Unsupported(Exception):
  pass


def _count(routed: dict) -> int:
  return sum(_count(entry[1]) if entry[0] == "call" else 1 for entry in routed.values())


def _with_rows(leaf: Any, rows: int) -> jax.ShapeDtypeStruct:
  aval = jax.typeof(leaf)
  return jax.ShapeDtypeStruct((rows,) + tuple(aval.shape[1:]), aval.dtype, weak_type=aval.weak_type)


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
  aval = jax.typeof(leaf)
  return jax.ShapeDtypeStruct(tuple(aval.shape), aval.dtype, weak_type=aval.weak_type)


def _batch_axis(shape: tuple, other: tuple, rows: int, other_rows: int) -> int | None:
  if len(shape) != len(other):
    return None
  changed = [a for a, (d, e) in enumerate(zip(shape, other, strict=True)) if d != e]
  if len(changed) != 1 or shape[changed[0]] != rows or other[changed[0]] != other_rows:
    return None
  return changed[0]


def _inexact(aval: Any) -> bool:
  return hasattr(aval, "dtype") and jnp.issubdtype(aval.dtype, jnp.inexact)


def _body(eqn) -> tuple[Any, list]:
  """The body jaxpr of a call primitive and its consts."""
  inner = eqn.params["jaxpr"]
  return (inner.jaxpr, list(inner.consts)) if hasattr(inner, "consts") else (inner, [])


def _is_call(eqn) -> bool:
  return eqn.primitive.name in _CALLS and "jaxpr" in eqn.params


def _plan_jaxpr(jaxpr, jaxpr2, in_deps: list, rows: int, other_rows: int) -> tuple[dict, list]:
  """``(routed, out_deps)`` for one jaxpr traced with ``rows`` (``jaxpr``) and ``other_rows`` (``jaxpr2``) rows."""
  if len(jaxpr.eqns) != len(jaxpr2.eqns) or any(
      a.primitive is not b.primitive for a, b in zip(jaxpr.eqns, jaxpr2.eqns, strict=True)):
    raise _Unsupported("the group traces differently for another number of rows")
  deps: dict[Any, tuple[frozenset, bool]] = {v: _NO_DEPS for v in jaxpr.constvars}
  deps.update(zip(jaxpr.invars, in_deps, strict=True))

  def dep(v):
    return _NO_DEPS if isinstance(v, Literal) else deps[v]

  routed = {}
  for index, (eqn, eqn2) in enumerate(zip(jaxpr.eqns, jaxpr2.eqns, strict=True)):
    ins = [dep(v) for v in eqn.invars]
    has_rows = any(r for _, r in ins)
    param_only = [p for p, r in ins if p and not r]
    if has_rows and param_only and _is_call(eqn):
      body_routed, out_deps = _plan_jaxpr(_body(eqn)[0], _body(eqn2)[0], ins, rows, other_rows)
      routed[index] = ("call", body_routed)
      deps.update(zip(eqn.outvars, out_deps, strict=True))
      continue
    used = frozenset().union(*(p for p, _ in ins)) if ins else frozenset()
    for v in eqn.outvars:
      deps[v] = (used, has_rows)
    if not (has_rows and param_only):
      continue
    if any(len(p) > 1 for p in param_only):
      raise _Unsupported(f"{eqn.primitive} combines the examples with a value derived from two parameter parts")
    roles = tuple(next(iter(p)) if p and not r else (_ROWS if r and _inexact(v.aval) else _OTHER)
                  for v, (p, r) in zip(eqn.invars, ins, strict=True))
    axes = []
    for v, v2 in zip(eqn.outvars, eqn2.outvars, strict=True):
      axis = _batch_axis(tuple(v.aval.shape), tuple(v2.aval.shape), rows, other_rows) if _inexact(v.aval) else None
      if axis is None and _inexact(v.aval):
        raise _Unsupported(f"{eqn.primitive}: no single batch axis in its output {v.aval.shape}")
      axes.append(axis)
    routed[index] = ("op", roles, tuple(axes))
  return routed, [dep(v) for v in jaxpr.outvars]


def plan_opwise(fn: Callable[[tuple, Any], Any], parts: tuple, x: Any) -> OpwisePlan:
  """Traces ``fn(parts, x)`` and finds the operations where parameters meet the examples.

  Args:
    fn: ``fn(parts, x) -> y``; rows (leading axis of every leaf of ``x``) are independent examples.
    parts: tuple of parameter pytrees.
    x: pytree of inputs with leading axis ``B``.

  Returns:
    An :class:`OpwisePlan` (``supported`` False, with a reason, where per-operation routing cannot be proved
    exact by the checks described in the module docstring).
  """
  parts = tuple(parts)
  x_leaves = jax.tree.leaves(x)
  if not x_leaves or any(jnp.ndim(v) == 0 for v in x_leaves) or len({jnp.shape(v)[0] for v in x_leaves}) != 1:
    return OpwisePlan(False, "the inputs do not share a leading batch axis")
  rows = int(jnp.shape(x_leaves[0])[0])
  other_rows = rows + 1
  abstract_parts = jax.tree.map(_abstract, parts)
  try:
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(abstract_parts, jax.tree.map(_abstract, x))
    other = jax.make_jaxpr(fn)(abstract_parts, jax.tree.map(lambda v: _with_rows(v, other_rows), x))
  except Exception as error:  # noqa: BLE001 - any trace failure means: use the whole-group VJP
    return OpwisePlan(False, f"tracing with {other_rows} rows failed: {type(error).__name__}")
  owners = [frozenset({k}) for k, p in enumerate(parts) for _ in jax.tree.leaves(p)]
  in_deps = [(o, False) for o in owners] + [(frozenset(), True)] * len(x_leaves)
  try:
    routed, out_deps = _plan_jaxpr(closed.jaxpr, other.jaxpr, in_deps, rows, other_rows)
  except _Unsupported as error:
    return OpwisePlan(False, str(error))
  if any(p and not r for p, r in out_deps):
    return OpwisePlan(False, "an output depends on the parameters but not on the examples")
  return OpwisePlan(True, "", closed, routed, jax.tree.structure(out_shape), len(parts))


def _select_scale(ct: jax.Array, scale: jax.Array, axis: int) -> jax.Array:
  shape = [1] * ct.ndim
  shape[axis] = scale.shape[0]
  s = scale.astype(ct.dtype).reshape(shape)
  return jnp.where(s > 0, ct * s, jnp.zeros_like(ct))


def _bind(eqn, values: list) -> list:
  with eqn.ctx.manager:  # the equation's tracing context (e.g. its compute type), as jax.core.eval_jaxpr does
    out = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
  return list(out) if eqn.primitive.multiple_results else [out]


def _routed_eqn(eqn, roles: tuple, axes: tuple, values: list, scales: tuple) -> list:
  """One operation under a ``custom_vjp``: parameter side from the scaled cotangent, rows side from the unscaled."""
  p_idx = [i for i, r in enumerate(roles) if r >= 0]
  r_idx = [i for i, r in enumerate(roles) if r == _ROWS]
  o_idx = [i for i, r in enumerate(roles) if r == _OTHER]
  used_parts = sorted({roles[i] for i in p_idx})

  def assemble(p_vals, r_vals, o_vals):
    merged = [None] * len(roles)
    for idx, vals in ((p_idx, p_vals), (r_idx, r_vals), (o_idx, o_vals)):
      for i, v in zip(idx, vals, strict=True):
        merged[i] = v
    return merged

  @jax.custom_vjp
  def call(p_vals, r_vals, o_vals, part_scales):
    del part_scales
    return _bind(eqn, assemble(p_vals, r_vals, o_vals))

  def fwd(p_vals, r_vals, o_vals, part_scales):
    out, vjp = jax.vjp(lambda p, r: _bind(eqn, assemble(p, r, o_vals)), p_vals, r_vals)
    return out, (vjp, part_scales)

  def bwd(res, cts):
    vjp, part_scales = res
    p_ct = [None] * len(p_idx)
    for k in used_parts:
      scaled = [ct if axis is None else _select_scale(ct, part_scales[k], axis)
                for ct, axis in zip(cts, axes, strict=True)]
      got = vjp(scaled)[0]
      for j, i in enumerate(p_idx):
        if roles[i] == k:
          p_ct[j] = got[j]
    r_ct = vjp(list(cts))[1] if r_idx else []
    return p_ct, r_ct, None, None

  call.defvjp(fwd, bwd)
  return call([values[i] for i in p_idx], [values[i] for i in r_idx], [values[i] for i in o_idx], scales)


def _eval(jaxpr, consts: list, args: list, routed: dict, scales: tuple) -> list:
  env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
  env.update(zip(jaxpr.invars, args, strict=True))

  def read(v):
    return v.val if isinstance(v, Literal) else env[v]

  for index, eqn in enumerate(jaxpr.eqns):
    values = [read(v) for v in eqn.invars]
    entry = routed.get(index)
    if entry is None:
      outs = _bind(eqn, values)
    elif entry[0] == "op":
      outs = _routed_eqn(eqn, entry[1], entry[2], values, scales)
    else:
      body, body_consts = _body(eqn)
      run = lambda *vals, body=body, body_consts=body_consts, inner=entry[1]: _eval(  # noqa: E731
          body, body_consts, list(vals), inner, scales)
      if eqn.primitive.name in ("remat2", "checkpoint"):
        run = jax.checkpoint(run, prevent_cse=eqn.params.get("prevent_cse", True), policy=eqn.params.get("policy"))
      outs = list(run(*values))
    env.update(zip(eqn.outvars, outs, strict=True))
  return [read(v) for v in jaxpr.outvars]


def opwise_call(plan: OpwisePlan, parts: tuple, x: Any, scales: tuple) -> Any:
  """Evaluates ``fn(parts, x)`` (the function :func:`plan_opwise` traced) with per-example parameter routing.

  Args:
    plan: a supported plan from :func:`plan_opwise` for arguments shaped like these.
    parts: tuple of parameter pytrees (``len(scales)`` of them).
    x: the inputs (rows along the leading axis).
    scales: tuple of ``[B]`` arrays: example ``b``'s contribution to the gradient of ``parts[k]`` is weighted by
      ``scales[k][b]`` (a select: exactly zero where the scale is ``<= 0``); the cotangent of ``x`` is unscaled.

  Returns:
    ``fn(parts, x)``.
  """
  if not plan.supported:
    raise ValueError(f"opwise_call: the plan is unsupported ({plan.reason})")
  if len(scales) != plan.num_parts:
    raise ValueError(f"opwise_call: {plan.num_parts} parameter parts but {len(scales)} scales")
  # Other groups' parameters and captured values are held constant, as inside the whole-group custom_vjp.
  consts = [jax.lax.stop_gradient(c) for c in plan.jaxpr.consts]
  outs = _eval(plan.jaxpr.jaxpr, consts, jax.tree.leaves((tuple(parts), x)), plan.routed, tuple(scales))
  return jax.tree.unflatten(plan.out_tree, outs)
