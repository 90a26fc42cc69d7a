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
  >>> round(float(min_k_logprob(logits, tokens, fraction=0.5)[0]), 4)   # every token at -log 8
  -2.0794
  >>> round(float(attention_entropy(jnp.full((1, 1, 2, 2), 0.5))[0]), 4)   # [B, H, Tq, Tk], uniform over 2
  0.6931

Further statistics for the memorization-signal study (:mod:`govjax.probe.signals`): **min-k% log-probability**
(Shi et al. 2023: the mean of the lowest ``k``% token log-probabilities; high = member), **attention entropy**
(mean entropy of the attention distributions of a block, over heads and query positions), the **zlib ratio**
(Carlini et al. 2021: loss in bits per token over the zlib-compressed size in bits per token; computed on the
host) and a **length-normalised** representation entropy (divided by ``log(min(n, D))``, its maximum for ``n``
valid tokens).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from govjax.core.losses import PAD_ID, per_example_next_token_loss, token_losses

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


def root_loss(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """Mean over the scored targets of the square root of each target's cross-entropy (``sqrt(nats)``).

  A concave reading of the loss: it counts how many tokens are still uncertain more than how uncertain the
  worst ones are. The memorization gap ranks examples on it (:mod:`govjax.probe.gap`).

  Args:
    logits: ``[B, T, V]``.
    tokens: ``[B, T]`` int (PAD targets are not scored).

  Returns:
    float32 ``[B]`` (0 for a row with no scored target).
  """
  losses, weights = token_losses(logits, tokens)
  return (jnp.sqrt(jnp.maximum(losses, 0.0)) * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


def representation_entropy(hidden: jax.Array, weights: jax.Array | None = None, *, center: bool = True,
                           normalize: bool = False, eps: float = 1e-12) -> jax.Array:
  """Order-2 Renyi entropy of each row's normalised squared singular-value spectrum.

  Args:
    hidden: ``[B, T, D]`` hidden states.
    weights: optional ``[B, T]`` 0/1 token weights (e.g. :func:`token_weights`); rows of ``H`` with weight 0
      are dropped (zeroed after centring).
    center: subtract each row's mean hidden vector over its weighted tokens first.
    normalize: divide by ``log(min(n, D))`` with ``n`` the row's weighted tokens (so rows of different lengths
      compare; the value is then in [0, 1]).
    eps: guards the division for an all-zero matrix (whose entropy is reported as 0).

  Returns:
    float32 ``[B]``, between 0 (rank one) and ``log(min(T, D))`` (flat spectrum); in [0, 1] with ``normalize``.
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
  entropy = jnp.where(trace > eps, jnp.maximum(-jnp.log(jnp.maximum(purity, eps)), 0.0), 0.0)
  if normalize:
    count = w[..., 0].sum(axis=1)
    entropy = entropy / jnp.maximum(jnp.log(jnp.minimum(count, float(width))), eps)
  return entropy


def min_k_logprob(logits: jax.Array, tokens: jax.Array, *, fraction: float = 0.2) -> jax.Array:
  """Mean of the lowest ``fraction`` of each row's scored next-token log-probabilities (min-k% prob).

  Args:
    logits: ``[B, T, V]``.
    tokens: ``[B, T]`` int (PAD targets are not scored).
    fraction: the share ``k`` of the scored tokens averaged (at least one token).

  Returns:
    float32 ``[B]`` (<= 0; high = confidently predicted everywhere, the member side).
  """
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  target = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  weights = (tokens[:, 1:] != PAD_ID).astype(jnp.float32)
  ordered = jnp.sort(jnp.where(weights > 0, target, jnp.inf), axis=1)
  count = weights.sum(axis=1)
  keep = jnp.maximum(jnp.ceil(fraction * count), 1.0)
  take = (jnp.arange(ordered.shape[1])[None, :] < keep[:, None]) & jnp.isfinite(ordered)
  return jnp.where(take, ordered, 0.0).sum(axis=1) / jnp.maximum(take.sum(axis=1), 1)


def attention_entropy(attention: jax.Array, query_weights: jax.Array | None = None) -> jax.Array:
  """Mean entropy (nats) of attention distributions, over heads and (weighted) query positions.

  Args:
    attention: ``[B, H, Tq, Tk]`` attention weights (each ``[..., Tk]`` row sums to one).
    query_weights: optional ``[B, Tq]`` 0/1 weights of the query positions.

  Returns:
    float32 ``[B]``.
  """
  a = attention.astype(jnp.float32)
  entropy = -jnp.sum(jnp.where(a > 0, a * jnp.log(jnp.maximum(a, 1e-30)), 0.0), axis=-1).mean(axis=1)
  if query_weights is None:
    return entropy.mean(axis=-1)
  w = query_weights.astype(jnp.float32)
  return (entropy * w).sum(axis=-1) / jnp.maximum(w.sum(axis=-1), 1.0)


def zlib_bits_per_token(tokens) -> np.ndarray:
  """Size of each row's non-PAD tokens compressed by zlib (level 9), in bits per token (host side, numpy).

  Args:
    tokens: ``[B, T]`` ints below 256.

  Returns:
    float64 ``[B]``.
  """
  tokens = np.asarray(tokens)
  if tokens.size and (tokens.min() < 0 or tokens.max() > 255):
    raise ValueError("zlib_bits_per_token needs token ids in [0, 255]")
  out = np.zeros(tokens.shape[0])
  for row, values in enumerate(tokens):
    values = values[values != PAD_ID].astype(np.uint8)
    out[row] = 8.0 * len(zlib.compress(values.tobytes(), 9)) / max(values.size, 1)
  return out


def zlib_ratio(loss_nats, tokens) -> np.ndarray:
  """Carlini et al.'s zlib ratio: the model's loss in bits per token over the zlib size in bits per token.

  Args:
    loss_nats: ``[B]`` mean next-token loss (nats).
    tokens: ``[B, T]`` the rows.

  Returns:
    float64 ``[B]``; low = the model finds the row easier than its compressibility says (the member side).
  """
  return np.asarray(loss_nats, np.float64) / np.log(2.0) / np.maximum(zlib_bits_per_token(tokens), 1e-9)


def example_statistics(logits: jax.Array, tokens: jax.Array, hidden: jax.Array | None = None, *,
                       per_example_loss: jax.Array | None = None, center: bool = True) -> jax.Array:
  """All three statistics of a batch, stacked in the order of :data:`STATISTICS`.

  Args:
    logits: ``[B, T, V]`` from the step's forward pass.
    tokens: ``[B, T]`` int.
    hidden: ``[B, T, D]`` hidden states of the probed layer, or None (representation entropy is then NaN).
    per_example_loss: ``[B]`` when the loss function already computed it (else it is computed here).
    center: centre the hidden states before the representation entropy (False: uncentred).

  Returns:
    float32 ``[B, 3]``.
  """
  if per_example_loss is None:
    per_example_loss, _ = per_example_next_token_loss(logits, tokens)
  pred = predictive_entropy(logits, tokens)
  if hidden is None:
    rep = jnp.full(pred.shape, jnp.nan, jnp.float32)
  else:
    rep = representation_entropy(hidden, token_weights(tokens), center=center)
  return jnp.stack([per_example_loss.astype(jnp.float32), pred, rep], axis=-1)


def statistic_index(name: str) -> int:
  """Column of ``name`` in :func:`example_statistics`'s output."""
  if name not in STATISTICS:
    raise ValueError(f"unknown probe statistic {name!r}; expected one of {STATISTICS}")
  return STATISTICS.index(name)
