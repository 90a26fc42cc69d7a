"""k-prefix extractable memorization (Carlini et al. 2022) with batched, jitted greedy decoding.

A window is *extractable* when, prompted with its first ``k`` tokens, the model's greedy continuation of ``m``
tokens equals the window's next ``m`` tokens exactly. ``token_match`` is the fraction of those ``m`` positions
where the greedy continuation is right (a softer measure). Windows are prompted at their own position (token 0 of
the window at position 0), exactly as they were seen in training. Windows whose first ``k + m`` tokens contain
PAD cannot be judged; they are counted as skipped (``valid`` False), never silently dropped.

The decoder keeps a ``[B, k + m]`` buffer and fills it position by position inside one ``jax.jit``
(``lax.fori_loop``); causal attention makes the unwritten positions irrelevant, so it matches
:func:`govjax.models.generate.generate` with ``greedy=True`` while scoring only ``k + m`` positions per step.

Example:
  >>> import numpy as np
  >>> from flax import nnx
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=9, num_layers=1, width=16, num_heads=2, context=16),
  ...                     rngs=nnx.Rngs(0))
  >>> windows = np.random.default_rng(0).integers(1, 9, size=(5, 16))
  >>> result = extraction_audit(model, windows, k=4, m=8)
  >>> result.exact.shape, result.token_match.shape, int(result.valid.sum())
  ((5,), (5,), 5)
  >>> edit_similarity(np.array([[1, 2, 3, 4]]), np.array([[1, 2, 4, 4]])).tolist()
  [0.75]
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.losses import PAD_ID, per_example_next_token_loss


@functools.partial(jax.jit, static_argnames=("graphdef", "num_tokens"))
def _greedy(graphdef, params, prompts, *, num_tokens):
  model = nnx.merge(graphdef, params)
  batch, prompt_len = prompts.shape
  total = prompt_len + num_tokens
  buffer = jnp.zeros((batch, total), jnp.int32).at[:, :prompt_len].set(prompts)

  def body(t, buffer):
    logits = jax.lax.dynamic_index_in_dim(model(buffer), t - 1, axis=1, keepdims=False)
    token = jnp.argmax(logits.astype(jnp.float32), axis=-1).astype(jnp.int32)
    return jax.lax.dynamic_update_index_in_dim(buffer, token, t, axis=1)

  buffer = jax.lax.fori_loop(prompt_len, total, body, buffer)
  return buffer[:, prompt_len:]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _window_loss(graphdef, params, tokens):
  model = nnx.merge(graphdef, params)
  loss, count = per_example_next_token_loss(model(tokens), tokens)
  return loss, count


def edit_similarity(generated, reference) -> np.ndarray:
  """``1 - Levenshtein(generated, reference) / m`` per row of two int ``[N, m]`` arrays (1 = identical).

  Approximate reproduction: a continuation that is right up to a shifted or changed note scores near 1, where
  exact match scores 0. Vectorised over rows (dynamic programme over the ``m x m`` grid).
  """
  a = np.asarray(generated)
  b = np.asarray(reference)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"edit_similarity needs two [N, m] arrays of one shape, got {a.shape} and {b.shape}")
  n, m = a.shape
  if m == 0:
    return np.ones(n)
  previous = np.tile(np.arange(m + 1, dtype=np.int32), (n, 1))
  for i in range(1, m + 1):
    current = np.empty_like(previous)
    current[:, 0] = i
    substitution = previous[:, :-1] + (a[:, i - 1:i] != b).astype(np.int32)
    deletion = previous[:, 1:] + 1
    best = np.minimum(substitution, deletion)
    for j in range(1, m + 1):  # insertion runs along the row
      current[:, j] = np.minimum(best[:, j - 1], current[:, j - 1] + 1)
    previous = current
  return 1.0 - previous[:, m] / m


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _window_loss_argmax(graphdef, params, tokens):
  model = nnx.merge(graphdef, params)
  logits = model(tokens)
  loss, count = per_example_next_token_loss(logits, tokens)
  return loss, count, jnp.argmax(logits.astype(jnp.float32), axis=-1).astype(jnp.int32)


def teacher_forced(model: nnx.Module, windows, *, k: int, m: int,
                   batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Loss, exact k-prefix extraction and token accuracy of each window from one teacher-forced forward pass.

  Greedy decoding reproduces the ``m`` tokens after a ``k``-token prompt exactly iff, at each of those positions,
  the argmax next token given the *true* prefix is the true token (until the first miss the generated prefix is
  the true one). So ``exact`` equals :func:`extraction_audit`'s (up to argmax ties in floating point) at the
  cost of one forward pass instead of ``m``.

  Returns:
    ``(loss [N], exact bool [N], teacher-forced token accuracy [N] over the m positions)``.
  """
  windows = np.asarray(windows, np.int32)
  graphdef, params = nnx.split(model, nnx.Param)
  n = windows.shape[0]
  losses, exact, accuracy = np.zeros(n), np.zeros(n, bool), np.zeros(n)
  for start, chunk in _batches(windows, batch_size):
    loss, _, argmax = _window_loss_argmax(graphdef, params, jnp.asarray(chunk))
    rows = min(batch_size, n - start)
    hits = np.asarray(argmax)[:rows, k - 1:k + m - 1] == chunk[:rows, k:k + m]
    losses[start:start + rows] = np.asarray(loss)[:rows]
    exact[start:start + rows] = hits.all(axis=1)
    accuracy[start:start + rows] = hits.mean(axis=1)
  return losses, exact, accuracy


