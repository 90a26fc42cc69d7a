"""Next-token losses shared by training, routing, the probe and provenance.

Example:
  >>> import jax.numpy as jnp
  >>> logits = jnp.zeros((2, 5, 7))
  >>> tokens = jnp.array([[3, 4, 5, 6, 0], [3, 3, 3, 3, 3]])
  >>> per_example, counts = per_example_next_token_loss(logits, tokens)
  >>> [round(float(x), 4) for x in per_example], counts.tolist()
  ([1.9459, 1.9459], [3, 4])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

PAD_ID = 0


def token_losses(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Cross-entropy of predicting ``tokens[:, t + 1]`` from position ``t``.

  Args:
    logits: ``[B, L, V]`` model outputs.
    tokens: ``[B, L]`` int inputs; PAD (0) targets are not scored.

  Returns:
    ``(losses, weights)``, both ``[B, L - 1]`` float32; ``weights`` is 1 where the target is not PAD.
  """
  targets = tokens[:, 1:]
  losses = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32), targets)
  weights = (targets != PAD_ID).astype(jnp.float32)
  return losses * weights, weights


def per_example_next_token_loss(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean next-token cross-entropy per example.

  Args:
    logits: ``[B, L, V]``.
    tokens: ``[B, L]`` int.

  Returns:
    ``(loss, count)``: ``[B]`` mean loss over scored targets (0 for an example with none) and ``[B]`` number of
    scored targets.
  """
  losses, weights = token_losses(logits, tokens)
  count = weights.sum(axis=1)
  return losses.sum(axis=1) / jnp.maximum(count, 1.0), count.astype(jnp.int32)
