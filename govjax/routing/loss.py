"""Routed loss functions for the train step: ``loss_fn(model, batch, group_mask, rng) -> (loss, aux)``.

Every loss here has the signature :func:`govjax.train.step.make_train_step` expects; ``aux`` holds
``per_example_loss`` ``[B]`` (the unweighted loss of each row), ``contributors`` ``[G]`` (the mask's column sums),
``logits`` (the model's output) and, with ``return_hidden=True``, ``hidden`` (the outputs of groups ``0 .. G - 2``,
for the transformer the residual stream after group 0 and every block).

The model is any :class:`~govjax.routing.protocol.RoutableModel` (the built-in transformer, or your own NNX or
bound Linen model). The loss of one example is the next-token loss of ``batch["tokens"]`` by default, or your own
``example_loss(outputs, batch) -> [B]`` with the model input taken from ``batch[inputs]`` (or ``inputs(batch)``);
it must treat rows independently. The gradient of the returned loss with respect to the parameters is, per mode:

- ``"none"``: no routing, ``sum_b g_b / B`` (the mask is only counted).
- ``"depth"``: the in-model depth gate (:func:`govjax.routing.gate.depth_gate`), loss weighted by the mask's top
  column. Gives the ``"batch"`` aggregate ``sum_b mask[b, g] * g_b / B`` for every row whose non-zero entries form
  a top segment (depth masks, soft or not); in a row with a zero above a non-zero, every group below the highest
  zero gets nothing (never more than the mask allows). Nearly free: the backward pass stops at each row's depth.
- ``"per_group"``: per-group routing (:func:`govjax.routing.gate.per_group_forward`): the ``"batch"``
  aggregate for any mask, non-monotone and soft ones included; each parameter's cotangent is scaled per example
  at the operations where it meets the examples (:mod:`govjax.routing.opwise`), so the backward pass costs about
  what a plain one does.
- ``"exact"``: the per-example reference. Per-example gradients (``vmap`` over microbatches of ``microbatch``
  rows inside a ``lax.scan``) are reduced with the routed aggregation of
  :func:`govjax.routing.transforms.per_example_routed_aggregate` (:func:`~govjax.routing.transforms.
  exact_routed_grads`), *with the normaliser already applied*; the loss is a surrogate whose value is the mean
  loss and whose gradient is that aggregate, so the optimizer chain must not normalise again.
- ``"region"``: routing into the removable region (``TransformerConfig.region_width`` extra MLP units per block).
  ``batch["region"]`` ``[B]`` (1 = the row's work is routed to the region, 0 = not) decides:

  * the region's output is scaled by ``region[b]`` in the forward pass, so rows with ``region == 0`` run the
    base model exactly and give the region parameters no gradient;
  * rows with ``region == 1`` send their gradient only into the region parameters (of the groups their mask row
    allows, e.g. a policy's ``region NAME depth D``); their contribution to every base parameter (embeddings,
    attention, base MLP units, norms, unembedding) is exactly zero, while the input cotangent still flows down
    the residual stream to the lower blocks' region units.

  Consequently the base parameters train exactly as a ``region_width=0`` model trained on the non-region rows
  alone (same normalisation, elementwise optimizer), and :func:`govjax.models.transformer.drop_region` of the
  trained model *is* that model: dropping the region at generation removes everything the region rows taught,
  and nothing else. The normaliser is applied inside the loss, separately for base parameters
  (``N = sum_b mask[b, g] * (1 - region[b])``) and region parameters (``N = sum_b mask[b, g] * region[b]``),
  because the optimizer only sees the mask; global-norm clipping still couples both (it sees all parameters).

``"depth"``, ``"per_group"`` and ``"none"`` produce the ``"batch"`` aggregate; for ``"contributors"`` chain
:func:`govjax.routing.transforms.normalise_by_contributors` before the optimizer (as
:func:`govjax.train.governance.governance_components` does).

A training step with these losses: compute ``(loss, aux), grads`` with ``jax.value_and_grad`` (or
``nnx.value_and_grad``), then ``tx.update(grads, opt_state, params, group_mask=mask)`` with the same mask, where
``tx`` starts with :func:`~govjax.routing.transforms.normalise_by_contributors` for the ``"contributors"``
normaliser in ``"depth"`` / ``"per_group"`` / ``"none"`` mode (``"exact"`` and ``"region"`` normalise inside the
loss).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=7, num_layers=1, width=16, num_heads=2, context=8),
  ...                     rngs=nnx.Rngs(0))
  >>> batch = {"tokens": jnp.ones((2, 8), jnp.int32)}
  >>> mask = jnp.array([[1., 1., 1.], [0., 1., 1.]])
  >>> loss, aux = make_routed_loss("depth")(model, batch, mask, jax.random.PRNGKey(0))
  >>> aux["per_example_loss"].shape, aux["contributors"].tolist()
  ((2,), [1.0, 2.0, 2.0])

  Your own per-example loss and model input:

  >>> mse = lambda out, batch: ((out - batch["y"]) ** 2).mean(axis=(1, 2))
  >>> loss_fn = make_routed_loss("per_group", example_loss=mse, inputs="tokens")
  >>> _, aux = loss_fn(model, {"tokens": batch["tokens"], "y": jnp.zeros((2, 8, 7))}, mask)
  >>> aux["per_example_loss"].shape
  (2,)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from govjax.core.losses import per_example_next_token_loss
from govjax.core.modes import ROUTING_MODES
from govjax.routing.gate import batch_size_of, depth_loss_weights, routed_apply, weighted_per_group_forward
from govjax.routing.groups import is_region_path, leaf_paths
from govjax.routing.masks import check_group_mask
from govjax.routing.protocol import forward, functional_view, routing_spec
from govjax.routing.transforms import NORMALISERS, exact_routed_grads

__all__ = ["ExampleLoss", "LOSS_MODES", "LossFn", "make_routed_loss", "next_token_example_loss", "region_masks",
           "routed_loss"]

LOSS_MODES = ROUTING_MODES  # the config's spelling: core.modes.RoutingMode
LossFn = Callable[..., tuple[jax.Array, dict]]
ExampleLoss = Callable[[Any, dict], jax.Array]
Inputs = str | Callable[[dict], Any]


def next_token_example_loss(logits: jax.Array, batch: dict) -> jax.Array:
  """The default per-example loss: mean next-token cross-entropy of ``batch["tokens"]`` (PAD not scored)."""
  return per_example_next_token_loss(logits, batch["tokens"])[0]


def _model_inputs(batch: dict, inputs: Inputs) -> Any:
  if callable(inputs):
    return inputs(batch)
  if inputs not in batch:
    raise ValueError(f"the batch has no {inputs!r} entry for the model input (keys: {sorted(batch)}); pass "
                     "inputs=KEY or inputs=callable(batch)")
  return batch[inputs]


def _example_losses(example_loss: ExampleLoss, outputs: Any, batch: dict, batch_size: int) -> jax.Array:
  per_example = jnp.asarray(example_loss(outputs, batch))
  if per_example.shape != (batch_size,):
    raise ValueError(f"example_loss must return one loss per example, shape [B] = [{batch_size}], got "
                     f"{per_example.shape}")
  return per_example


def _aux(per_example: jax.Array, group_mask: jax.Array, logits: jax.Array, hidden: Any,
         return_hidden: bool) -> dict:
  aux = {"per_example_loss": per_example, "contributors": group_mask.sum(axis=0), "logits": logits}
  if return_hidden:
    aux["hidden"] = hidden
  return aux


def _split_out(out: Any, return_hidden: bool) -> tuple[jax.Array, Any]:
  return out if return_hidden else (out, None)


def _gated_loss(model, batch, group_mask, *, mode: str, return_hidden: bool, example_loss: ExampleLoss,
                inputs: Inputs, checked: bool, opwise: bool = True):
  """``"none"``, ``"depth"`` and ``"per_group"``: routing in the forward pass, batch-normalised gradient."""
  x = _model_inputs(batch, inputs)
  logits, hidden = _split_out(routed_apply(model, x, group_mask, mode=mode, return_hidden=return_hidden,
                                           checked=checked, opwise=opwise), return_hidden)
  per_example = _example_losses(example_loss, logits, batch, group_mask.shape[0])
  if mode == "depth":
    weights = depth_loss_weights(group_mask)
    # A select, so a NaN / inf loss of a row with weight 0 reaches neither the loss nor the gradient.
    loss = jnp.mean(jnp.where(weights > 0, weights * per_example, 0.0))
  else:
    loss = jnp.mean(per_example)
  return loss, _aux(per_example, group_mask, logits, hidden, return_hidden)


def _column_normalise(weights: jax.Array, normaliser: str) -> jax.Array:
  """Scales mask columns so that a batch-mean loss gives the chosen normaliser (``B / N_g`` for contributors)."""
  if normaliser == "batch":
    return weights
  counts = weights.sum(axis=0)
  scale = jnp.where(counts > 0, weights.shape[0] / jnp.where(counts > 0, counts, 1.0), 0.0)
  return weights * scale[None, :]


def region_masks(group_mask: jax.Array, region: jax.Array, normaliser: str = "batch"
                 ) -> tuple[jax.Array, jax.Array]:
  """Per-example weights of base and region parameters in ``"region"`` mode.

  Args:
    group_mask: ``[B, G]`` routing mask.
    region: ``[B]`` 1 where the row is routed to the region.
    normaliser: ``"batch"`` or ``"contributors"`` (then each column is rescaled by ``B / N`` of its own rows).

  Returns:
    ``(base_mask, region_mask)``, both ``[B, G]``: ``mask * (1 - region)`` and ``mask * region``, normalised.
  """
  if normaliser not in NORMALISERS:
    raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
  mask = jnp.asarray(group_mask, jnp.float32)
  region = jnp.asarray(region, jnp.float32)[:, None]
  return _column_normalise(mask * (1.0 - region), normaliser), _column_normalise(mask * region, normaliser)


def _has_region(model: Any) -> bool:
  config = getattr(model, "config", None)
  if config is not None and hasattr(config, "region_width"):
    return bool(config.region_width)
  return any(is_region_path(p) for p in leaf_paths(functional_view(model, where="routed_loss").params))


def _region_loss(model, batch, group_mask, *, normaliser: str, return_hidden: bool, example_loss: ExampleLoss,
                 inputs: Inputs, checked: bool):
  del checked  # group_mask was checked by routed_loss
  if "region" not in batch:
    raise ValueError("routing mode 'region' needs batch['region'] ([B] float, 1 = routed to the region); the "
                     "batch has keys " + str(sorted(batch)))
  if not _has_region(model):
    raise ValueError("routing mode 'region' needs a model with a removable region (model.region_width > 0, or "
                     "parameters with a 'region' path component)")
  x = _model_inputs(batch, inputs)
  region = jnp.asarray(batch["region"], jnp.float32)
  base_mask, region_mask = region_masks(group_mask, region, normaliser)
  # The weights carry the normaliser (values above 1), so they are not checked as masks; group_mask was.
  out = weighted_per_group_forward(model, x, base_mask, region=region, region_weights=region_mask,
                                   return_hidden=return_hidden)
  logits, hidden = _split_out(out, return_hidden)
  per_example = _example_losses(example_loss, logits, batch, group_mask.shape[0])
  return per_example.mean(), _aux(per_example, group_mask, logits, hidden, return_hidden)


def _exact_loss(model, batch, group_mask, *, normaliser: str, microbatch: int, rules, return_hidden: bool,
                example_loss: ExampleLoss, inputs: Inputs, default_loss: bool, checked: bool):
  num_groups, model_rules = routing_spec(model, where="routed_loss")
  view = functional_view(model, where="routed_loss")
  rules = rules if rules is not None else model_rules
  params = view.params
  fixed = jax.lax.stop_gradient(params)
  others = jax.lax.stop_gradient(view.others)

  def per_example_loss(p, example):
    out, hidden = forward(view.build(p, others), _model_inputs(example, inputs), num_groups)
    per_example = example_loss(out, example)
    aux = {"logits": out}
    if return_hidden:
      aux["hidden"] = hidden
    return per_example, aux

  # The default loss needs only the tokens; a custom one gets the whole batch (every leaf with leading axis B).
  examples = {"tokens": batch["tokens"]} if default_loss else batch
  grads, (per_example, extra) = exact_routed_grads(
      per_example_loss, fixed, examples, group_mask, rules, microbatch=microbatch, normaliser=normaliser,
      has_aux=True, checked=checked)
  grads = jax.lax.stop_gradient(grads)
  # Surrogate: value = mean loss, gradient wrt params = the exact routed aggregate.
  delta = jax.tree.map(lambda p, f: p - f, params, fixed)
  linear = sum(jnp.vdot(d, g) for d, g in zip(jax.tree.leaves(delta), jax.tree.leaves(grads), strict=True))
  loss = jax.lax.stop_gradient(per_example.mean()) + linear
  return loss, _aux(per_example, group_mask, extra["logits"], extra.get("hidden"), return_hidden)


def routed_loss(
    model: Any,
    batch: dict,
    group_mask: jax.Array,
    rng: jax.Array | None = None,
    *,
    mode: str = "depth",
    normaliser: str = "batch",
    microbatch: int = 8,
    rules=None,
    return_hidden: bool = False,
    example_loss: ExampleLoss | None = None,
    inputs: Inputs = "tokens",
    checked: bool = False,
    opwise: bool = True,
) -> tuple[jax.Array, dict]:
  """The routed loss of a batch (see the module docstring for each mode's gradient).

  Args:
    model: a :class:`~govjax.routing.protocol.RoutableModel` (e.g. the built-in transformer, merged inside the
      step, or a Linen module bound to the parameters being differentiated).
    batch: dict of arrays with leading axis ``B``: the model input (``batch[inputs]``), whatever
      ``example_loss`` reads, and ``region`` ``[B]`` for ``mode="region"``.
    group_mask: ``[B, G]`` float routing mask, ``G = model.num_groups``.
    rng: unused (the losses are deterministic); kept for the train-step signature.
    mode: one of :data:`LOSS_MODES`.
    normaliser: ``"batch"`` or ``"contributors"``; only ``"exact"`` and ``"region"`` apply it (the other modes
      always give the batch aggregate; normalise in the optimizer).
    microbatch: rows per ``vmap`` chunk in ``"exact"`` mode.
    rules: group rules for ``"exact"`` (default: the model's).
    return_hidden: put the outputs of groups ``0 .. G - 2`` into ``aux["hidden"]``.
    example_loss: ``example_loss(outputs, batch) -> [B]``; default :func:`next_token_example_loss`.
    inputs: the batch key of the model input, or ``inputs(batch) -> x``.
    checked: check traced mask values with ``checkify`` (see :mod:`govjax.routing.masks`).
    opwise: ``"per_group"``: per-operation routing where provably exact (False: the whole-group VJP; see
      :func:`govjax.routing.gate.routed_apply`).

  Returns:
    ``(loss, aux)``.
  """
  del rng
  if mode not in LOSS_MODES:
    raise ValueError(f"routing mode must be one of {LOSS_MODES}, got {mode!r}")
  if normaliser not in NORMALISERS:
    raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
  default_loss = example_loss is None
  example_loss = next_token_example_loss if default_loss else example_loss
  num_groups, _ = routing_spec(model, where="routed_loss")
  batch_size = batch_size_of(_model_inputs(batch, inputs), where="routed_loss")
  group_mask = check_group_mask(group_mask, num_groups, batch_size=batch_size, where="routed_loss",
                                checked=checked).astype(jnp.float32)
  common = {"return_hidden": return_hidden, "example_loss": example_loss, "inputs": inputs, "checked": checked}
  if mode == "exact":
    return _exact_loss(model, batch, group_mask, normaliser=normaliser, microbatch=microbatch, rules=rules,
                       default_loss=default_loss, **common)
  if mode == "region":
    return _region_loss(model, batch, group_mask, normaliser=normaliser, **common)
  if normaliser != "batch":
    raise ValueError(f"mode {mode!r} gives the batch-normalised gradient; apply normaliser={normaliser!r} in the "
                     "optimizer (govjax.routing.transforms.normalise_by_contributors)")
  return _gated_loss(model, batch, group_mask, mode=mode, opwise=opwise, **common)


def make_routed_loss(mode: str, *, normaliser: str = "batch", microbatch: int = 8, rules=None,
                     example_loss: ExampleLoss | None = None, inputs: Inputs = "tokens",
                     checked: bool = False, opwise: bool = True) -> LossFn:
  """A train-step loss ``loss_fn(model, batch, group_mask, rng=None, *, return_hidden=False)`` for ``mode``.

  Args:
    mode: one of :data:`LOSS_MODES`.
    normaliser: for ``"exact"``/``"region"`` (see :func:`routed_loss`).
    microbatch: rows per chunk in ``"exact"`` mode.
    rules: group rules for ``"exact"``.
    example_loss: your per-example loss ``example_loss(outputs, batch) -> [B]`` (default: next-token loss).
    inputs: the batch key of the model input, or ``inputs(batch) -> x`` (default ``"tokens"``).
    checked: check traced mask values with ``checkify``.
    opwise: per-operation ``"per_group"`` routing (False: the whole-group VJP).

  Returns:
    The loss function.
  """
  if mode not in LOSS_MODES:
    raise ValueError(f"routing mode must be one of {LOSS_MODES}, got {mode!r}")
  if normaliser not in NORMALISERS:
    raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
  if mode not in ("exact", "region") and normaliser != "batch":
    raise ValueError(f"mode {mode!r} gives the batch-normalised gradient; apply normaliser={normaliser!r} in the "
                     "optimizer (govjax.routing.transforms.normalise_by_contributors)")
  if microbatch < 1:
    raise ValueError(f"microbatch must be >= 1, got {microbatch}")
  if example_loss is not None and not callable(example_loss):
    raise TypeError(f"example_loss must be callable(outputs, batch) -> [B], got {type(example_loss).__name__}")
  fn = functools.partial(routed_loss, mode=mode, normaliser=normaliser, microbatch=microbatch, rules=rules,
                         example_loss=example_loss, inputs=inputs, checked=checked, opwise=opwise)
  functools.update_wrapper(fn, routed_loss)
  return fn