def _batches(array: np.ndarray, batch_size: int):
  """Yields ``(start, padded chunk)`` with every chunk ``batch_size`` rows (one compiled shape)."""
  for start in range(0, array.shape[0], batch_size):
    chunk = array[start:start + batch_size]
    if chunk.shape[0] < batch_size:
      pad = np.ones((batch_size - chunk.shape[0],) + chunk.shape[1:], chunk.dtype)
      chunk = np.concatenate([chunk, pad])
    yield start, chunk


def greedy_continuation(model: nnx.Module, prompts, num_tokens: int, *, batch_size: int = 64) -> np.ndarray:
  """Greedy continuations of ``prompts``.

  Args:
    model: a Transformer.
    prompts: int ``[N, k]``, ``k >= 1``.
    num_tokens: ``m``, tokens to generate; ``k + m`` must not exceed the model's context.
    batch_size: rows decoded at once.

  Returns:
    int32 ``[N, m]``.
  """
  prompts = np.asarray(prompts, np.int32)
  if prompts.ndim != 2 or prompts.shape[1] < 1:
    raise ValueError(f"prompts must be [N, k] with k >= 1, got shape {prompts.shape}")
  if prompts.shape[1] + num_tokens > model.config.context:
    raise ValueError(f"k ({prompts.shape[1]}) + m ({num_tokens}) exceeds the model context {model.config.context}")
  graphdef, params = nnx.split(model, nnx.Param)
  out = np.zeros((prompts.shape[0], num_tokens), np.int32)
  for start, chunk in _batches(prompts, batch_size):
    result = np.asarray(_greedy(graphdef, params, jnp.asarray(chunk), num_tokens=num_tokens))
    out[start:start + batch_size] = result[: out.shape[0] - start]
  return out


