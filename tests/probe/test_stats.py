"""Probe statistics against plain NumPy references."""

import numpy as np
import pytest

from govjax.probe import stats


def _softmax_entropy(logits):
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  return -(p * np.log(p)).sum(-1)


def test_predictive_entropy_matches_numpy_and_skips_pad_targets():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 6, 5)).astype(np.float32)
  tokens = rng.integers(1, 5, size=(3, 6))
  tokens[1, 4:] = 0
  got = np.asarray(stats.predictive_entropy(logits, tokens))
  ent = _softmax_entropy(logits[:, :-1].astype(np.float64))
  weights = tokens[:, 1:] != 0
  want = (ent * weights).sum(1) / weights.sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 3, 7)])
def test_representation_entropy_is_renyi2_of_singular_spectrum(shape):
  rng = np.random.default_rng(1)
  hidden = rng.normal(size=shape).astype(np.float32)
  tokens = rng.integers(1, 5, size=shape[:2])
  tokens[0, -1] = 0
  got = np.asarray(stats.representation_entropy(hidden, stats.token_weights(tokens)))
  for b in range(shape[0]):
    h = hidden[b][tokens[b] != 0].astype(np.float64)
    h = h - h.mean(0)
    s = np.linalg.svd(h, compute_uv=False)
    p = s**2 / (s**2).sum()
    np.testing.assert_allclose(got[b], -np.log((p**2).sum()), rtol=1e-4, atol=1e-5)


def test_representation_entropy_extremes():
  flat = np.eye(4, dtype=np.float32)[None]
  rank_one = np.outer(np.arange(1, 5), np.ones(4)).astype(np.float32)[None]
  np.testing.assert_allclose(stats.representation_entropy(flat, center=False), [np.log(4)], rtol=1e-6)
  np.testing.assert_allclose(stats.representation_entropy(rank_one, center=False), [0.0], atol=1e-6)
  np.testing.assert_allclose(stats.representation_entropy(np.zeros((1, 3, 2), np.float32)), [0.0])


def test_example_statistics_columns():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 4, 6)).astype(np.float32)
  tokens = rng.integers(1, 6, size=(2, 4))
  out = np.asarray(stats.example_statistics(logits, tokens, rng.normal(size=(2, 4, 3)).astype(np.float32)))
  assert out.shape == (2, 3)
  logp = logits[:, :-1] - np.log(np.exp(logits[:, :-1]).sum(-1, keepdims=True))
  want_loss = -np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0].mean(1)
  np.testing.assert_allclose(out[:, stats.statistic_index("loss")], want_loss, rtol=1e-5)
  assert np.isnan(np.asarray(stats.example_statistics(logits, tokens))[:, 2]).all()
  with pytest.raises(ValueError, match="unknown probe statistic"):
    stats.statistic_index("nope")


def test_min_k_logprob_averages_the_lowest_share_of_scored_tokens():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 6, 5)).astype(np.float32)
  tokens = rng.integers(1, 5, size=(2, 6))
  tokens[1, 4:] = 0
  got = np.asarray(stats.min_k_logprob(logits, tokens, fraction=0.4))
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  for row, scored in ((0, 5), (1, 3)):
    target = np.sort([logp[row, t, tokens[row, t + 1]] for t in range(scored)])
    keep = int(np.ceil(0.4 * scored))
    np.testing.assert_allclose(got[row], target[:keep].mean(), rtol=1e-5)


def test_attention_entropy_uniform_and_one_hot():
  uniform = np.full((1, 2, 3, 4), 0.25, np.float32)
  one_hot = np.zeros((1, 2, 3, 4), np.float32)
  one_hot[..., 0] = 1.0
  np.testing.assert_allclose(stats.attention_entropy(uniform), [np.log(4)], rtol=1e-6)
  np.testing.assert_allclose(stats.attention_entropy(one_hot), [0.0], atol=1e-6)
  mixed = np.concatenate([uniform[:, :, :1], one_hot[:, :, 1:]], axis=2)
  np.testing.assert_allclose(stats.attention_entropy(mixed, np.array([[1.0, 0.0, 0.0]])), [np.log(4)], rtol=1e-6)


def test_zlib_size_is_lower_for_repetitive_rows_and_ratio_divides_loss():
  repetitive = np.tile([3, 4], 32)
  varied = np.random.default_rng(0).integers(3, 80, 64)
  bits = stats.zlib_bits_per_token(np.stack([repetitive, varied]))
  assert bits[0] < bits[1] / 3
  np.testing.assert_allclose(stats.zlib_ratio([np.log(2.0), np.log(2.0)], np.stack([repetitive, varied])),
                             1.0 / bits, rtol=1e-9)


def test_normalized_representation_entropy_is_in_unit_interval():
  h = np.random.default_rng(0).normal(size=(2, 8, 4)).astype(np.float32)
  weights = np.ones((2, 8), np.float32)
  weights[1, 6:] = 0
  raw = np.asarray(stats.representation_entropy(h, weights, center=False))
  norm = np.asarray(stats.representation_entropy(h, weights, center=False, normalize=True))
  np.testing.assert_allclose(norm, raw / np.log(4), rtol=1e-5)  # min(n, D) = 4 for both rows
  assert ((norm >= 0) & (norm <= 1 + 1e-6)).all()


def test_example_statistics_uncentred_representation_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5)).astype(np.float32)
  tokens = rng.integers(1, 5, size=(2, 4))
  hidden = rng.normal(1.0, 1.0, size=(2, 4, 3)).astype(np.float32)
  out = np.asarray(stats.example_statistics(logits, tokens, hidden, center=False))
  np.testing.assert_allclose(out[:, 2], stats.representation_entropy(hidden, center=False), rtol=1e-6)
