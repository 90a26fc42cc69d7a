"""DP-SGD baseline: per-example gradients, clipped and noised by optax before AdamW.

The train step computes one gradient per batch row (:func:`govjax.train.gradients.per_example_gradients`); the
optimizer's first transform, :func:`dp_aggregate`, clips each row's gradient to global norm ``l2_norm_clip``,
sums, adds Gaussian noise of standard deviation ``l2_norm_clip * noise_multiplier`` and divides by the batch size
(``optax.contrib.differentially_private_aggregate``); the usual clip + AdamW follows (post-processing, so the
guarantee is unchanged). The same step runs data-parallel (the strategy and the transform are the step's parts).

The noise key is not kept in the optimizer state: the train step passes
``key=fold_in(step key, govjax.train.step.NOISE_STREAM)`` to the optimizer, so a resumed run draws exactly the
noise an uninterrupted one would and the checkpointed state holds no typed PRNG keys.

What is protected: one *window* (one batch row). A work cut into ``m`` windows is protected only at the group
level (``m`` times the per-example bound, roughly), and the loader shuffles per epoch rather than Poisson
sampling, so any epsilon from :func:`privacy_spent` is the textbook per-example figure, an optimistic reading.

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> tx = optax.chain(dp_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0), optax.sgd(1.0))
  >>> per_example = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}   # norms 5 and 0.5
  >>> updates, _ = tx.update(per_example, tx.init({"w": jnp.zeros(2)}), key=jax.random.key(0))
  >>> [round(float(u), 3) for u in updates["w"]]   # -(clip(row 0) + row 1) / 2
  [-0.45, -0.6]
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax


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
                       "train with govjax.train.step.make_train_step (it passes the key)")
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.wrap_key_data(key)
    # One flat [B, P] leaf: the same global-norm clipping, and a single noise draw (fast to compile).
    flat = jax.vmap(lambda g: jax.flatten_util.ravel_pytree(g)[0])(updates)
    _, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda g: g[0], updates))
    out, _ = inner.update(flat, optax.contrib.DifferentiallyPrivateAggregateState(rng_key=key))
    return unravel(out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
