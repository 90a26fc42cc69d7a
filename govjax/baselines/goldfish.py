"""Goldfish loss (Hans et al., NeurIPS 2024): leave 1/k of the tokens out of the loss, chosen by a hash of context.

A target token is dropped when a hash of the ``h`` tokens before it is 0 modulo ``k``. Because the choice depends
only on that local context (not on the position in the window or on the batch), every copy of a passage, in any
window and any epoch, drops the same tokens: the model never receives a gradient for them, so it cannot learn to
reproduce the passage verbatim, while ``(k - 1) / k`` of the signal still trains the general craft.

Conventions (as in :mod:`govjax.core.losses`): the loss term at position ``t`` predicts ``tokens[t + 1]``;
``goldfish_mask`` is indexed by the *target* token, so ``mask[b, j]`` says whether ``tokens[b, j]`` is counted and
is decided by the ``h`` tokens ``tokens[b, j - h:j]`` (the ones ending at the predicting position ``t = j - 1``).
Targets with fewer than ``h`` tokens before them in the row are always counted; PAD targets never are.

Example:
  >>> import jax.numpy as jnp
  >>> tokens = jnp.tile(jnp.arange(3, 11, dtype=jnp.int32), (2, 4))   # [2, 32]
  >>> mask = goldfish_mask(tokens, k=4, h=3, seed=0)
  >>> mask.shape, bool((mask[0] == mask[1]).all()), bool((mask[:, :3] == 1).all())
  ((2, 32), True, True)
  >>> loss_fn = goldfish_loss(k=4, h=3)   # plugs into govjax.train.step.make_train_step
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from govjax.core.losses import token_losses

_GOLDEN = 0x9E3779B1  # odd multiplier mixing each token into the running hash


def _fmix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser (a bijection on uint32 with full avalanche)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def _check_args(k: int | None, h: int) -> None:
  if k is not None and int(k) < 2:
    raise ValueError(f"goldfish: k must be >= 2 (drop 1/k of the tokens) or None to disable, got {k}")
  if int(h) < 1:
    raise ValueError(f"goldfish: h (context length of the hash) must be >= 1, got {h}")


def context_hash(tokens: jax.Array, *, h: int, seed: int = 0) -> jax.Array:
  """uint32 hash of the ``h`` tokens before each position.

  Args:
    tokens: ``[B, T]`` integer tokens.
    h: context length.
    seed: hash seed (different seeds drop different tokens).

  Returns:
    ``(hashes, valid)``: uint32 ``[B, T]`` with ``hashes[b, j]`` a function of ``tokens[b, j - h:j]`` and
    ``seed`` only, and bool ``[B, T]`` ``valid`` (``j >= h``, i.e. a full context exists).
  """
  tokens = jnp.asarray(tokens)
  if tokens.ndim != 2:
    raise ValueError(f"goldfish: tokens must be [B, T], got shape {tokens.shape}")
  _, length = tokens.shape
  padded = jnp.pad(tokens.astype(jnp.uint32), ((0, 0), (h, 0)))
  acc = jnp.full(tokens.shape, _fmix32(jnp.uint32(int(seed) & 0xFFFFFFFF)), jnp.uint32)
  for offset in range(h):  # padded[:, offset + j] == tokens[:, j - h + offset]
    acc = _fmix32(acc * jnp.uint32(_GOLDEN) + padded[:, offset:offset + length] + jnp.uint32(1))
  valid = jnp.arange(length)[None, :] >= h
  return acc, jnp.broadcast_to(valid, tokens.shape)


def goldfish_mask(tokens: jax.Array, *, k: int | None, h: int, seed: int = 0) -> jax.Array:
  """Which target tokens the goldfish loss counts.

  Args:
    tokens: ``[B, T]`` int32 tokens.
    k: drop one token in ``k`` (in expectation); ``None`` disables dropping.
    h: number of preceding tokens hashed to decide.
    seed: hash seed.

  Returns:
    float32 ``[B, T]``: 1 = the token is counted as a target, 0 = dropped (PAD is handled by the loss).
  """
  _check_args(k, h)
  tokens = jnp.asarray(tokens)
  if k is None:
    return jnp.ones(tokens.shape, jnp.float32)
  hashes, valid = context_hash(tokens, h=h, seed=seed)
  dropped = valid & (hashes % jnp.uint32(k) == 0)
  return 1.0 - dropped.astype(jnp.float32)


def goldfish_token_losses(logits: jax.Array, tokens: jax.Array, *, k: int | None, h: int,
                          seed: int = 0) -> tuple[jax.Array, jax.Array]:
  """Next-token losses with the goldfish mask applied.

  Args:
    logits: ``[B, T, V]``.
    tokens: ``[B, T]``.
    k, h, seed: see :func:`goldfish_mask`.

  Returns:
    ``(losses, weights)`` ``[B, T - 1]``: weights are 1 where the target is neither PAD nor dropped.
  """
  losses, weights = token_losses(logits, tokens)
  weights = weights * goldfish_mask(tokens, k=k, h=h, seed=seed)[:, 1:]
  return losses * weights, weights


def goldfish_loss(k: int | None = 4, h: int = 13, seed: int = 0):
  """A train-step loss function with goldfish token dropping (the group mask is only logged, as in vanilla).

  Args:
    k: drop 1/k of the target tokens; ``None`` = plain next-token loss.
    h: hashed context length.
    seed: hash seed.

  Returns:
    ``loss_fn(model, batch, group_mask, rng, *, return_hidden=False) -> (loss, aux)``: ``loss`` is the mean over
    rows of ``aux["per_example_loss"]`` (each row's mean loss over its counted targets, 0 if none);
    ``aux`` also holds ``contributors`` ``[G]``, ``logits``, ``token_count`` ``[B]`` (targets counted) and
    ``hidden`` when ``return_hidden``.
  """
  _check_args(k, h)

  def loss_fn(model: nnx.Module, batch: dict, group_mask: jax.Array, rng: jax.Array, *,
              return_hidden: bool = False) -> tuple[jax.Array, dict]:
    del rng
    tokens = batch["tokens"]
    out = model(tokens, return_hidden=return_hidden)
    logits, hidden = out if return_hidden else (out, None)
    losses, weights = goldfish_token_losses(logits, tokens, k=k, h=h, seed=seed)
    count = weights.sum(axis=1)
    per_example = losses.sum(axis=1) / jnp.maximum(count, 1.0)
    aux = {"per_example_loss": per_example, "contributors": group_mask.sum(axis=0), "logits": logits,
           "token_count": count}
    if return_hidden:
      aux["hidden"] = hidden
    return per_example.mean(), aux

  return loss_fn
