"""How the train step computes gradients: one batch gradient, or one gradient per example.

The train step (:func:`govjax.train.step.make_train_step`) is the same for every method; what differs is the
gradient strategy and the optax chain that consumes its output:

- :func:`batch_gradients` (the default): ``value_and_grad`` of the batch loss. Routing that happens in the forward
  pass (the depth gate, the per-group ``custom_vjp``, the removable region) and the goldfish loss use it.
- :func:`per_example_gradients`: one gradient per batch row (``vmap`` over rows, ``microbatch`` rows at a time),
  stacked on a leading batch axis. The first transform of the optax chain reduces them:
  :func:`govjax.routing.transforms.per_example_routed_aggregate` for the exact router,
  :func:`govjax.baselines.dpsgd.dp_aggregate` (clip each row, add noise, average) for DP-SGD.

A strategy is called inside the jitted step as ``strategy(objective, params, batch, group_mask)`` where
``objective(params, batch, group_mask) -> (loss, aux)`` is the step's loss on (part of) the batch, and returns
``(loss, aux, grads, metrics)``; ``aux`` covers the whole batch (``per_example_loss`` ``[B]``, ``contributors``
``[G]``, ...), ``metrics`` holds the strategy's own metrics (``grad_norm`` at least).

Example:
  >>> import jax.numpy as jnp
  >>> def objective(params, batch, mask):
  ...   per_example = (batch["x"] * params["w"]) ** 2
  ...   return per_example.mean(), {"per_example_loss": per_example, "contributors": mask.sum(0)}
  >>> params, batch, mask = {"w": jnp.float32(2.0)}, {"x": jnp.array([1.0, 3.0])}, jnp.ones((2, 1))
  >>> loss, aux, grads, metrics = per_example_gradients()(objective, params, batch, mask)
  >>> float(loss), grads["w"].tolist(), metrics["example_grad_norm"].tolist()
  (20.0, [4.0, 36.0], [4.0, 36.0])
  >>> float(batch_gradients()(objective, params, batch, mask)[2]["w"])
  20.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

__all__ = ["GradientStrategy", "Objective", "batch_gradients", "per_example_gradients"]

Objective = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


class GradientStrategy(Protocol):
  """``strategy(objective, params, batch, group_mask) -> (loss, aux, grads, metrics)``.

  Attributes:
    per_example: True when ``grads`` has a leading batch axis (the optax chain must reduce it first).
  """

  per_example: bool

  def __call__(self, objective: Objective, params: Any, batch: dict, group_mask: jax.Array
               ) -> tuple[jax.Array, dict, Any, dict]: ...


class _BatchGradients:
  per_example = False

  def __call__(self, objective, params, batch, group_mask):
    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params, batch, group_mask)
    return loss, aux, grads, {"grad_norm": optax.tree.norm(grads)}

  def __repr__(self) -> str:
    return "batch_gradients()"


def batch_gradients() -> GradientStrategy:
  """The gradient of the batch loss (the usual step).

  Returns:
    A :class:`GradientStrategy` with ``per_example = False``.
  """
  return _BatchGradients()


class _PerExampleGradients:
  per_example = True

  def __init__(self, microbatch: int | None, clip_norm: float | None, prefix: str):
    self.microbatch = microbatch
    self.clip_norm = clip_norm
    self.prefix = prefix

  def __repr__(self) -> str:
    return f"per_example_gradients(microbatch={self.microbatch}, clip_norm={self.clip_norm})"

  def __call__(self, objective, params, batch, group_mask):
    size = group_mask.shape[0]

    def row_grad(row):
      row_batch, row_mask = row
      rows = jax.tree.map(lambda x: x[None], row_batch)
      (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(params, rows, row_mask[None])
      return aux, grads, optax.tree.norm(grads)

    if self.microbatch is None or self.microbatch >= size:
      aux, grads, norms = jax.vmap(row_grad)((batch, group_mask))
    else:  # chunks of `microbatch` rows; the last chunk is padded with zero (PAD) rows, dropped afterwards
      micro = int(self.microbatch)
      chunks = -(-size // micro)

      def split(x):
        x = jnp.pad(x, [(0, chunks * micro - size)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((chunks, micro) + x.shape[1:])

      out = jax.lax.map(jax.vmap(row_grad), jax.tree.map(split, (batch, group_mask)))
      aux, grads, norms = jax.tree.map(lambda x: x.reshape((chunks * micro,) + x.shape[2:])[:size], out)
    # Each row's aux has a leading axis of 1 (one-row batch): fold it into the batch axis.
    aux = {name: value for name, value in aux.items() if name != "contributors"}
    aux = jax.tree.map(lambda x: x.reshape((size,) + x.shape[2:]) if x.ndim >= 2 else x, aux)
    aux["contributors"] = group_mask.sum(axis=0)
    metrics = {
        "grad_norm": optax.tree.norm(jax.tree.map(lambda g: g.mean(axis=0), grads)),
        f"{self.prefix}example_grad_norm": norms,
    }
    if self.clip_norm is not None:
      metrics[f"{self.prefix}clipped_fraction"] = (norms > self.clip_norm).astype(jnp.float32).mean()
    return aux["per_example_loss"].mean(), aux, grads, metrics


def per_example_gradients(microbatch: int | None = None, *, clip_norm: float | None = None,
                          prefix: str = "") -> GradientStrategy:
  """One gradient per batch row, stacked on a leading batch axis.

  Args:
    microbatch: rows whose gradients are computed at once (``None``: the whole batch); the last chunk is padded
      with all-zero (PAD) rows whose results are discarded.
    clip_norm: only for the ``clipped_fraction`` metric (rows whose gradient norm exceeds it).
    prefix: prefix of the strategy's own metric names (``"dp/"`` for DP-SGD).

  Returns:
    A :class:`GradientStrategy` with ``per_example = True``. The objective is evaluated on one row at a time
    (batch leaves and ``group_mask`` with a leading axis of 1). Metrics: ``grad_norm`` (norm of the mean
    unreduced gradient), ``{prefix}example_grad_norm`` ``[B]`` and, with ``clip_norm``,
    ``{prefix}clipped_fraction``.

  Raises:
    ValueError: ``microbatch`` is not a positive number of rows.
  """
  if microbatch is not None and int(microbatch) < 1:
    raise ValueError(f"microbatch must be a positive number of rows or None, got {microbatch}")
  return _PerExampleGradients(None if microbatch is None else int(microbatch), clip_norm, prefix)
