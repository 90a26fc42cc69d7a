"""Goldfish mask semantics (hash of the preceding h tokens) and the goldfish loss against the plain loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.baselines.goldfish import context_hash, goldfish_loss, goldfish_mask
from govjax.core.losses import token_losses
from govjax.models.transformer import Transformer, TransformerConfig
from govjax.train.step import plain_loss

V, T = 11, 16


def _fmix32(x):
  x ^= x >> 16
  x = (x * 0x85EBCA6B) & 0xFFFFFFFF
  x ^= x >> 13
  x = (x * 0xC2B2AE35) & 0xFFFFFFFF
  return x ^ (x >> 16)


def _reference_mask(row, *, k, h, seed):
  """Pure-Python goldfish mask of one row: drop token j when hash(row[j-h:j]) % k == 0."""
  out = []
  for j in range(len(row)):
    if j < h:
      out.append(1.0)
      continue
    acc = _fmix32(seed)
    for token in row[j - h:j]:
      acc = _fmix32((acc * 0x9E3779B1 + int(token) + 1) & 0xFFFFFFFF)
    out.append(0.0 if acc % k == 0 else 1.0)
  return np.array(out, np.float32)


def test_known_small_case_matches_reference():
  tokens = np.array([[5, 6, 7, 8, 9, 5, 6, 7, 3, 4], [1, 1, 1, 1, 2, 2, 2, 2, 0, 0]], np.int32)
  mask = np.asarray(goldfish_mask(jnp.asarray(tokens), k=3, h=2, seed=7))
  expected = np.stack([_reference_mask(row, k=3, h=2, seed=7) for row in tokens])
  np.testing.assert_array_equal(mask, expected)
  np.testing.assert_array_equal(mask[:, :2], 1.0)  # no full context yet: always counted
  # row 0 repeats the context (5, 6) at positions 2 and 7, so both targets get the same decision
  assert mask[0, 2] == mask[0, 7]
  assert ((mask == 0) | (mask == 1)).all()


def test_identical_windows_identical_masks():
  rng = np.random.default_rng(0)
  row = rng.integers(3, V, size=64)
  tokens = jnp.asarray(np.stack([row, row, rng.integers(3, V, size=64)]), jnp.int32)
  mask = goldfish_mask(tokens, k=4, h=5, seed=0)
  np.testing.assert_array_equal(mask[0], mask[1])
  assert not np.array_equal(mask[0], mask[2])


def test_shift_invariance_depends_only_on_context():
  rng = np.random.default_rng(1)
  h, shift = 6, 9
  passage = rng.integers(3, V, size=80)
  prefix = rng.integers(3, V, size=shift)
  a = goldfish_mask(jnp.asarray(passage[None], jnp.int32), k=3, h=h, seed=2)[0]
  b = goldfish_mask(jnp.asarray(np.concatenate([prefix, passage])[None], jnp.int32), k=3, h=h, seed=2)[0]
  # token j of the passage has the same h-token context in both rows once j >= h
  np.testing.assert_array_equal(np.asarray(a[h:]), np.asarray(b[shift + h:]))
  hashes, valid = context_hash(jnp.asarray(passage[None], jnp.int32), h=h, seed=2)
  assert not bool(valid[0, h - 1]) and bool(valid[0, h])
  assert hashes.dtype == jnp.uint32


def test_seed_changes_the_choice():
  tokens = jnp.asarray(np.random.default_rng(3).integers(3, V, size=(4, 256)), jnp.int32)
  a = goldfish_mask(tokens, k=4, h=3, seed=0)
  b = goldfish_mask(tokens, k=4, h=3, seed=1)
  assert not np.array_equal(a, b)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_drop_rate_is_one_over_k(k):
  tokens = jnp.asarray(np.random.default_rng(k).integers(3, 1000, size=(16, 1024)), jnp.int32)
  h = 13
  mask = np.asarray(goldfish_mask(tokens, k=k, h=h, seed=0))[:, h:]
  rate = 1.0 - mask.mean()
  n = mask.size
  assert abs(rate - 1.0 / k) < 5 * np.sqrt((1 / k) * (1 - 1 / k) / n)


def test_disabled_and_invalid_arguments():
  tokens = jnp.ones((2, 8), jnp.int32)
  np.testing.assert_array_equal(goldfish_mask(tokens, k=None, h=3), np.ones((2, 8)))
  with pytest.raises(ValueError, match="k must be >= 2"):
    goldfish_mask(tokens, k=1, h=3)
  with pytest.raises(ValueError, match="h"):
    goldfish_loss(k=4, h=0)


def test_mask_is_jittable():
  tokens = jnp.asarray(np.random.default_rng(5).integers(3, V, size=(2, T)), jnp.int32)
  jitted = jax.jit(lambda t: goldfish_mask(t, k=4, h=3, seed=1))
  np.testing.assert_array_equal(jitted(tokens), goldfish_mask(tokens, k=4, h=3, seed=1))


@pytest.fixture(scope="module")
def model():
  cfg = TransformerConfig(vocab_size=V, num_layers=1, width=16, num_heads=2, context=T)
  return Transformer(cfg, rngs=nnx.Rngs(0))


def _run(loss_fn, model, batch, group_mask, **kwargs):
  """``loss_fn`` on ``model`` under jit (eager transformer calls are slow)."""
  graphdef, params = nnx.split(model, nnx.Param)
  fn = jax.jit(lambda p, b, m: loss_fn(nnx.merge(graphdef, p), b, m, jax.random.PRNGKey(0), **kwargs))
  return fn(params, batch, group_mask)


def _batch(seed=0):
  tokens = np.random.default_rng(seed).integers(3, V, size=(3, T)).astype(np.int32)
  tokens[2, -3:] = 0  # PAD tail: never counted
  return {"tokens": jnp.asarray(tokens)}


def test_loss_equals_plain_when_disabled(model):
  batch, mask = _batch(), jnp.ones((3, 3))
  plain, plain_aux = _run(plain_loss, model, batch, mask)
  for loss_fn in (goldfish_loss(k=None), goldfish_loss(k=2**31, h=4)):
    loss, aux = _run(loss_fn, model, batch, mask)
    chex.assert_trees_all_close(loss, plain, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(aux["per_example_loss"], plain_aux["per_example_loss"], atol=1e-6, rtol=1e-6)
    np.testing.assert_array_equal(aux["contributors"], mask.sum(0))


def test_loss_is_masked_mean_and_returns_hidden(model):
  batch, group_mask = _batch(1), jnp.ones((3, 3)).at[0, 0].set(0.0)
  k, h = 3, 2
  loss, aux = _run(goldfish_loss(k=k, h=h, seed=4), model, batch, group_mask, return_hidden=True)
  logits = aux["logits"]
  losses, weights = token_losses(logits, batch["tokens"])
  keep = np.asarray(goldfish_mask(batch["tokens"], k=k, h=h, seed=4))[:, 1:] * np.asarray(weights)
  expected = (np.asarray(losses) * keep).sum(1) / np.maximum(keep.sum(1), 1)
  np.testing.assert_allclose(aux["per_example_loss"], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss, expected.mean(), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(aux["token_count"], keep.sum(1))
  assert keep.sum() < np.asarray(weights).sum()  # something was dropped
  np.testing.assert_array_equal(aux["contributors"], [2.0, 3.0, 3.0])
  assert len(aux["hidden"]) == 2 and aux["logits"].shape == (3, T, V)


def test_dropped_tokens_get_no_gradient(model):
  """The loss's gradient w.r.t. the logits vanishes exactly at dropped targets."""
  batch = _batch(2)
  k, h = 2, 2
  loss_fn = goldfish_loss(k=k, h=h)
  logits = jax.random.normal(jax.random.PRNGKey(1), (3, T, V))

  class FixedLogits(nnx.Module):
    def __init__(self, value):
      self.value = value

    def __call__(self, tokens, return_hidden=False):
      return self.value

  grad = jax.jit(jax.grad(lambda lg: loss_fn(FixedLogits(lg), batch, jnp.ones((3, 3)), None)[0]))(logits)
  keep = np.asarray(goldfish_mask(batch["tokens"], k=k, h=h))[:, 1:] * (np.asarray(batch["tokens"])[:, 1:] != 0)
  row_norm = np.abs(np.asarray(grad[:, :-1])).sum(-1)
  assert (row_norm[keep == 0] == 0).all()
  assert (row_norm[keep == 1] > 0).all()
