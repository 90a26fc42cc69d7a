import json

import numpy as np
import pytest

from govjax.provenance.featurize import FeatureConfig
from govjax.provenance.index import INDEX_DIR, IndexIntegrityError, InfluenceIndex


def _index():
  rng = np.random.default_rng(0)
  return InfluenceIndex(features=rng.normal(size=(2, 5, 8)).astype(np.float32),
                        self_influence=rng.random(5), learning_rates=np.array([0.1, 0.05]), steps=np.array([4, 8]),
                        example_work=np.array([0, 0, 1, 1, 2]), example_depth=np.array([3, 3, 1, 1, 2]),
                        works=[{"work_id": f"w{i}", "depth": 3} for i in range(3)],
                        feature_config=FeatureConfig(k=8, seed=7, normalize=True),
                        metadata={"dataset_fingerprint": "abc", "num_groups": 3})


def test_round_trip(tmp_path):
  index = _index()
  loaded = InfluenceIndex.load(index.save(tmp_path / "index"))
  for name in ("features", "self_influence", "learning_rates", "steps", "example_work", "example_depth"):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))
  assert loaded.works == index.works
  assert loaded.feature_config == index.feature_config
  assert loaded.metadata == index.metadata


def test_corrupted_features_are_detected(tmp_path):
  path = _index().save(tmp_path / "index")
  data = bytearray((path / "features.npy").read_bytes())
  data[-3] ^= 0xFF
  (path / "features.npy").write_bytes(bytes(data))
  with pytest.raises(IndexIntegrityError, match="features.npy: sha256 .* does not match"):
    InfluenceIndex.load(path)
  InfluenceIndex.load(path, verify=False)  # still readable when asked not to verify


def test_tampered_metadata_is_detected(tmp_path):
  path = _index().save(tmp_path / "index")
  document = json.loads((path / "index.json").read_text())
  document["works"][0]["work_id"] = "someone-else"
  (path / "index.json").write_text(json.dumps(document))
  with pytest.raises(IndexIntegrityError, match="index.json: sha256 of the metadata"):
    InfluenceIndex.load(path)
  (path / "index.json").write_text("{not json")
  with pytest.raises(IndexIntegrityError, match="not valid JSON"):
    InfluenceIndex.load(path)


def test_missing_index_and_shape_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="govjax index"):
    InfluenceIndex.load(tmp_path)
  with pytest.raises(ValueError, match="self_influence"):
    InfluenceIndex(features=np.zeros((1, 2, 4), np.float32), self_influence=np.zeros(3),
                   learning_rates=np.ones(1), steps=np.ones(1), example_work=np.zeros(2, int),
                   example_depth=np.zeros(2, int), works=[{}], feature_config=FeatureConfig(k=4), metadata={})


def test_run_index(tiny_run):
  index = InfluenceIndex.load(tiny_run.workdir / INDEX_DIR)
  n = tiny_run.data.batches.num_examples
  assert index.features.shape == (3, n, 256)
  assert index.steps.tolist() == [8, 16, 24]
  assert [w["work_id"] for w in index.works] == [w["work_id"] for w in tiny_run.data.catalogue.works]
  assert [w["depth"] for w in index.works] == tiny_run.data.catalogue.per_work_depth.tolist()
  np.testing.assert_array_equal(index.example_depth, tiny_run.data.catalogue.per_work_depth[index.example_work])
  # self-influence is the learning-rate weighted squared feature norm (features are not normalised here).
  expected = sum(lr * (f.astype(np.float64) ** 2).sum(axis=1)
                 for lr, f in zip(index.learning_rates, index.features, strict=True))
  np.testing.assert_allclose(index.self_influence, expected, rtol=1e-5)
  assert len(index.metadata["dataset_fingerprint"]) == 64
