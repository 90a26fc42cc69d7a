"""Every candidate memorization signal: names, shapes, and attention recomputed exactly as the block computes it."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.models.transformer import Transformer, TransformerConfig
from govjax.probe import stats
from govjax.probe.signals import block_attention, signal_names, window_signals


def _model():
  config = TransformerConfig(vocab_size=20, num_layers=2, width=16, num_heads=2, context=8)
  return Transformer(config, rngs=nnx.Rngs(1))


def test_block_attention_reproduces_the_blocks_attention_output():
  model = _model()
  block = model.blocks[0]
  h = model.embed_tokens(jnp.asarray(np.random.default_rng(0).integers(3, 20, (3, 8)), jnp.int32))
  weights = block_attention(block, h)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  assert float(jnp.abs(jnp.triu(weights, k=1)).max()) == 0.0  # causal
  x = block.attn_norm(h)
  value = block.attn.value(x)
  mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
  causal = nnx.make_causal_mask(jnp.ones(h.shape[:-1], dtype=jnp.int32))
  np.testing.assert_allclose(block.attn.out(mixed), block.attn(x, x, x, mask=causal, deterministic=True),
                             rtol=1e-4, atol=1e-5)


def test_window_signals_names_shapes_and_consistency():
  model = _model()
  windows = np.random.default_rng(1).integers(3, 20, (5, 8))
  values = window_signals(model, windows, batch_size=2)
  assert list(values) == signal_names(2)
  assert all(v.shape == (5,) and np.isfinite(v).all() for v in values.values())
  logits, hidden = model(jnp.asarray(windows, jnp.int32), return_hidden=True)
  np.testing.assert_allclose(values["predictive_entropy"], stats.predictive_entropy(logits, windows), rtol=1e-5)
  raw = np.asarray(stats.representation_entropy(hidden[1], center=False))
  np.testing.assert_allclose(values["rep_u1"], raw / np.log(8), rtol=1e-5)
  np.testing.assert_allclose(values["zlib_ratio"], stats.zlib_ratio(values["loss"], windows), rtol=1e-6)
  assert ((values["attn1"] >= 0) & (values["attn1"] <= np.log(8))).all()
