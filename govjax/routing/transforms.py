"""optax transforms for depth-selective gradient routing.

A routing ``group_mask`` is a float ``[B, G]`` array: ``group_mask[b, g]`` is the weight (1 = full, 0 = none,
in between = scaled) with which example ``b``'s gradient may reach the parameters of group ``g`` (see
:mod:`govjax.routing.groups`). Given per-example gradients ``g_b``, the *routed aggregate* is

    agg[p] = sum_b group_mask[b, group(p)] * g_b[p] / N_group(p)

with ``N = B`` (``normaliser="batch"``) or ``N_g = sum_b group_mask[b, g]``, the number of (possibly fractional)
contributors of the group (``normaliser="contributors"``; a group with none gets 0). Dividing by the batch size
lets masked examples lower the lower groups' effective learning rate; dividing by contributors does not.

Transforms here (all ``optax.GradientTransformationExtraArgs``; the mask is the keyword-only extra argument
``group_mask`` so they compose with any ``optax.chain``, which forwards extras only to transforms that take them):

- :func:`per_example_routed_aggregate`: the exact reference, over per-example gradients (leading batch axis, as
  ``optax.contrib.differentially_private_aggregate``); must come first in a chain.
- :func:`normalise_by_contributors`: for the efficient path, whose gradient already equals the ``"batch"``
  aggregate (see :mod:`govjax.routing.loss`); rescales group ``g`` by ``B / N_g``.
- :func:`freeze_groups_without_contributors`: wraps an inner optimizer so that groups with no contributor in a
  step get no update and keep their optimizer state (moments) bit-identical; a zero gradient alone is not a frozen
  layer, because AdamW's momentum and weight decay still move it.

:func:`exact_routed_grads` computes the reference aggregate straight from a per-example loss, in microbatches
(``vmap`` over a chunk inside ``lax.scan``) so the ``[B, params]`` tensor of per-example gradients never exists.

Masks are checked strictly (:func:`govjax.routing.masks.check_group_mask`): ``[B, G]`` with ``G`` the number of
groups the rules (or group ids) define, or ``num_groups=`` when given; values finite and in ``[0, 1]`` (concrete
masks raise; traced ones raise with ``checked=True`` under ``checkify``, else they are clamped). A barred example
(mask 0) contributes exactly nothing to the group, even when its gradient is NaN or inf: the weights are applied
with a select, not a multiply. Where the gradient has no batch axis (:func:`normalise_by_contributors`,
:func:`freeze_groups_without_contributors`) ``B`` cannot be checked: pass the loss's own mask.

Wiring into training loops (every transform takes the mask as ``update(..., group_mask=mask)``):

- ``nnx.Optimizer(model, tx, wrt=nnx.Param)``: ``optimizer.update(model, grads, group_mask=mask)``.
- Flax ``TrainState.apply_gradients(grads=...)`` cannot pass extra arguments; call the optimizer yourself::

    updates, opt_state = state.tx.update(grads, state.opt_state, state.params, group_mask=mask)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)

- ``optax.inject_hyperparams(...)`` forwards ``group_mask`` (wrap the inner optimizer or a whole routed chain).
- Gradient accumulation: :func:`routed_multi_steps` (not ``optax.MultiSteps`` directly, which would hand the inner
  optimizer only the last micro-batch's mask, or with ``.gradient_transformation()`` in a chain no mask at all).

Example:
  >>> import jax.numpy as jnp, optax
  >>> grads = {"low": jnp.ones(2), "high": jnp.ones(2)}
  >>> ids = {"low": 0, "high": 1}
  >>> mask = jnp.array([[0., 1.], [1., 1.], [0., 1.], [0., 1.]])
  >>> tx = optax.chain(normalise_by_contributors(ids), optax.sgd(1.0))
  >>> updates, _ = tx.update(grads, tx.init(grads), group_mask=mask)
  >>> updates["low"].tolist(), updates["high"].tolist()
  ([-4.0, -4.0], [-1.0, -1.0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from govjax.core.modes import NORMALISERS
from govjax.routing.groups import check_group_ids, group_count, group_leaves, resolve_group_ids
from govjax.routing.masks import check_group_mask

__all__ = [
    "ClipByGroupNormState", "FreezeGroupsState", "NORMALISERS", "NormaliseByContributorsState",
    "RoutedAggregateState", "RoutedMultiStepsState", "clip_by_group_norm", "contributor_counts",
    "exact_routed_grads", "freeze_groups_without_contributors",
    "group_normalisers", "normalise_by_contributors", "per_example_routed_aggregate", "routed_multi_steps",
    "routed_optimizer", "routed_sum", "scale_groups",
]

MISSING_MASK_HINT = (
    " (e.g. tx.update(grads, state, params, group_mask=mask), or nnx.Optimizer.update(model, grads, "
    "group_mask=mask)). flax.training.train_state.TrainState.apply_gradients cannot pass it: call "
    "updates, opt_state = state.tx.update(grads, state.opt_state, state.params, group_mask=mask) and "
    "state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state). "
    "A wrapper that drops extra arguments (optax.MultiSteps(...).gradient_transformation() inside optax.chain) "
    "cannot pass it either: use govjax.routing.routed_multi_steps for gradient accumulation.")


class RoutedAggregateState(NamedTuple):
  """State of :func:`per_example_routed_aggregate` (stateless)."""


class NormaliseByContributorsState(NamedTuple):
  """State of :func:`normalise_by_contributors` (stateless)."""


class FreezeGroupsState(NamedTuple):
  """State of :func:`freeze_groups_without_contributors`: the wrapped optimizer's state."""

  inner_state: Any


