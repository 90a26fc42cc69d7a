"""Every candidate memorization signal of a batch of windows, from one forward pass of the final (or a checkpoint)
model: the inputs of the memorization-signal study and of the probe bench.

Signals per window (higher or lower may mean "memorized"; the study measures which, it does not assume it):

* ``loss``: mean next-token cross-entropy (nats);
* ``predictive_entropy``: mean entropy of the next-token distribution;
* ``min_k``: mean of the lowest 20% token log-probabilities (Shi et al. 2023);
* ``zlib_ratio``: loss in bits per token over the zlib size in bits per token (host side);
* ``rep_c{i}`` / ``rep_u{i}``: length-normalised order-2 representation entropy of the residual stream after
  group ``i`` (0 = embeddings, ``i`` = block ``i``), centred / uncentred over the window's tokens;
* ``attn{i}``: mean attention entropy of block ``i`` (over heads and query positions), recomputed from the
  block's own query/key projections of its input (no change to the model's outputs is needed).

Example:
  >>> from flax import nnx
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=16, num_layers=2, width=16, num_heads=2, context=8),
  ...                     rngs=nnx.Rngs(0))
  >>> values = window_signals(model, np.full((3, 8), 5))
  >>> signal_names(2)[:6], values["rep_c2"].shape
  (['loss', 'predictive_entropy', 'min_k', 'zlib_ratio', 'rep_c0', 'rep_c1'], (3,))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.losses import per_example_next_token_loss
from govjax.probe.stats import (
  attention_entropy,
  min_k_logprob,
  predictive_entropy,
  representation_entropy,
  token_weights,
  zlib_ratio,
)

__all__ = ["BASE_SIGNALS", "block_attention", "signal_names", "window_signals"]

BASE_SIGNALS = ("loss", "predictive_entropy", "min_k", "zlib_ratio")


def signal_names(num_layers: int) -> list[str]:
  """Names of the signals :func:`window_signals` returns for a ``num_layers``-block transformer, in order."""
  names = list(BASE_SIGNALS)
  names += [f"rep_c{i}" for i in range(num_layers + 1)]
  names += [f"rep_u{i}" for i in range(num_layers + 1)]
  names += [f"attn{i}" for i in range(1, num_layers + 1)]
  return names


def block_attention(block: nnx.Module, h: jax.Array) -> jax.Array:
  """The causal attention weights ``[B, H, T, T]`` of a :class:`~govjax.models.transformer.Block` on input ``h``.

  Args:
    block: the block (its ``attn_norm`` and ``attn`` query/key projections are used).
    h: ``[B, T, D]`` residual stream entering the block.

  Returns:
    float32 weights; row ``t`` is the distribution over keys ``<= t``.
  """
  x = block.attn_norm(h)
  query = block.attn.query(x)  # [B, T, H, Dh]
  key = block.attn.key(x)
  scores = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32) / np.sqrt(query.shape[-1])
  length = h.shape[1]
  causal = jnp.tril(jnp.ones((length, length), bool))
  return jax.nn.softmax(jnp.where(causal, scores, -1e30), axis=-1)


@functools.partial(jax.jit, static_argnames=("graphdef", "fraction"))
def _device_signals(graphdef, params, tokens, *, fraction):
  model = nnx.merge(graphdef, params)
  logits, hidden = model(tokens, return_hidden=True)
  weights = token_weights(tokens)
  loss, _ = per_example_next_token_loss(logits, tokens)
  out = {"loss": loss, "predictive_entropy": predictive_entropy(logits, tokens),
         "min_k": min_k_logprob(logits, tokens, fraction=fraction)}
  for i, h in enumerate(hidden):
    out[f"rep_c{i}"] = representation_entropy(h, weights, center=True, normalize=True)
    out[f"rep_u{i}"] = representation_entropy(h, weights, center=False, normalize=True)
  for i, block in enumerate(model.blocks):
    out[f"attn{i + 1}"] = attention_entropy(block_attention(block, hidden[i]), weights)
  return out


def window_signals(model: nnx.Module, windows, *, batch_size: int = 128, fraction: float = 0.2
                   ) -> dict[str, np.ndarray]:
  """All signals of :func:`signal_names` for ``windows`` ``[N, T]`` under ``model`` (batched forward passes).

  Args:
    model: a :class:`~govjax.models.transformer.Transformer`.
    windows: int ``[N, T]`` token windows.
    batch_size: rows per forward pass.
    fraction: the ``k`` of min-k% (as a fraction).

  Returns:
    ``{name: float64 [N]}``.
  """
  windows = np.asarray(windows, np.int32)
  graphdef, params = nnx.split(model, nnx.Param)
  parts: dict[str, list] = {}
  for start in range(0, windows.shape[0], batch_size):
    chunk = windows[start:start + batch_size]
    pad = batch_size - chunk.shape[0] if windows.shape[0] > batch_size else 0
    rows = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
    values = _device_signals(graphdef, params, jnp.asarray(rows), fraction=fraction)
    for name, value in values.items():
      parts.setdefault(name, []).append(np.asarray(value, np.float64)[:chunk.shape[0]])
  out = {name: np.concatenate(value) for name, value in parts.items()}
  out["zlib_ratio"] = zlib_ratio(out["loss"], windows)
  num_layers = len(model.blocks)
  return {name: out[name] for name in signal_names(num_layers)}
