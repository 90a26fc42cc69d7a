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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


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
    num_tokens: tokens to add; ``P + num_tokens`` must not exceed the model's context.
    rng: PRNG key (unused when greedy).
    temperature: softmax temperature for sampling.
    greedy: take the argmax instead of sampling.

  Returns:
    int32 ``[B, P + num_tokens]``: the prompt followed by the generated tokens.
  """
  prompt = jnp.asarray(prompt, jnp.int32)
  batch, prompt_len = prompt.shape
  context = model.config.context
  total = prompt_len + num_tokens
  if prompt_len < 1:
    raise ValueError("generate needs a prompt of at least one token")
  if total > context:
    raise ValueError(f"prompt ({prompt_len}) + num_tokens ({num_tokens}) exceeds the model context {context}")
  graphdef, params = nnx.split(model, nnx.Param)
  buffer = jnp.zeros((batch, context), jnp.int32).at[:, :prompt_len].set(prompt)
  return _generate(graphdef, params, buffer, rng, jnp.float32(temperature), prompt_len=prompt_len,
                   total_len=total, greedy=greedy)