class RoutedMultiStepsState(NamedTuple):
  """State of :func:`routed_multi_steps`.

  Attributes:
    inner_state: the ``optax.MultiSteps`` state (accumulated gradient, step counters, the inner state).
    counts: float32 ``[G]`` contributors of the micro-batches seen in the current accumulation cycle.
    rows: float32 scalar, the rows of those micro-batches.
  """

  inner_state: Any
  counts: jax.Array
  rows: jax.Array


def _check_mask(group_mask: jax.Array | None, group_ids: Any, name: str, num_groups: int, *,
                checked: bool = False, batch_size: int | None = None) -> jax.Array:
  if group_mask is None:
    raise ValueError(f"{name} needs the extra argument group_mask=[B, G]{MISSING_MASK_HINT}")
  mask = check_group_mask(group_mask, num_groups, batch_size=batch_size, where=name, checked=checked)
  check_group_ids(group_ids, num_groups, where=f"{name}: group_mask")
  return mask


def _check_normaliser(normaliser: str) -> None:
  if normaliser not in NORMALISERS:
    raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")


def contributor_counts(group_mask: jax.Array) -> jax.Array:
  """``[G]`` number of contributing examples per group (sum of mask values, fractional for soft masks)."""
  return jnp.asarray(group_mask, jnp.float32).sum(axis=0)


def group_normalisers(group_mask: jax.Array, normaliser: str) -> jax.Array:
  """``[G]`` factor ``1 / N_g`` applied to each group's summed gradient (0 for a group without contributors).

  Args:
    group_mask: ``[B, G]``.
    normaliser: ``"batch"`` (``N_g = B``) or ``"contributors"`` (``N_g = sum_b mask[b, g]``).
  """
  _check_normaliser(normaliser)
  batch, num_groups = group_mask.shape
  if normaliser == "batch":
    return jnp.full((num_groups,), 1.0 / batch, jnp.float32)
  counts = contributor_counts(group_mask)
  return jnp.where(counts > 0, 1.0 / jnp.where(counts > 0, counts, 1.0), 0.0)


def _map_with_groups(fn: Callable[[jax.Array, int], jax.Array], tree: Any, group_ids: Any) -> Any:
  """``fn(leaf, group)`` over the leaves of ``tree`` (``group_ids`` must list one group per leaf, same order)."""
  leaves, treedef = jax.tree.flatten(tree)
  ids = group_leaves(group_ids)
  if len(ids) != len(leaves):
    raise ValueError(f"group_ids has {len(ids)} leaves but the gradient tree has {len(leaves)}; build group_ids "
                     "with depth_groups(params, rules) from the same parameter tree")
  return jax.tree.unflatten(treedef, [fn(leaf, g) for leaf, g in zip(leaves, ids, strict=True)])


