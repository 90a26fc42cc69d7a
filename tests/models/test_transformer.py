import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.models.generate import generate
from govjax.models.transformer import Transformer, TransformerConfig


@pytest.fixture(scope="module")
def model():
  return Transformer(TransformerConfig(vocab_size=11, num_layers=2, width=16, num_heads=2, context=12),
                     rngs=nnx.Rngs(0))


def test_config_validation():
  with pytest.raises(ValueError, match="not divisible"):
    TransformerConfig(vocab_size=5, num_layers=1, width=10, num_heads=3, context=4)
  with pytest.raises(ValueError, match="num_layers"):
    TransformerConfig(vocab_size=5, num_layers=0, width=8, num_heads=2, context=4)


def test_causal(model):
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 0, 11)
  changed = tokens.at[:, 7:].set((tokens[:, 7:] + 1) % 11)
  a, b = model(tokens), model(changed)
  np.testing.assert_allclose(a[:, :7], b[:, :7], atol=1e-6)
  assert not np.allclose(a[:, 7:], b[:, 7:])


def test_gate_sees_every_group_and_hidden_matches(model):
  seen = []

  def gate(index, h):
    seen.append(index)
    return h

  tokens = jnp.ones((2, 12), jnp.int32)
  logits, hidden = model(tokens, gate=gate, return_hidden=True)
  assert seen == [0, 1, 2] and len(hidden) == 3
  np.testing.assert_allclose(model.head(hidden[-1]), logits, atol=1e-6)
  np.testing.assert_allclose(hidden[0], model.embed_tokens(tokens), atol=1e-6)


def test_stop_gradient_gate_cuts_lower_groups(model):
  graphdef, params = nnx.split(model, nnx.Param)
  tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 12), 1, 11)

  def loss(p):
    m = nnx.merge(graphdef, p)
    gate = lambda i, h: jax.lax.stop_gradient(h) if i == 1 else h
    return m(tokens, gate=gate).sum()

  grads = nnx.to_flat_state(jax.grad(loss)(params))
  for path, g in grads:
    zero = not np.any(np.asarray(g[...]))
    below = path[0] in ("embed", "pos_embed") or (path[0] == "blocks" and path[1] == 0)
    assert zero == below, path


def test_context_overflow_is_an_error(model):
  with pytest.raises(ValueError, match="exceeds the model context"):
    model(jnp.ones((1, 13), jnp.int32))
  with pytest.raises(ValueError, match="exceeds the model context"):
    generate(model, jnp.ones((1, 4), jnp.int32), num_tokens=9, rng=jax.random.PRNGKey(0))


def test_greedy_generation_matches_stepwise_argmax(model):
  prompt = jnp.array([[3, 4, 5]], jnp.int32)
  out = generate(model, prompt, num_tokens=4, rng=jax.random.PRNGKey(0), greedy=True)
  seq = [3, 4, 5]
  for _ in range(4):
    seq.append(int(jnp.argmax(model(jnp.array([seq]))[0, -1])))
  assert out[0].tolist() == seq
