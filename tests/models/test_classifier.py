import numpy as np
from flax import nnx

from govjax.models.classifier import MLPClassifier, classifier_group_of_path, train_classifier


def test_classifier_learns_and_keeps_checkpoints():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8)).astype(np.float32)
  y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
  model = MLPClassifier(8, (16,), 2, rngs=nnx.Rngs(0))
  assert model.num_groups == 2
  run = train_classifier(model, x, y, num_epochs=30, batch_size=16, learning_rate=1e-2, checkpoint_every=40)
  assert [c.step for c in run.checkpoints] == [40, 80, 120]
  final = nnx.merge(run.graphdef, run.params)
  assert float((np.argmax(np.asarray(final(x)), axis=1) == y).mean()) > 0.9
  ckpt = run.checkpoints[-1]
  assert ckpt.adam_count == 120 and set(ckpt.adam_nu) == {"layers/0/bias", "layers/0/kernel", "layers/1/bias",
                                                           "layers/1/kernel"}
  assert [classifier_group_of_path(("layers", i, "kernel")) for i in (0, 1)] == [0, 1]
