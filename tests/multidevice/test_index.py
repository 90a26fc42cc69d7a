import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.core.mesh import data_mesh
from govjax.models.transformer import Transformer, TransformerConfig
from govjax.provenance.sharded_index import (
  build_sharded_index,
  merge_index_shards,
  sharded_map_examples,
  write_index_shard,
)


def _linear_grad_projection(params, batch):
  """Per-example gradient of a squared-error linear model, randomly projected to 8 dimensions."""
  w, projection = params

  def loss(w, x, y):
    return 0.5 * (x @ w - y) ** 2

  grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(w, batch["x"], batch["y"])
  return grads @ projection


def test_sharded_map_equals_single_device_and_shards_merge(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(37, 6)).astype(np.float32)  # 37: not a multiple of the chunk, so padding is exercised
  y = rng.normal(size=(37,)).astype(np.float32)
  params = (rng.normal(size=(6,)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32))
  expected = np.asarray(jax.jit(_linear_grad_projection)(params, {"x": x, "y": y}))
  rows, got = sharded_map_examples(_linear_grad_projection, {"x": x, "y": y}, data_mesh(4), params=params,
                                   per_device_batch=3)
  np.testing.assert_array_equal(rows, np.arange(37))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
  # Two "hosts" write their halves; the merge puts them back in example order.
  write_index_shard(tmp_path, 1, 2, rows[20:], {"phi": got[20:]})
  with pytest.raises(FileNotFoundError, match="missing"):
    merge_index_shards(tmp_path, num_examples=37)
  write_index_shard(tmp_path, 0, 2, rows[:20], {"phi": got[:20]})
  merged = merge_index_shards(tmp_path, num_examples=37)
  np.testing.assert_array_equal(merged["phi"], got)
  with pytest.raises(ValueError, match="expected 40"):
    merge_index_shards(tmp_path, num_examples=40)


def test_sharded_influence_index_equals_single_device(tmp_path):
  from govjax.core.checkpoint import CheckpointParams
  from govjax.provenance.featurize import FeatureConfig, transformer_featurizer
  from govjax.provenance.index import build_index

  cfg = TransformerConfig(vocab_size=11, num_layers=1, width=16, num_heads=2, context=8)
  featurizer = None
  checkpoints = []
  for seed, lr in ((0, 0.1), (1, 0.05)):
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(seed)), nnx.Param)
    checkpoints.append(CheckpointParams(step=seed + 1, learning_rate=lr, params=params))
    featurizer = featurizer or transformer_featurizer(graphdef, num_layers=1,
                                                      config=FeatureConfig(k=16, microbatch=8, normalize=True))
  rng = np.random.default_rng(1)
  n = 21
  tokens = rng.integers(1, 11, size=(n, 8)).astype(np.int32)
  masks = np.ones((2, n, 3), np.float32)
  masks[:, ::3, 0] = 0.0
  masks[1, ::4, :2] = 0.0
  works = [{"work_id": f"w{i}"} for i in range(3)]
  example_work = np.arange(n) % 3
  single = build_index(featurizer, checkpoints, {"tokens": tokens}, masks, example_work=example_work, works=works)
  sharded = build_sharded_index(featurizer, checkpoints, {"tokens": tokens}, masks, example_work=example_work,
                                works=works, mesh=data_mesh(4), directory=tmp_path, per_device_batch=2)
  np.testing.assert_allclose(sharded.features, single.features, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sharded.self_influence, single.self_influence, rtol=1e-5)
  np.testing.assert_array_equal(sharded.example_depth, single.example_depth)
  assert sharded.metadata["dataset_fingerprint"] == single.metadata["dataset_fingerprint"]
  assert float(jnp.abs(sharded.features).sum()) > 0
