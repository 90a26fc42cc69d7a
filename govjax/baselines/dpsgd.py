"""DP-SGD baseline: per-example gradients, clipped and noised by optax before AdamW.

The step computes one gradient per batch row (``jax.vmap`` over rows, ``microbatch`` rows at a time), then the
optimizer's first transform, :func:`dp_aggregate`, clips each row's gradient to global norm ``l2_norm_clip``,
sums, adds Gaussian noise of standard deviation ``l2_norm_clip * noise_multiplier`` and divides by the batch size
(``optax.contrib.differentially_private_aggregate``); the usual clip + AdamW of
:func:`govjax.train.step.make_optimizer` follows (post-processing, so the guarantee is unchanged).

The noise key is not kept in the optimizer state: it is ``fold_in(fold_in(state.rng, state.step), NOISE_STREAM)``,
passed as ``key=`` to the optimizer, so a resumed run draws exactly the noise an uninterrupted one would and the
checkpointed state holds no typed PRNG keys.

What is protected: one *window* (one batch row). A work cut into ``m`` windows is protected only at the group
level (``m`` times the per-example bound, roughly), and the loader shuffles per epoch rather than Poisson
sampling, so any epsilon from :func:`privacy_spent` is the textbook per-example figure, an optimistic reading.

Example:
  >>> import jax.numpy as jnp
  >>> from govjax.core.config import TrainConfig, ModelSpec
  >>> from govjax.train.step import create_train_state
  >>> cfg = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=8), num_steps=2)
  >>> tx, schedule = dpsgd_optimizer(cfg, l2_norm_clip=1.0, noise_multiplier=1.1)
  >>> graphdef, state, tx, _ = create_train_state(cfg, vocab_size=10, tx=tx)
  >>> step = make_dpsgd_train_step(graphdef, tx, l2_norm_clip=1.0)
  >>> state, metrics = step(state, {"tokens": jnp.ones((2, 8), jnp.int32)}, jnp.ones((2, 3)))
  >>> int(state.step), float(metrics["dp/clipped_fraction"]) <= 1.0
  (1, True)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax
from flax import nnx

from govjax.core.config import TrainConfig
from govjax.train.step import LossFn, StepPlugin, TrainState, make_optimizer, plain_loss, update_plugins

NOISE_STREAM = 0x44505347  # "DPSG": the noise key is fold_in(step key, NOISE_STREAM)


class DPAggregateState(NamedTuple):
  """:func:`dp_aggregate` keeps no state: its key comes from the train step."""


def dp_aggregate(l2_norm_clip: float, noise_multiplier: float) -> optax.GradientTransformationExtraArgs:
  """Per-example clipping + Gaussian noise + mean, keyed by the caller; must be first in a chain.

  Wraps ``optax.contrib.differentially_private_aggregate`` and replaces its internal key by the ``key`` extra
  argument of each update.

  Args:
    l2_norm_clip: maximum global L2 norm of one example's gradient.
    noise_multiplier: noise standard deviation divided by ``l2_norm_clip``.

  Returns:
    A transform whose ``update(per_example_grads, state, params=None, *, key, **extra_args)`` takes gradients
    with a leading batch axis and returns the privatised mean gradient (no batch axis).
  """
  if not l2_norm_clip > 0:
    raise ValueError(f"dpsgd: l2_norm_clip must be positive, got {l2_norm_clip}")
  if not noise_multiplier >= 0:
    raise ValueError(f"dpsgd: noise_multiplier must be >= 0, got {noise_multiplier}")
  inner = optax.contrib.differentially_private_aggregate(l2_norm_clip, noise_multiplier, jax.random.key(0))

  def init_fn(params):
    del params
    return DPAggregateState()

  def update_fn(updates, state, params=None, *, key: jax.Array | None = None, **extra_args):
    del extra_args
    if key is None:
      raise ValueError("dp_aggregate: update needs key= (the step's noise key); "
                       "train with govjax.baselines.dpsgd.make_dpsgd_train_step")
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.wrap_key_data(key)
    # One flat [B, P] leaf: the same global-norm clipping, and a single noise draw (fast to compile).
    flat = jax.vmap(lambda g: jax.flatten_util.ravel_pytree(g)[0])(updates)
    _, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda g: g[0], updates))
    out, _ = inner.update(flat, optax.contrib.DifferentiallyPrivateAggregateState(rng_key=key))
    return unravel(out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def dpsgd_optimizer(config: TrainConfig, *, l2_norm_clip: float,
                    noise_multiplier: float) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """``chain(dp_aggregate, clip_by_global_norm, adamw)`` with the config's schedule.

  Args:
    config: the training config (learning rate, schedule, weight decay, grad_clip).
    l2_norm_clip: per-example clipping norm.
    noise_multiplier: noise standard deviation / ``l2_norm_clip``.

  Returns:
    ``(tx, schedule)``; use ``tx`` with :func:`make_dpsgd_train_step`.
  """
  return make_optimizer(config, before=(dp_aggregate(l2_norm_clip, noise_multiplier),))


def make_dpsgd_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn = plain_loss,
    *,
    plugins: Sequence[StepPlugin] = (),
    donate: bool = True,
    microbatch: int | None = None,
    l2_norm_clip: float | None = None,
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
  """Jitted DP-SGD step ``(state, batch, group_mask) -> (state, metrics)``; same contract as ``make_train_step``.

  Args:
    graphdef: from ``create_train_state``.
    tx: an optimizer whose first transform is :func:`dp_aggregate` (see :func:`dpsgd_optimizer`); called as
      ``tx.update(per_example_grads, opt_state, params, group_mask=group_mask, key=noise_key)``.
    loss_fn: evaluated on one row at a time (``batch`` leaves and ``group_mask`` with a leading axis of 1), with
      ``return_hidden=True`` when a plugin ``needs_hidden``.
    plugins: step plugins, as in ``make_train_step`` (they see the batch-shaped ``aux``).
    donate: donate the input state's buffers.
    microbatch: rows whose per-example gradients are computed at once (``None``: the whole batch); the last
      chunk is padded with all-zero (PAD) rows whose results are discarded.
    l2_norm_clip: only for the ``dp/clipped_fraction`` metric (rows whose gradient norm exceeds it).

  Returns:
    The jitted step. Metrics: those of ``make_train_step`` (``grad_norm`` is the norm of the mean unclipped
    gradient) plus ``dp/example_grad_norm`` ``[B]`` and, with ``l2_norm_clip``, ``dp/clipped_fraction``.
  """
  if microbatch is not None and int(microbatch) < 1:
    raise ValueError(f"dpsgd: microbatch must be a positive number of rows or None, got {microbatch}")

  loss_kwargs = {"return_hidden": True} if any(p.needs_hidden for p in plugins) else {}

  def step(state: TrainState, batch: dict, group_mask: jax.Array) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    noise_key = jax.random.fold_in(rng, NOISE_STREAM)
    for plugin in plugins:
      group_mask = plugin.effective_mask(state.extras[plugin.name], batch, group_mask)
    size = group_mask.shape[0]

    def row_grad(row):
      row_batch, row_mask = row

      def objective(params):
        model = nnx.merge(graphdef, params)
        rows = jax.tree.map(lambda x: x[None], row_batch)
        return loss_fn(model, rows, row_mask[None], rng, **loss_kwargs)

      (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
      return loss, aux, grads, optax.tree.norm(grads)

    if microbatch is None or microbatch >= size:
      _, aux, grads, norms = jax.vmap(row_grad)((batch, group_mask))
    else:  # chunks of `microbatch` rows; the last chunk is padded with zero rows, dropped afterwards
      micro = int(microbatch)
      chunks = -(-size // micro)

      def split(x):
        x = jnp.pad(x, [(0, chunks * micro - size)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((chunks, micro) + x.shape[1:])

      out = jax.lax.map(jax.vmap(row_grad), jax.tree.map(split, (batch, group_mask)))
      _, aux, grads, norms = jax.tree.map(lambda x: x.reshape((chunks * micro,) + x.shape[2:])[:size], out)
    aux = {name: value for name, value in aux.items() if name != "contributors"}
    aux = jax.tree.map(lambda x: x.reshape((size,) + x.shape[2:]) if x.ndim >= 2 else x, aux)
    aux["contributors"] = group_mask.sum(axis=0)

    updates, opt_state = tx.update(grads, state.opt_state, state.params, group_mask=group_mask, key=noise_key)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": aux["per_example_loss"].mean(),
        "grad_norm": optax.tree.norm(jax.tree.map(lambda g: g.mean(axis=0), grads)),
        "contributors": aux["contributors"],
        "per_example_loss": aux["per_example_loss"],
        "group_mask": group_mask,
        "dp/example_grad_norm": norms,
    }
    if l2_norm_clip is not None:
      metrics["dp/clipped_fraction"] = (norms > l2_norm_clip).astype(jnp.float32).mean()
    extras = update_plugins(plugins, state, batch, aux, metrics)
    new_state = state._replace(step=state.step + 1, params=params, opt_state=opt_state, extras=extras)
    return new_state, metrics

  return jax.jit(step, donate_argnums=(0,) if donate else ())


def privacy_spent(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> dict:
  """Per-example epsilon of DP-SGD by RDP accounting, when the ``dp_accounting`` library is installed.

  Args:
    noise_multiplier: noise standard deviation / clipping norm.
    sample_rate: batch size / number of training examples (treated as Poisson sampling).
    steps: number of steps taken.
    delta: target delta.

  Returns:
    ``{"epsilon": float | None, "delta", "noise_multiplier", "sample_rate", "steps", "accountant", "note"}``;
    ``epsilon`` is None (and ``note`` says why) when no accountant is available or the noise is 0.
  """
  out = {"epsilon": None, "delta": float(delta), "noise_multiplier": float(noise_multiplier),
         "sample_rate": float(sample_rate), "steps": int(steps), "accountant": None, "note": ""}
  if noise_multiplier <= 0:
    out["note"] = "noise_multiplier is 0: no differential privacy guarantee (epsilon is infinite)"
    return out
  if importlib.util.find_spec("dp_accounting") is None:
    out["note"] = "epsilon not computed: the dp_accounting library is not installed"
    return out
  import dp_accounting  # noqa: PLC0415 (optional dependency)

  accountant = dp_accounting.rdp.RdpAccountant()
  event = dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
  accountant.compose(event, int(steps))
  out["epsilon"] = float(accountant.get_epsilon(delta))
  out["accountant"] = "dp_accounting.rdp.RdpAccountant"
  out["note"] = "per-example (per-window) epsilon assuming Poisson sampling; a work with m windows gets less"
  return out
