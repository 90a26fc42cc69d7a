"""Generation within and past the model's context (sliding, frame-aligned windows) and its argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.core.errors import UserError
from govjax.models.generate import GenerationError, generate, generate_sliding
from govjax.models.transformer import Transformer, TransformerConfig

VOCAB = 11


def make_model(context: int) -> Transformer:
  return Transformer(TransformerConfig(vocab_size=VOCAB, num_layers=1, width=16, num_heads=2, context=context),
                     rngs=nnx.Rngs(1))


def reference_greedy(model, prompt: list[int], num_tokens: int, align: int) -> list[int]:
  """Token by token: the window is the end of the sequence, at most context - 1 tokens, from a multiple of align."""
  context = model.config.context
  seq = list(prompt)
  for _ in range(num_tokens):
    start = 0
    while len(seq) - start > context - 1:
      start += align
    logits = model(jnp.array([seq[start:]], jnp.int32))[0, -1]
    seq.append(int(jnp.argmax(logits)))
  return seq


@pytest.mark.parametrize("context", [12, 14])
def test_sliding_greedy_matches_a_token_by_token_frame_aligned_window(context):
  model = make_model(context)
  prompt = [3, 4, 5, 6, 7, 8, 9, 10]
  out = generate_sliding(model, jnp.array([prompt], jnp.int32), num_tokens=30, rng=jax.random.PRNGKey(0),
                         greedy=True, align=4)
  assert out.shape == (1, 38)
  assert out[0].tolist() == reference_greedy(model, prompt, 30, align=4)


def test_sliding_equals_generate_within_the_context_and_extends_it():
  model = make_model(16)
  prompt = jnp.array([[1, 2, 3, 4], [5, 6, 7, 8]], jnp.int32)
  key = jax.random.PRNGKey(3)
  short = generate(model, prompt, num_tokens=12, rng=key, temperature=0.8)
  np.testing.assert_array_equal(generate_sliding(model, prompt, num_tokens=12, rng=key, temperature=0.8, align=4),
                                short)
  long = np.asarray(generate_sliding(model, prompt, num_tokens=100, rng=key, temperature=0.8, align=4))
  assert long.shape == (2, 104)
  np.testing.assert_array_equal(long[:, :16], short)  # the first window is the within-context sample
  assert long.dtype == np.int32 and long.min() >= 0 and long.max() < VOCAB


def test_sliding_accepts_a_prompt_longer_than_the_context():
  model = make_model(8)
  prompt = jnp.arange(1, 11, dtype=jnp.int32)[None] % VOCAB
  out = generate_sliding(model, prompt, num_tokens=6, rng=jax.random.PRNGKey(0), greedy=True, align=4)
  assert out[0, :10].tolist() == prompt[0].tolist()
  assert out[0].tolist() == reference_greedy(model, prompt[0].tolist(), 6, align=4)


def test_temperature_zero_is_greedy():
  model = make_model(12)
  prompt = jnp.array([[3, 4, 5]], jnp.int32)
  greedy = generate(model, prompt, num_tokens=5, rng=jax.random.PRNGKey(0), greedy=True)
  np.testing.assert_array_equal(generate(model, prompt, num_tokens=5, rng=jax.random.PRNGKey(7), temperature=0),
                                greedy)


@pytest.mark.parametrize("temperature", [-1.0, float("nan"), float("inf"), "hot"])
def test_invalid_temperature_is_a_user_error(temperature):
  model = make_model(12)
  for fn in (generate, generate_sliding):
    with pytest.raises(GenerationError, match="temperature must be") as caught:
      fn(model, jnp.ones((1, 4), jnp.int32), num_tokens=2, rng=jax.random.PRNGKey(0), temperature=temperature)
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)


def test_invalid_lengths_are_errors():
  model = make_model(12)
  with pytest.raises(GenerationError, match="num_tokens must be >= 0"):
    generate(model, jnp.ones((1, 4), jnp.int32), num_tokens=-1, rng=jax.random.PRNGKey(0))
  with pytest.raises(GenerationError, match="num_tokens must be >= 0"):
    generate_sliding(model, jnp.ones((1, 4), jnp.int32), num_tokens=-1, rng=jax.random.PRNGKey(0))
  with pytest.raises(GenerationError, match="align < context"):
    generate_sliding(model, jnp.ones((1, 4), jnp.int32), num_tokens=20, rng=jax.random.PRNGKey(0), align=12)
