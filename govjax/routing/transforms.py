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

from govjax.routing.groups import check_group_ids, group_leaves, resolve_group_ids

NORMALISERS = ("batch", "contributors")


class RoutedAggregateState(NamedTuple):
  """State of :func:`per_example_routed_aggregate` (stateless)."""


class NormaliseByContributorsState(NamedTuple):
  """State of :func:`normalise_by_contributors` (stateless)."""


class FreezeGroupsState(NamedTuple):
  """State of :func:`freeze_groups_without_contributors`: the wrapped optimizer's state."""

  inner_state: Any


def _check_mask(group_mask: jax.Array | None, group_ids: Any, name: str) -> jax.Array:
  if group_mask is None:
    raise ValueError(f"{name} needs the extra argument group_mask=[B, G] (e.g. tx.update(grads, state, params, "
                     "group_mask=mask))")
  group_mask = jnp.asarray(group_mask)
  if group_mask.ndim != 2:
    raise ValueError(f"{name}: group_mask must be [B, G], got shape {group_mask.shape}")
  check_group_ids(group_ids, group_mask.shape[1], where=f"{name}: group_mask")
  return group_mask


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
  """``sum_b group_mask[b, group(p)] * g_b[p]`` over the leading (example) axis of ``per_example_grads``."""

  def weigh(g, group):
    weights = group_mask[:, group].astype(g.dtype)
    return jnp.tensordot(weights, g, axes=1)

  return _map_with_groups(weigh, per_example_grads, group_ids)


def scale_groups(tree: Any, scale: jax.Array, group_ids: Any) -> Any:
  """Multiplies every leaf of group ``g`` by ``scale[g]``."""
  return _map_with_groups(lambda u, g: u * scale[g].astype(u.dtype), tree, group_ids)


def per_example_routed_aggregate(group_ids: Any, *, normaliser: str = "batch") -> optax.GradientTransformationExtraArgs:
  """Exact routed aggregation of per-example gradients.

  Args:
    group_ids: pytree of int groups matching the parameters (from :func:`~govjax.routing.groups.depth_groups`),
      or group rules (resolved against the gradient tree).
    normaliser: ``"batch"`` or ``"contributors"`` (see the module docstring).

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

  def init_fn(params):
    del params
    return RoutedAggregateState()

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    del params, extra_args
    ids = resolve_group_ids(group_ids, updates)
    mask = _check_mask(group_mask, ids, "per_example_routed_aggregate")
    for leaf in jax.tree.leaves(updates):
      if leaf.ndim == 0 or leaf.shape[0] != mask.shape[0]:
        raise ValueError(f"per_example_routed_aggregate expects per-example gradients with leading axis "
                         f"B={mask.shape[0]} (the mask's batch), got a leaf of shape {leaf.shape}")
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
  group_ids = resolve_group_ids(group_ids, params)
  mask = _check_mask(group_mask, group_ids, "exact_routed_grads")
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


def normalise_by_contributors(group_ids: Any) -> optax.GradientTransformationExtraArgs:
  """Turns a batch-normalised routed gradient into a contributor-normalised one.

  The efficient routing paths produce ``sum_b mask[b, g] * g_b / B`` (the gradient of the batch-mean routed
  loss). This rescales group ``g`` by ``B / N_g`` with ``N_g = sum_b mask[b, g]`` (0 where ``N_g = 0``), giving the
  ``"contributors"`` aggregate. Chain it before clipping and the optimizer. To also keep groups without
  contributors from moving (moments, weight decay), wrap the optimizer in
  :func:`freeze_groups_without_contributors`.

  Args:
    group_ids: pytree of int groups matching the gradients.

  Returns:
    A transform with ``update(grads, state, params=None, *, group_mask)``.
  """

  def init_fn(params):
    del params
    return NormaliseByContributorsState()

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    del params, extra_args
    ids = resolve_group_ids(group_ids, updates)
    mask = _check_mask(group_mask, ids, "normalise_by_contributors")
    scale = group_normalisers(mask, "contributors") * mask.shape[0]
    return scale_groups(updates, scale, ids), state

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
    inner: optax.GradientTransformation, group_ids: Any
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` so that groups with no contributor in a step are frozen for that step.

  For a group ``g`` with ``sum_b group_mask[b, g] == 0``: the update is exactly zero (no weight decay either) and
  every inner-state subtree shaped like the parameters (e.g. AdamW's ``mu`` and ``nu``) keeps its previous values
  bit for bit. Scalars of the inner state (e.g. Adam's step count, shared by all parameters) still advance.

  Args:
    inner: the optimizer to wrap (e.g. ``optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))``); it
      receives the extra arguments too.
    group_ids: pytree of int groups matching the parameters.

  Returns:
    A transform with ``update(grads, state, params=None, *, group_mask, **extra)``.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return FreezeGroupsState(inner.init(params))

  def update_fn(updates, state, params=None, *, group_mask=None, **extra_args):
    ids = resolve_group_ids(group_ids, updates)
    mask = _check_mask(group_mask, ids, "freeze_groups_without_contributors")
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
) -> optax.GradientTransformationExtraArgs:
  """The optimizer for the efficient routing paths: normalise, then (optionally frozen) ``inner``.

  Args:
    inner: e.g. ``optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=0.01))``.
    group_ids: pytree of int groups matching the parameters.
    normaliser: ``"contributors"`` (adds :func:`normalise_by_contributors`) or ``"batch"`` (gradient unchanged).
    freeze_empty: wrap ``inner`` in :func:`freeze_groups_without_contributors`.

  Returns:
    A chain called as ``tx.update(grads, state, params, group_mask=mask)``.
  """
  _check_normaliser(normaliser)
  parts = [normalise_by_contributors(group_ids)] if normaliser == "contributors" else []
  parts.append(freeze_groups_without_contributors(inner, group_ids) if freeze_empty else inner)
  return optax.chain(*parts)