def window_losses(model: nnx.Module, windows, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Mean next-token loss (nats) and scored-target count of each window ``[N, T]``."""
  windows = np.asarray(windows, np.int32)
  graphdef, params = nnx.split(model, nnx.Param)
  losses = np.zeros(windows.shape[0], np.float64)
  counts = np.zeros(windows.shape[0], np.int64)
  for start, chunk in _batches(windows, batch_size):
    loss, count = _window_loss(graphdef, params, jnp.asarray(chunk))
    n = min(batch_size, windows.shape[0] - start)
    losses[start:start + n] = np.asarray(loss)[:n]
    counts[start:start + n] = np.asarray(count)[:n]
  return losses, counts


@dataclasses.dataclass(frozen=True)
class ExtractionResult:
  """Per-window audit results (arrays of length ``N``).

  Attributes:
    exact: bool, greedy continuation equals the true one (False for invalid windows).
    token_match: float, fraction of the ``m`` positions matched (NaN for invalid windows).
    edit_similarity: float, ``1 -`` normalised edit distance of continuation and truth (NaN for invalid windows).
    loss: float, mean next-token loss of the whole window (teacher forcing).
    valid: bool, the first ``k + m`` tokens hold no PAD.
    k, m: prompt and continuation lengths.
  """

  exact: np.ndarray
  token_match: np.ndarray
  loss: np.ndarray
  valid: np.ndarray
  k: int
  m: int
  edit_similarity: np.ndarray | None = None

  @property
  def num_skipped(self) -> int:
    return int((~self.valid).sum())

  def summary(self, rows: np.ndarray | None = None) -> dict:
    """Aggregates over ``rows`` (indices; all when None): rates over valid windows, loss over all."""
    rows = np.arange(self.exact.shape[0]) if rows is None else np.asarray(rows, np.int64)
    valid = self.valid[rows]
    judged = rows[valid]
    nan = float("nan")
    return {
        "num_windows": int(rows.size),
        "num_audited": int(judged.size),
        "num_skipped": int((~valid).sum()),
        "extraction_rate": float(self.exact[judged].mean()) if judged.size else nan,
        "num_extractable": int(self.exact[judged].sum()),
        "token_match": float(self.token_match[judged].mean()) if judged.size else nan,
        "mean_loss": float(self.loss[rows].mean()) if rows.size else nan,
    }


def extraction_audit(model: nnx.Module, windows, *, k: int = 32, m: int = 32, batch_size: int = 64,
                     decode_rows: np.ndarray | None = None) -> ExtractionResult:
  """Prompts each window with its first ``k`` tokens and checks the greedy ``m``-token continuation.

  Args:
    model: a Transformer.
    windows: int ``[N, T]`` training or held-out windows, ``T >= k + m``.
    k: prompt length.
    m: continuation length.
    batch_size: rows decoded at once.
    decode_rows: when given, ``exact`` comes from one teacher-forced pass for every window
      (:func:`teacher_forced`) and only these rows are greedy-decoded for ``token_match`` and
      ``edit_similarity`` (NaN elsewhere): decoding costs ``m`` forward passes.

  Returns:
    An :class:`ExtractionResult`.
  """
  windows = np.asarray(windows, np.int32)
  if windows.ndim != 2:
    raise ValueError(f"windows must be [N, T], got shape {windows.shape}")
  if k < 1 or m < 1:
    raise ValueError(f"k and m must be positive, got k={k}, m={m}")
  if windows.shape[1] < k + m:
    raise ValueError(f"windows of {windows.shape[1]} tokens are shorter than k + m = {k + m}")
  valid = np.all(windows[:, :k + m] != PAD_ID, axis=1)
  exact = np.zeros(windows.shape[0], bool)
  token_match = np.full(windows.shape[0], np.nan)
  similarity = np.full(windows.shape[0], np.nan)
  if decode_rows is not None:
    loss, forced, _ = teacher_forced(model, windows, k=k, m=m, batch_size=batch_size)
    exact = forced & valid
    rows = np.asarray(decode_rows, np.int64)
    rows = rows[valid[rows]] if rows.size else rows
  else:
    loss, _ = window_losses(model, windows, batch_size=batch_size)
    rows = np.flatnonzero(valid)
  if rows.size:
    generated = greedy_continuation(model, windows[rows, :k], m, batch_size=min(batch_size, rows.size))
    hits = generated == windows[rows, k:k + m]
    if decode_rows is None:
      exact[rows] = hits.all(axis=1)
    token_match[rows] = hits.mean(axis=1)
    similarity[rows] = edit_similarity(generated, windows[rows, k:k + m])
  return ExtractionResult(exact=exact, token_match=token_match, loss=loss, valid=valid, k=k, m=m,
                          edit_similarity=similarity)
