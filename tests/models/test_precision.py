"""Mixed precision and rematerialisation: routed gradients against the float32 per-example reference.

Documented tolerance: with ``dtype="bfloat16"`` (bf16 compute, float32 master weights) the depth and per-group
routed gradients agree with the float32 exact (per-example) reference to ``max |a - b| / max |b| <= 5e-2``;
rematerialisation changes nothing beyond float rounding (``<= 1e-5``).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.models.transformer import Transformer, TransformerConfig
from govjax.routing.loss import make_routed_loss

BF16_TOLERANCE = 5e-2
CONFIG = TransformerConfig(vocab_size=11, num_layers=2, width=32, num_heads=2, context=16)


def _grads(config, mode, tokens, mask):
  graphdef, params = nnx.split(Transformer(config, rngs=nnx.Rngs(0)), nnx.Param)
  loss_fn = make_routed_loss(mode, microbatch=4)
  grad = jax.jit(jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p), {"tokens": tokens}, mask, None)[0]))
  return grad(params)


def _rel_err(a, b) -> float:
  pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
  return max(np.abs(x - y).max() for x, y in pairs) / max(np.abs(y).max() for _, y in pairs)


@pytest.fixture(scope="module")
def inputs():
  tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 16), 1, 11)
  mask = jnp.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]], jnp.float32)
  return tokens, mask, _grads(CONFIG, "exact", tokens, mask)


@pytest.mark.parametrize("mode", ["depth", "per_group"])
def test_bf16_routed_gradients_within_tolerance_of_fp32_reference(inputs, mode):
  tokens, mask, reference = inputs
  grads = _grads(dataclasses.replace(CONFIG, dtype="bfloat16"), mode, tokens, mask)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(grads))  # float32 master weights and gradients
  err = _rel_err(grads, reference)
  assert 0 < err <= BF16_TOLERANCE


def test_remat_equals_stored_activations(inputs):
  tokens, mask, reference = inputs
  grads = _grads(dataclasses.replace(CONFIG, remat=True), "per_group", tokens, mask)
  assert _rel_err(grads, reference) <= 1e-5


def test_bad_dtype_is_refused():
  with pytest.raises(ValueError, match="dtype"):
    dataclasses.replace(CONFIG, dtype="float16")
