import numpy as np
import pytest

from govjax.bench.provenance import mislabel_benchmark
from govjax.provenance.featurize import FeatureConfig
from govjax.provenance.index import InfluenceIndex
from govjax.provenance.query import aggregate_per_work, influence_scores, top_k, windows
from govjax.provenance.runs import load_tracer, training_examples


def test_scores_aggregation_and_top_k():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 6, 4)).astype(np.float32)
  index = InfluenceIndex(features=features, self_influence=np.ones(6), learning_rates=np.array([0.5, 2.0]),
                         steps=np.array([1, 2]), example_work=np.array([0, 0, 1, 1, 2, 2]),
                         example_depth=np.ones(6, int), works=[{"work_id": str(i)} for i in range(3)],
                         feature_config=FeatureConfig(k=4), metadata={})
  query = rng.normal(size=(2, 1, 4)).astype(np.float32)
  scores = influence_scores(index, query)
  expected = 0.5 * features[0] @ query[0, 0] + 2.0 * features[1] @ query[1, 0]
  np.testing.assert_allclose(scores[0], expected, rtol=1e-5)
  s = np.array([1.0, 3.0, -2.0, 0.5, 4.0, -5.0])
  w = np.array([0, 0, 1, 1, 2, 2])
  np.testing.assert_allclose(aggregate_per_work(s, w, 3, how="sum"), [4.0, -1.5, -1.0])
  np.testing.assert_allclose(aggregate_per_work(s, w, 3, how="mean"), [2.0, -0.75, -0.5])
  np.testing.assert_allclose(aggregate_per_work(s, w, 3, how="max"), [3.0, 0.5, 4.0])
  proponents, opponents = top_k(s, 2)
  assert proponents.tolist() == [4, 1] and opponents.tolist() == [5, 2]
  with pytest.raises(ValueError, match="query_features"):
    influence_scores(index, np.zeros((1, 1, 4), np.float32))


def test_windows():
  out = windows(np.arange(1, 11), 4)
  assert out.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]]


def test_canary_retrieval(tiny_run):
  tracer = load_tracer(tiny_run.workdir)
  hits = 0
  for w, work in enumerate(tiny_run.data.catalogue.works):
    attribution = tracer.attribute({"tokens": windows(work["tokens"], tracer.context)}, top=3)
    hits += int(attribution.proponents[0] == w)
  assert hits == len(tiny_run.data.catalogue.works)
  # one training window as the output: its own example scores highest.
  examples = training_examples(tiny_run.data)
  scores = tracer.influence({"tokens": examples.tokens[5:6]})[0]
  assert int(np.argmax(scores)) == 5
  np.testing.assert_array_equal(tracer.self_influence(), tracer.index.self_influence)


def test_mislabel_detection_by_self_influence():
  result = mislabel_benchmark(epochs=6, noise=0.1, k=128, seed=0, max_train=600)
  assert result["mislabel_auc"] > 0.85
  assert result["mislabel_found_at_20pct"] > 0.6
