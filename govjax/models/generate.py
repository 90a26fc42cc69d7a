"""Autoregressive generation (sampling or greedy) from a :class:`~govjax.models.transformer.Transformer`.

The whole loop runs in one ``jax.jit``: a fixed ``[B, context]`` buffer is filled position by position; causal
attention makes the not-yet-written positions irrelevant. Used by ``govjax sample`` and by the extraction audit
(greedy continuation of training prefixes).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=9, num_layers=1, width=16, num_heads=2, context=12),
  ...                     rngs=nnx.Rngs(0))
  >>> out = generate(model, jnp.ones((2, 4), jnp.int32), num_tokens=6, rng=jax.random.PRNGKey(0))
  >>> out.shape
  (2, 10)

Past the context, :func:`generate_sliding` keeps generating with a sliding window (the last ``context - 1``
tokens or fewer, starting at a frame boundary):

  >>> long = generate_sliding(model, jnp.ones((2, 4), jnp.int32), num_tokens=36, rng=jax.random.PRNGKey(0),
  ...                         align=4)
  >>> long.shape, bool((long[:, :12] == generate(model, jnp.ones((2, 4), jnp.int32), num_tokens=8,
  ...                                             rng=jax.random.PRNGKey(0))).all())
  ((2, 40), True)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from govjax.core.errors import UserError

__all__ = ["GenerationError", "check_temperature", "generate", "generate_sliding"]


class GenerationError(UserError, ValueError):
  """An invalid generation request (temperature, number of tokens or samples, prompt); exit code 2 like a usage
  error."""

  exit_code = 2


def check_temperature(temperature: float) -> float:
  """``temperature`` as a float if it is finite and ``>= 0`` (0 means greedy decoding).

  Raises:
    GenerationError: a negative, NaN or infinite temperature, or one that is not a number.

  Example:
    >>> check_temperature(0)
    0.0
  """
  try:
    value = float(temperature)
  except (TypeError, ValueError):
    raise GenerationError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}") from None
  if not math.isfinite(value) or value < 0:
    raise GenerationError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
  return value


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len", "total_len", "greedy"))
def _generate(graphdef, params, buffer, rng, temperature, *, prompt_len, total_len, greedy):
  model = nnx.merge(graphdef, params)

  def body(t, carry):
    buffer, rng = carry
    logits = model(buffer)[:, t - 1].astype(jnp.float32)
    rng, sub = jax.random.split(rng)
    if greedy:
      token = jnp.argmax(logits, axis=-1)
    else:
      token = jax.random.categorical(sub, logits / temperature, axis=-1)
    return buffer.at[:, t].set(token.astype(buffer.dtype)), rng

  buffer, _ = jax.lax.fori_loop(prompt_len, total_len, body, (buffer, rng))
  return buffer[:, :total_len]


def generate(
    model: nnx.Module,
    prompt: jax.Array,
    *,
    num_tokens: int,
    rng: jax.Array,
    temperature: float = 1.0,
    greedy: bool = False,
) -> jax.Array:
  """Continues ``prompt`` by ``num_tokens`` tokens.

  Args:
    model: a Transformer.
    prompt: int ``[B, P]`` with ``P >= 1``.
    num_tokens: tokens to add (``>= 0``); ``P + num_tokens`` must not exceed the model's context (use
      :func:`generate_sliding` to go further).
    rng: PRNG key (unused when greedy).
    temperature: softmax temperature for sampling, finite and ``>= 0``; 0 means greedy.
    greedy: take the argmax instead of sampling.

  Returns:
    int32 ``[B, P + num_tokens]``: the prompt followed by the generated tokens.

  Raises:
    GenerationError: a negative ``num_tokens`` or temperature, a non-finite temperature.
    ValueError: an empty prompt, or more tokens than the context holds.
  """
  temperature = check_temperature(temperature)
  greedy = greedy or temperature == 0
  prompt = jnp.asarray(prompt, jnp.int32)
  if prompt.ndim != 2:
    raise ValueError(f"generate needs a [B, P] prompt, got shape {prompt.shape}")
  batch, prompt_len = prompt.shape
  context = model.config.context
  if int(num_tokens) < 0:
    raise GenerationError(f"num_tokens must be >= 0, got {num_tokens}")
  total = prompt_len + int(num_tokens)
  if prompt_len < 1:
    raise ValueError("generate needs a prompt of at least one token")
  if total > context:
    raise ValueError(f"prompt ({prompt_len}) + num_tokens ({num_tokens}) exceeds the model context {context}")
  graphdef, params = nnx.split(model, nnx.Param)
  buffer = jnp.zeros((batch, context), jnp.int32).at[:, :prompt_len].set(prompt)
  return _generate(graphdef, params, buffer, rng, jnp.float32(temperature if temperature > 0 else 1.0),
                   prompt_len=prompt_len, total_len=total, greedy=greedy)


def generate_sliding(
    model: nnx.Module,
    prompt: jax.Array,
    *,
    num_tokens: int,
    rng: jax.Array,
    temperature: float = 1.0,
    greedy: bool = False,
    align: int = 1,
) -> jax.Array:
  """Continues ``prompt`` by ``num_tokens`` tokens, past the model's context with a sliding window.

  Generation runs in chunks of :func:`generate` calls. Each chunk's prompt is the end of the sequence so far,
  at most ``context - 1`` tokens and starting at a multiple of ``align`` (a frame boundary: position 0 of the
  window is always the first voice of a frame, as in training), so every new token sees as much of the past as
  the context allows. Chunk ``c`` samples with ``rng`` for ``c = 0`` and ``jax.random.fold_in(rng, c)`` after,
  so when ``P + num_tokens`` fits the context the result is exactly ``generate(model, prompt, ...)``, and a long
  sample begins with the short sample of the same seed.

  Args:
    model: a Transformer.
    prompt: int ``[B, P]`` with ``P >= 1`` (longer than the context is allowed: its end is the first window).
    num_tokens: tokens to add (``>= 0``).
    rng: PRNG key (unused when greedy).
    temperature: softmax temperature, finite and ``>= 0``; 0 means greedy.
    greedy: take the argmax instead of sampling.
    align: windows start at multiples of this many tokens (the tokens per frame); ``context > align``.

  Returns:
    int32 ``[B, P + num_tokens]``: the prompt followed by the generated tokens.

  Raises:
    GenerationError: a negative ``num_tokens`` or temperature, a non-finite temperature, ``align < 1`` or a
      context too short to slide frame-aligned windows (``context <= align``).
  """
  temperature = check_temperature(temperature)
  context = int(model.config.context)
  align = int(align)
  if align < 1 or context <= align:
    raise GenerationError(f"generate_sliding needs 1 <= align < context, got align {align} for context {context}")
  if int(num_tokens) < 0:
    raise GenerationError(f"num_tokens must be >= 0, got {num_tokens}")
  sequence = jnp.asarray(prompt, jnp.int32)
  if sequence.ndim != 2 or sequence.shape[1] < 1:
    raise ValueError(f"generate_sliding needs a [B, P >= 1] prompt, got shape {sequence.shape}")
  target = sequence.shape[1] + int(num_tokens)
  chunk = 0
  while sequence.shape[1] < target:
    length = sequence.shape[1]
    start = max(0, -(-(length - (context - 1)) // align) * align)
    window = sequence[:, start:]
    count = min(target - length, context - window.shape[1])
    key = rng if chunk == 0 else jax.random.fold_in(rng, chunk)
    out = generate(model, window, num_tokens=count, rng=key, temperature=temperature, greedy=greedy)
    sequence = jnp.concatenate([sequence, out[:, window.shape[1]:]], axis=1)
    chunk += 1
  return sequence
