"""Normalised features keep the depth weighting: a head-only example cannot outrank its full-depth twin."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.checkpoint import CheckpointParams
from govjax.provenance.featurize import FeatureConfig, Featurizer, normalize_rows
from govjax.provenance.index import build_index
from govjax.provenance.query import Tracer
from govjax.provenance.scorers import trak_scores


class TrunkHead(nnx.Module):
  """A linear "model" with a 3-coordinate trunk (group 0) and a 1-coordinate head (group 1)."""

  def __init__(self):
    self.trunk = nnx.Param(jnp.zeros(3))
    self.head = nnx.Param(jnp.zeros(1))


def linear_loss(model, inputs):
  # The loss gradient is -x: the trunk part is x[:3], the head part x[3:].
  return -(inputs["x"][:3] @ model.trunk[...] + inputs["x"][3:] @ model.head[...])


def group_of_path(path):
  return {"trunk": 0, "head": 1}[path[0]]


def build(normalize: bool, precondition: bool = False):
  graphdef, params = nnx.split(TrunkHead(), nnx.Param)
  featurizer = Featurizer(graphdef, linear_loss, group_of_path=group_of_path, num_groups=2,
                          config=FeatureConfig(k=4096, projection="gaussian", seed=5, normalize=normalize,
                                               precondition=precondition, query_precondition=False))
  # Adam's second moment: the head saw large gradients (its steps are small), the trunk small ones.
  nu = {"trunk": np.full(3, 0.25, np.float32), "head": np.full(1, 4.0, np.float32)}
  ckpt = CheckpointParams(step=1, learning_rate=1.0, params=params, adam_nu=nu, adam_count=10 ** 6)
  example = np.array([1.0, 0.0, 0.0, 0.1], np.float32)  # trunk norm 1, head norm 0.1
  inputs = {"x": np.stack([example, example])}  # two equal examples ...
  masks = np.array([[[1.0, 1.0], [0.0, 1.0]]], np.float32)  # ... one at full depth, one only in the head
  index = build_index(featurizer, [ckpt], inputs, masks, example_work=np.array([0, 1]),
                      works=[{"work_id": "full-depth"}, {"work_id": "head-only"}])
  return featurizer, ckpt, index, inputs, masks


# A query explained by the trunk: <q, g> = 1.0 (trunk) + 0.2 (head) for the full-depth example.
QUERY = {"x": np.array([[1.0, 0.0, 0.0, 2.0]], np.float32)}


def test_head_only_example_cannot_outrank_its_full_depth_twin():
  featurizer, ckpt, index, _, _ = build(normalize=True)
  scores = Tracer(index, featurizer, [ckpt]).influence(QUERY)[0]
  full, head = scores
  assert full > head
  # Both divided by the norm of the unmasked gradient (sqrt(1.01)), the query by its own (sqrt(5)).
  np.testing.assert_allclose(scores, np.array([1.2, 0.2]) / np.sqrt(1.01) / np.sqrt(5.0), rtol=0.05)
  # Unnormalised influence orders them the same way.
  featurizer, ckpt, index, _, _ = build(normalize=False)
  np.testing.assert_allclose(Tracer(index, featurizer, [ckpt]).influence(QUERY)[0], [1.2, 0.2], rtol=0.05)


def test_the_default_tracin_adam_index_keeps_the_full_depth_twin_ahead():
  # Training features are Adam steps g / sqrt(nu) (trunk x2, head x0.5), queries raw: the twins differ by the trunk
  # part alone, 1.0 * 2 = 2.0, and the head part is 0.2 * 0.5 = 0.1.
  featurizer, ckpt, index, _, _ = build(normalize=False, precondition=True)
  scores = Tracer(index, featurizer, [ckpt]).influence(QUERY)[0]
  np.testing.assert_allclose(scores, [2.1, 0.1], rtol=0.05)


def test_unit_normalising_after_masking_would_undo_the_depth_weighting():
  # Why the normaliser is the unmasked norm: normalising the masked feature itself gives the head-only example
  # unit norm (0.1 -> 1), and it outranks the full-depth one (2.0 > 1.19) on this trunk-explained query.
  featurizer, ckpt, _, inputs, masks = build(normalize=False)
  masked = featurizer(ckpt.params, inputs, masks[0])
  query = featurizer(ckpt.params, QUERY)
  old = normalize_rows(query) @ normalize_rows(masked).T
  assert old[0, 1] > old[0, 0]
  features, norms = featurizer.features_and_norms(ckpt.params, inputs, masks[0])
  np.testing.assert_allclose(features, masked, rtol=1e-6)
  np.testing.assert_allclose(norms, [np.sqrt(1.01)] * 2, rtol=0.05)


def test_trak_inverse_curvature_lets_a_head_only_twin_outrank_why_the_index_stays_tracin():
  # TRAK-style scores psi^T (Phi^T Phi + lambda I)^-1 phi amplify directions the curvature rarely sees: the
  # head-only twin's update lies mostly there, and on the same trunk-explained query it outranks its full-depth twin
  # unless the damping dominates (then TRAK is TracIn over lambda). This is why `govjax index` / `govjax trace` keep
  # TracIn, whose order respects depth, although TRAK has the higher LDS on unrouted runs (experiments/attribution).
  featurizer, ckpt, _, inputs, masks = build(normalize=False)
  masked = featurizer(ckpt.params, inputs, masks[0]).astype(np.float64)
  full = featurizer(ckpt.params, inputs).astype(np.float64)
  query = featurizer(ckpt.params, QUERY).astype(np.float64)
  for kernel in (masked, full):  # curvature from the updates taken, or from the model's full gradients
    small = trak_scores(masked, query, damping=1e-3, kernel_features=kernel)[0]
    assert small[1] > small[0]
    large = trak_scores(masked, query, damping=1e3, kernel_features=kernel)[0]
    assert large[0] > large[1]
    np.testing.assert_allclose(large * 1e3, [1.2, 0.2], rtol=0.05)
