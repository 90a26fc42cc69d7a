import numpy as np
import pytest
from flax import nnx

from govjax.models.classifier import MLPClassifier, classifier_group_of_path, example_cross_entropy
from govjax.provenance.featurize import FeatureConfig, Featurizer, project, transformer_featurizer
from govjax.provenance.record import RunCheckpoints


@pytest.fixture(scope="module")
def classifier():
  model = MLPClassifier(16, (16,), 4, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  rng = np.random.default_rng(0)
  inputs = {"x": rng.normal(size=(24, 16)).astype(np.float32), "y": rng.integers(0, 4, 24).astype(np.int32)}
  return graphdef, params, inputs


def _featurizer(graphdef, **kwargs):
  return Featurizer(graphdef, example_cross_entropy, group_of_path=classifier_group_of_path, num_groups=2,
                    config=FeatureConfig(microbatch=32, **kwargs))


def test_projection_approximates_exact_tracin(classifier):
  graphdef, params, inputs = classifier
  feat = _featurizer(graphdef, k=512)
  grads = feat.per_example_grads(params, inputs)
  flat = np.concatenate([g.reshape(24, -1) for _, g in sorted(grads.items())], axis=1)
  exact = flat @ flat.T
  phi = feat(params, inputs)
  approx = phi @ phi.T
  # the projection of the concatenated gradient is the sum of per-leaf projections.
  np.testing.assert_allclose(phi, np.asarray(project(grads, feat.config)), rtol=1e-4, atol=1e-5)
  assert np.corrcoef(exact.ravel(), approx.ravel())[0, 1] > 0.9
  off = ~np.eye(24, dtype=bool)
  assert np.corrcoef(exact[off], approx[off])[0, 1] > 0.9
  # same seed, same projection; another seed, another one.
  np.testing.assert_array_equal(phi, _featurizer(graphdef, k=512)(params, inputs))
  assert not np.allclose(phi, _featurizer(graphdef, k=512, seed=1)(params, inputs))


def test_dense_projection_agrees_in_expectation(classifier):
  graphdef, params, inputs = classifier
  phi = _featurizer(graphdef, k=512, projection="gaussian")(params, inputs)
  feat = _featurizer(graphdef, k=512)
  grads = feat.per_example_grads(params, inputs)
  flat = np.concatenate([g.reshape(24, -1) for _, g in sorted(grads.items())], axis=1)
  assert np.corrcoef((flat @ flat.T).ravel(), (phi @ phi.T).ravel())[0, 1] > 0.9


def test_depth_mask_zeroes_untrained_groups(tiny_run):
  run = RunCheckpoints(tiny_run.workdir)
  ckpt = run.load(8)
  feat = transformer_featurizer(run.graphdef, num_layers=1, config=FeatureConfig(k=64, microbatch=8))
  tokens = np.asarray([tiny_run.data.batches.train[0]["tokens"][i] for i in range(4)])
  # depth 3 (all groups), depth 2, depth 1 (output head only), depth 0 (never trained).
  mask = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], np.float32)
  per_group = feat(ckpt.params, {"tokens": tokens}, mask, per_group=True)
  assert per_group.shape == (4, 3, 64)
  for row, depth in enumerate((3, 2, 1, 0)):
    below = 3 - depth
    assert np.all(per_group[row, :below] == 0.0), f"depth {depth}: credit through groups below {below}"
    assert np.all(np.abs(per_group[row, below:]).sum(axis=-1) > 0)
  full = feat(ckpt.params, {"tokens": tokens}, np.ones((4, 3), np.float32), per_group=True)
  np.testing.assert_array_equal(per_group[1, 1:], full[1, 1:])
  np.testing.assert_allclose(feat(ckpt.params, {"tokens": tokens}, mask), per_group.sum(axis=1), rtol=1e-5,
                             atol=1e-6)


def test_bad_config():
  with pytest.raises(ValueError, match="projection"):
    FeatureConfig(projection="fft")
  with pytest.raises(ValueError, match="FeatureConfig.k"):
    FeatureConfig(k=0)
