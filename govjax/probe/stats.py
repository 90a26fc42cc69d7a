"""Per-example memorization statistics computed from a forward pass the train step already made.

Three statistics per example (row of a batch), all jittable and cheap next to the step:

* **per-example loss**: mean next-token cross-entropy over scored targets
  (:func:`govjax.core.losses.per_example_next_token_loss`; PAD targets are not scored).
* **predictive entropy**: the entropy (nats) of the model's next-token distribution ``softmax(logits[t])``,
  averaged over the same scored positions. A memorized window is predicted with confidence: low entropy.
* **representation entropy**: the order-2 Renyi entropy of the normalised spectrum of the example's hidden
  matrix. With ``H`` the ``[T, D]`` hidden states of the non-PAD tokens of one window (centred over those tokens)
  and ``s_i`` its singular values, ``p_i = s_i**2 / sum_j s_j**2`` and::

      representation_entropy = -log(sum_i p_i**2) = -log(||H^T H||_F**2 / trace(H^T H)**2)

  i.e. the log of the effective rank of the token representations (Giraldo et al. 2014's matrix entropy with
  alpha = 2). The identity on the right needs no SVD or eigendecomposition, only the ``[D, D]`` (or ``[T, T]``,
  whichever is smaller) Gram matrix, so it costs ``O(T * D * min(T, D))`` per example. Collapsed, low-rank
  token representations give low entropy.

Example:
  >>> import jax.numpy as jnp
  >>> h = jnp.stack([jnp.eye(4), jnp.diag(jnp.array([1., 0., 0., 0.]))])   # [B=2, T=4, D=4]
  >>> [round(float(x), 3) for x in representation_entropy(h, center=False)]
  [1.386, 0.0]
  >>> logits = jnp.zeros((1, 3, 8)); tokens = jnp.array([[3, 4, 5]])
  >>> round(float(predictive_entropy(logits, tokens)[0]), 4)   # uniform over 8: log 8
  2.0794
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from govjax.core.losses import PAD_ID, per_example_next_token_loss

STATISTICS = ("loss", "predictive_entropy", "representation_entropy")


def token_weights(tokens: jax.Array) -> jax.Array:
  """``[B, T]`` float32: 1 for non-PAD tokens."""
  return (tokens != PAD_ID).astype(jnp.float32)


def predictive_entropy(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """Mean entropy of the next-token distribution over the scored positions of each row.

  Args:
    logits: ``[B, T, V]``.
    tokens: ``[B, T]`` int; position ``t`` is scored when ``tokens[:, t + 1]`` is not PAD (as the loss does).

  Returns:
    float32 ``[B]`` in nats (0 for a row with no scored position).
  """
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
  weights = (tokens[:, 1:] != PAD_ID).astype(jnp.float32)
  return (entropy * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


def representation_entropy(hidden: jax.Array, weights: jax.Array | None = None, *, center: bool = True,
                           eps: float = 1e-12) -> jax.Array:
  """Order-2 Renyi entropy of each row's normalised squared singular-value spectrum.

  Args:
    hidden: ``[B, T, D]`` hidden states.
    weights: optional ``[B, T]`` 0/1 token weights (e.g. :func:`token_weights`); rows of ``H`` with weight 0
      are dropped (zeroed after centring).
    center: subtract each row's mean hidden vector over its weighted tokens first.
    eps: guards the division for an all-zero matrix (whose entropy is reported as 0).

  Returns:
    float32 ``[B]``, between 0 (rank one) and ``log(min(T, D))`` (flat spectrum).
  """
  h = hidden.astype(jnp.float32)
  if weights is None:
    weights = jnp.ones(h.shape[:2], jnp.float32)
  w = weights.astype(jnp.float32)[..., None]
  if center:
    mean = (h * w).sum(axis=1, keepdims=True) / jnp.maximum(w.sum(axis=1, keepdims=True), 1.0)
    h = h - mean
  h = h * w
  _, length, width = h.shape
  if width <= length:
    gram = jnp.einsum("btd,bte->bde", h, h)
  else:
    gram = jnp.einsum("btd,bsd->bts", h, h)
  trace = jnp.trace(gram, axis1=1, axis2=2)
  frob2 = jnp.sum(gram * gram, axis=(1, 2))
  purity = frob2 / jnp.maximum(trace * trace, eps)
  return jnp.where(trace > eps, jnp.maximum(-jnp.log(jnp.maximum(purity, eps)), 0.0), 0.0)


def example_statistics(logits: jax.Array, tokens: jax.Array, hidden: jax.Array | None = None, *,
                       per_example_loss: jax.Array | None = None) -> jax.Array:
  """All three statistics of a batch, stacked in the order of :data:`STATISTICS`.

  Args:
    logits: ``[B, T, V]`` from the step's forward pass.
    tokens: ``[B, T]`` int.
    hidden: ``[B, T, D]`` hidden states of the probed layer, or None (representation entropy is then NaN).
    per_example_loss: ``[B]`` when the loss function already computed it (else it is computed here).

  Returns:
    float32 ``[B, 3]``.
  """
  if per_example_loss is None:
    per_example_loss, _ = per_example_next_token_loss(logits, tokens)
  pred = predictive_entropy(logits, tokens)
  if hidden is None:
    rep = jnp.full(pred.shape, jnp.nan, jnp.float32)
  else:
    rep = representation_entropy(hidden, token_weights(tokens))
  return jnp.stack([per_example_loss.astype(jnp.float32), pred, rep], axis=-1)


def statistic_index(name: str) -> int:
  """Column of ``name`` in :func:`example_statistics`'s output."""
  if name not in STATISTICS:
    raise ValueError(f"unknown probe statistic {name!r}; expected one of {STATISTICS}")
  return STATISTICS.index(name)