def routed_sum(per_example_grads: Any, group_mask: jax.Array, group_ids: Any) -> Any:
  """``sum_b group_mask[b, group(p)] * g_b[p]`` over the leading (example) axis of ``per_example_grads``.

  Rows with weight 0 are selected away before the sum, so their NaN / inf gradients do not reach the group.
  """

  def weigh(g, group):
    weights = group_mask[:, group].astype(g.dtype)
    allowed = (weights > 0).reshape(weights.shape + (1,) * (g.ndim - 1))
    return jnp.tensordot(weights, jnp.where(allowed, g, jnp.zeros_like(g)), axes=1)

  return _map_with_groups(weigh, per_example_grads, group_ids)


def scale_groups(tree: Any, scale: jax.Array, group_ids: Any) -> Any:
  """Multiplies every leaf of group ``g`` by ``scale[g]``."""
  return _map_with_groups(lambda u, g: u * scale[g].astype(u.dtype), tree, group_ids)


def per_example_routed_aggregate(group_ids: Any, *, normaliser: str = "batch", num_groups: int | None = None,
                                 checked: bool = False) -> optax.GradientTransformationExtraArgs:
  """Exact routed aggregation of per-example gradients.

  Args:
    group_ids: pytree of int groups matching the parameters (from :func:`~govjax.routing.groups.depth_groups`),
      or group rules (resolved against the gradient tree).
    normaliser: ``"batch"`` or ``"contributors"`` (see the module docstring).
    num_groups: ``G`` when it exceeds the largest group named (groups without parameters); default from
      ``group_ids``.
    checked: check traced mask values with ``checkify``.

  Returns:
    A transform whose ``update(per_example_grads, state, params=None, *, group_mask)`` takes gradients with a
    leading batch axis ``B`` and returns ``sum_b mask[b, group(p)] * g_b[p] / N_group(p)`` (no batch axis). Exact
    for arbitrary, non-monotone and soft masks. Put it first in a chain.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = per_example_routed_aggregate({"w": 0, "b": 1}, normaliser="contributors")
    >>> g = {"w": jnp.array([[1.], [3.]]), "b": jnp.array([[1.], [3.]])}
    >>> out, _ = tx.update(g, tx.init(None), group_mask=jnp.array([[1., 0.], [1., 1.]]))
    >>> out["w"].tolist(), out["b"].tolist()
    ([2.0], [3.0])
  """
  _check_normaliser(normaliser)
  count = group_count(group_ids, num_groups)

  def init_fn(params):
    del params
    return RoutedAggregateState()

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    del params, extra_args
    ids = resolve_group_ids(group_ids, updates)
    leaves = jax.tree.leaves(updates)
    rows = leaves[0].shape[0] if leaves and leaves[0].ndim else None
    for leaf in leaves:
      if leaf.ndim == 0 or leaf.shape[0] != rows:
        raise ValueError(f"per_example_routed_aggregate expects per-example gradients with one leading axis B, "
                         f"got leaves of shapes {leaves[0].shape} and {leaf.shape}")
    mask = _check_mask(group_mask, ids, "per_example_routed_aggregate", count, checked=checked, batch_size=rows)
    summed = routed_sum(updates, mask, ids)
    return scale_groups(summed, group_normalisers(mask, normaliser), ids), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def exact_routed_grads(
    loss_fn: Callable[..., Any],
    params: Any,
    batch: Any,
    group_mask: jax.Array,
    group_ids: Any,
    *,
    microbatch: int = 8,
    normaliser: str = "batch",
    has_aux: bool = False,
    num_groups: int | None = None,
    checked: bool = False,
) -> tuple[Any, Any]:
  """Reference routed gradient from per-example gradients, computed in microbatches.

  Per-example gradients of ``microbatch`` examples at a time are computed with ``vmap`` and immediately reduced
  with their mask rows; a ``lax.scan`` over chunks accumulates the sum, so at most ``[microbatch, params]``
  per-example gradients exist at once. The batch is padded to a multiple of ``microbatch`` with mask-0 rows.

  Args:
    loss_fn: ``loss_fn(params, batch) -> losses [b]`` (or ``(losses, aux)`` with ``has_aux``; ``aux`` leaves have
      a leading ``b`` axis); it is called on single-example batches (``b = 1``).
    params: the parameters to differentiate.
    batch: pytree of arrays with leading axis ``B``.
    group_mask: ``[B, G]`` routing mask.
    group_ids: groups of ``params`` (same structure).
    microbatch: examples per chunk.
    normaliser: ``"batch"`` or ``"contributors"``.
    has_aux: whether ``loss_fn`` returns ``(losses, aux)``.
    num_groups: ``G`` when it exceeds the largest group named; default from ``group_ids``.
    checked: check traced mask values with ``checkify``.

  Returns:
    ``(grads, losses)`` or, with ``has_aux``, ``(grads, (losses, aux))``; ``losses`` is ``[B]``, ``aux`` stacked
    over the batch.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = lambda p, x: (p["w"] * x).sum(axis=1)
    >>> g, losses = exact_routed_grads(loss, {"w": jnp.ones(1)}, jnp.array([[1.], [2.], [4.]]),
    ...                                jnp.array([[1.], [0.], [1.]]), {"w": 0}, microbatch=2)
    >>> [round(v, 5) for v in g["w"].tolist()], losses.tolist()
    ([1.66667], [1.0, 2.0, 4.0])
  """
  _check_normaliser(normaliser)
  count = group_count(group_ids, num_groups)
  group_ids = resolve_group_ids(group_ids, params)
  mask = _check_mask(group_mask, group_ids, "exact_routed_grads", count, checked=checked)
  batch_size = mask.shape[0]
  for leaf in jax.tree.leaves(batch):
    if leaf.shape[:1] != (batch_size,):
      raise ValueError(f"exact_routed_grads: batch leaf of shape {leaf.shape} does not have the mask's leading "
                       f"axis B={batch_size}")
  if microbatch < 1:
    raise ValueError(f"microbatch must be >= 1, got {microbatch}")
  chunk = min(microbatch, batch_size)
  num_chunks = -(-batch_size // chunk)
  padded = num_chunks * chunk

  def pad(x):
    if padded == batch_size:
      return x
    return jnp.concatenate([x, jnp.repeat(x[:1], padded - batch_size, axis=0)], axis=0)

  batch_p = jax.tree.map(pad, batch)
  mask_p = jnp.concatenate([mask, jnp.zeros((padded - batch_size, mask.shape[1]), mask.dtype)], axis=0)

  def single(p, example):
    out = loss_fn(p, jax.tree.map(lambda x: x[None], example))
    losses, aux = out if has_aux else (out, None)
    return losses[0], jax.tree.map(lambda a: a[0], aux)

  per_example = jax.vmap(jax.value_and_grad(single, has_aux=True), in_axes=(None, 0))

  def chunk_sum(examples, chunk_mask):
    (losses, aux), grads = per_example(params, examples)
    return routed_sum(grads, chunk_mask, group_ids), (losses, aux)

  if num_chunks == 1:
    total, (losses, aux) = chunk_sum(batch_p, mask_p)
  else:
    def body(acc, xs):
      summed, out = chunk_sum(*xs)
      return jax.tree.map(jnp.add, acc, summed), out

    split = lambda x: x.reshape((num_chunks, chunk) + x.shape[1:])
    zeros = jax.tree.map(jnp.zeros_like, params)
    total, (losses, aux) = jax.lax.scan(body, zeros, (jax.tree.map(split, batch_p), split(mask_p)))
    merge = lambda x: x.reshape((padded,) + x.shape[2:])
    losses, aux = merge(losses), jax.tree.map(merge, aux)
  grads = scale_groups(total, group_normalisers(mask, normaliser), group_ids)
  losses = losses[:batch_size]
  if has_aux:
    return grads, (losses, jax.tree.map(lambda a: a[:batch_size], aux))
  return grads, losses


def normalise_by_contributors(group_ids: Any, *, num_groups: int | None = None,
                              checked: bool = False) -> optax.GradientTransformationExtraArgs:
  """Turns a batch-normalised routed gradient into a contributor-normalised one.

  The efficient routing paths produce ``sum_b mask[b, g] * g_b / B`` (the gradient of the batch-mean routed
  loss). This rescales group ``g`` by ``B / N_g`` with ``N_g = sum_b mask[b, g]`` (0 where ``N_g = 0``), giving the
  ``"contributors"`` aggregate. Chain it before clipping and the optimizer. To also keep groups without
  contributors from moving (moments, weight decay), wrap the optimizer in
  :func:`freeze_groups_without_contributors`.

  Args:
    group_ids: pytree of int groups matching the gradients, or group rules.
    num_groups: ``G`` when it exceeds the largest group named; default from ``group_ids``.
    checked: check traced mask values with ``checkify``.

  Returns:
    A transform with ``update(grads, state, params=None, *, group_mask)``; a group without contributors gets an
    exactly-zero gradient (a select, even if its incoming gradient is not finite).
  """
  count = group_count(group_ids, num_groups)

  def init_fn(params):
    del params
    return NormaliseByContributorsState()

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    del params, extra_args
    ids = resolve_group_ids(group_ids, updates)
    mask = _check_mask(group_mask, ids, "normalise_by_contributors", count, checked=checked)
    active = contributor_counts(mask) > 0
    scale = group_normalisers(mask, "contributors") * mask.shape[0]
    scaled = _map_with_groups(
        lambda u, g: jnp.where(active[g], u * scale[g].astype(u.dtype), jnp.zeros_like(u)), updates, ids)
    return scaled, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _select_param_shaped(keep_new: Callable[[int], jax.Array], new: Any, old: Any, like: Any, group_ids: Any):
  """In every subtree of ``new``/``old`` shaped like ``like`` (e.g. Adam's mu/nu), picks new or old per group."""
  like_def = jax.tree.structure(like)
  like_shapes = [jnp.shape(x) for x in jax.tree.leaves(like)]

  def is_param_shaped(node):
    if jax.tree.structure(node) != like_def:
      return False
    return [jnp.shape(x) for x in jax.tree.leaves(node)] == like_shapes

  def select(n, o):
    if not is_param_shaped(n):
      return n
    ids = group_leaves(group_ids)
    n_leaves, treedef = jax.tree.flatten(n)
    picked = [jnp.where(keep_new(g), a, b) for a, b, g in zip(n_leaves, jax.tree.leaves(o), ids, strict=True)]
    return jax.tree.unflatten(treedef, picked)

  return jax.tree.map(select, new, old, is_leaf=is_param_shaped)


def freeze_groups_without_contributors(
    inner: optax.GradientTransformation, group_ids: Any, *, num_groups: int | None = None, checked: bool = False
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` so that groups with no contributor in a step are frozen for that step.

  For a group ``g`` with ``sum_b group_mask[b, g] == 0``: the update is exactly zero (no weight decay either) and
  every inner-state subtree shaped like the parameters (e.g. AdamW's ``mu`` and ``nu``) keeps its previous values
  bit for bit. Scalars of the inner state (e.g. Adam's step count, shared by all parameters) still advance.

  Args:
    inner: the optimizer to wrap (e.g. ``optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))``); it
      receives the extra arguments too.
    group_ids: pytree of int groups matching the parameters, or group rules.
    num_groups: ``G`` when it exceeds the largest group named; default from ``group_ids``.
    checked: check traced mask values with ``checkify``.

  Returns:
    A transform with ``update(grads, state, params=None, *, group_mask, **extra)``.
  """
  inner = optax.with_extra_args_support(inner)
  count = group_count(group_ids, num_groups)

  def init_fn(params):
    return FreezeGroupsState(inner.init(params))

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    ids = resolve_group_ids(group_ids, updates)
    mask = _check_mask(group_mask, ids, "freeze_groups_without_contributors", count, checked=checked)
    active = contributor_counts(mask) > 0
    new_updates, new_inner = inner.update(updates, state.inner_state, params, group_mask=mask, **extra_args)
    new_updates = _map_with_groups(lambda u, g: jnp.where(active[g], u, jnp.zeros_like(u)), new_updates, ids)
    new_inner = _select_param_shaped(lambda g: active[g], new_inner, state.inner_state, updates, ids)
    return new_updates, FreezeGroupsState(new_inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def routed_optimizer(
    inner: optax.GradientTransformation,
    group_ids: Any,
    *,
    normaliser: str = "contributors",
    freeze_empty: bool = False,
    num_groups: int | None = None,
    checked: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """The optimizer for the efficient routing paths: normalise, then (optionally frozen) ``inner``.

  Args:
    inner: e.g. ``optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=0.01))``.
    group_ids: pytree of int groups matching the parameters, or group rules.
    normaliser: ``"contributors"`` (adds :func:`normalise_by_contributors`) or ``"batch"`` (gradient unchanged).
    freeze_empty: wrap ``inner`` in :func:`freeze_groups_without_contributors`.
    num_groups: ``G`` when it exceeds the largest group named; default from ``group_ids``.
    checked: check traced mask values with ``checkify``.

  Returns:
    A chain called as ``tx.update(grads, state, params, group_mask=mask)``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = routed_optimizer(optax.sgd(1.0), {"low": 0, "high": 1}, freeze_empty=True)
    >>> grads = {"low": jnp.ones(2), "high": jnp.ones(2)}
    >>> updates, _ = tx.update(grads, tx.init(grads), grads, group_mask=jnp.array([[0., 1.], [0., .5]]))
    >>> updates["low"].tolist(), updates["high"].tolist()
    ([0.0, 0.0], [-1.3333333730697632, -1.3333333730697632])
  """
  _check_normaliser(normaliser)
  options = {"num_groups": num_groups, "checked": checked}
  parts = [normalise_by_contributors(group_ids, **options)] if normaliser == "contributors" else []
  parts.append(freeze_groups_without_contributors(inner, group_ids, **options) if freeze_empty else inner)
  if normaliser == "batch" and not freeze_empty:
    parts.insert(0, _mask_check(group_ids, **options))
  return optax.chain(*parts)


def _mask_check(group_ids: Any, *, num_groups: int | None, checked: bool) -> optax.GradientTransformationExtraArgs:
  """Checks the mask (and that one is passed) in a routed chain whose other parts would ignore it."""
  count = group_count(group_ids, num_groups)

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    del params, extra_args
    _check_mask(group_mask, resolve_group_ids(group_ids, updates), "routed_optimizer", count, checked=checked)
    return updates, state

  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def routed_multi_steps(inner: optax.GradientTransformation, group_ids: Any, every_k_schedule: int, *,
                       num_groups: int | None = None, checked: bool = False) -> optax.GradientTransformationExtraArgs:
  """Gradient accumulation over ``every_k_schedule`` micro-batches for a routed optimizer.

  ``optax.MultiSteps`` averages the micro-batch gradients and calls the inner optimizer with the extra arguments
  of the *current* call, so a routed inner optimizer would count contributors of the last micro-batch only. This
  wrapper accumulates the contributor counts of the whole cycle and hands the inner optimizer, as ``group_mask``,
  the ``[B, G]`` mask whose every row is the cycle's mean mask row: its column sums are the cycle's contributors
  per micro-batch, so :func:`normalise_by_contributors` and :func:`freeze_groups_without_contributors` inside
  act exactly as on one batch of all ``k * B`` rows.

  Order: the micro-step gradient is the batch-normalised routed gradient of its micro-batch (the efficient losses'
  gradient); put the whole routed optimizer (:func:`routed_optimizer`, or normalise -> clip -> AdamW, frozen or
  not) inside; call ``tx.update(grads, state, params, group_mask=micro_batch_mask)`` every micro-step (all
  micro-batches with the same ``B``). Updates are zero until the ``k``-th micro-step.

  Args:
    inner: the routed optimizer applied once per ``k`` micro-steps.
    group_ids: group rules or ids (as for the other transforms).
    every_k_schedule: ``k``, an int >= 1.
    num_groups: ``G`` when it exceeds the largest group named.
    checked: check traced mask values with ``checkify``.

  Returns:
    A transform with ``update(grads, state, params=None, *, group_mask, **extra)``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> ids = {"low": 0, "high": 1}
    >>> tx = routed_multi_steps(routed_optimizer(optax.sgd(1.0), ids), ids, every_k_schedule=2)
    >>> g = {"low": jnp.ones(1), "high": jnp.ones(1)}
    >>> state = tx.init(g)
    >>> u, state = tx.update(g, state, g, group_mask=jnp.array([[1., 1.], [0., 1.]]))
    >>> bool(jnp.all(u["low"] == 0))   # nothing applied before the k-th micro-step
    True
    >>> u, state = tx.update(g, state, g, group_mask=jnp.array([[0., 1.], [0., 1.]]))
    >>> u["low"].tolist(), u["high"].tolist()   # 4 rows, 1 contributor to "low": 4/1 * mean gradient 1
    ([-4.0], [-1.0])
  """
  if isinstance(every_k_schedule, bool) or not isinstance(every_k_schedule, int) or every_k_schedule < 1:
    raise ValueError(f"every_k_schedule must be an int >= 1, got {every_k_schedule!r}")
  count = group_count(group_ids, num_groups)
  multi = optax.MultiSteps(inner, every_k_schedule)

  def init_fn(params):
    return RoutedMultiStepsState(multi.init(params), jnp.zeros((count,), jnp.float32), jnp.zeros((), jnp.float32))

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    mask = _check_mask(group_mask, resolve_group_ids(group_ids, updates), "routed_multi_steps", count,
                       checked=checked)
    counts = state.counts + contributor_counts(mask)
    rows = state.rows + mask.shape[0]
    cycle_mask = jnp.broadcast_to((counts / rows).astype(mask.dtype), mask.shape)
    new_updates, inner_state = multi.update(updates, state.inner_state, params, group_mask=cycle_mask,
                                            **extra_args)
    emitted = inner_state.mini_step == 0
    counts = jnp.where(emitted, jnp.zeros_like(counts), counts)
    rows = jnp.where(emitted, jnp.zeros_like(rows), rows)
    return new_updates, RoutedMultiStepsState(inner_state, counts, rows)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ClipByGroupNormState(NamedTuple):
  """:func:`clip_by_group_norm` keeps no state."""


def _group_norms(tree: Any, group_ids: Any, num_groups: int) -> jax.Array:
  """``[G]`` l2 norm of the leaves of each group (0 for a group without leaves)."""
  ids = group_leaves(resolve_group_ids(group_ids, tree))
  squares = jnp.zeros((num_groups,), jnp.float32)
  for leaf, g in zip(jax.tree.leaves(tree), ids, strict=True):
    squares = squares.at[g].add(jnp.sum(jnp.square(leaf.astype(jnp.float32))))
  return jnp.sqrt(squares)


def clip_by_group_norm(group_ids: Any, max_norm: float, *,
                       num_groups: int | None = None) -> optax.GradientTransformationExtraArgs:
  """Clips each depth group's gradient to l2 norm ``max_norm`` on its own (``optax.clip_by_global_norm`` per group).

  With one global norm, a large gradient in one group (e.g. the output head fitting restricted works that reach
  only the surface) scales down every other group's update in the same step; per group, it scales only its own.
  ``max_norm / sqrt(G)`` per group bounds the global norm by ``max_norm``, so a global clip at ``max_norm`` after
  it never acts (how :func:`govjax.train.governance.routing_components` chains it).

  Args:
    group_ids: pytree of int groups matching the gradients, or group rules.
    max_norm: the largest l2 norm a group's gradient keeps.
    num_groups: ``G`` when it exceeds the largest group named; default from ``group_ids``.

  Returns:
    A stateless transform; extra arguments (``group_mask``, ...) are accepted and ignored.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = clip_by_group_norm({"low": 0, "high": 1}, 1.0)
    >>> out, _ = tx.update({"low": jnp.array([3.0, 4.0]), "high": jnp.array([0.3, 0.4])}, tx.init(None))
    >>> out["low"].tolist(), out["high"].tolist()
    ([0.6000000238418579, 0.800000011920929], [0.30000001192092896, 0.4000000059604645])
  """
  if not max_norm > 0:
    raise ValueError(f"max_norm must be > 0, got {max_norm}")
  count = group_count(group_ids, num_groups)

  def init_fn(params):
    del params
    return ClipByGroupNormState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    ids = resolve_group_ids(group_ids, updates)
    norms = _group_norms(updates, ids, count)
    scale = jnp.where(norms > max_norm, max_norm / jnp.where(norms > 0, norms, 1.0), 1.0)
    return _map_with_groups(lambda u, g: u * scale[g].astype(u.dtype), updates, ids), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
