"""A small NNX MLP classifier with depth groups (one per layer), and a plain Adam training loop that keeps
TracIn checkpoints in memory.

Group ``i`` is ``layers[i]`` (group 0 nearest the input), as in the transformer's convention.

Example:
  >>> model = MLPClassifier(4, (8,), 3, rngs=nnx.Rngs(0))
  >>> model(np.zeros((2, 4), np.float32)).shape
  (2, 3)
  >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int32)
  >>> run = train_classifier(model, x, y, num_epochs=2, batch_size=16, checkpoint_every=2, seed=0)
  >>> [c.step for c in run.checkpoints]
  [2, 4]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from govjax.core.checkpoint import CheckpointParams
from govjax.core.trees import path_key


class MLPClassifier(nnx.Module):
  """``Linear -> GELU -> ... -> Linear`` producing class logits.

  Args:
    num_inputs: input features.
    hidden: hidden widths.
    num_classes: output classes.
    rngs: parameter RNGs.
  """

  def __init__(self, num_inputs: int, hidden: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
    widths = [num_inputs, *hidden, num_classes]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)])

  @property
  def num_groups(self) -> int:
    return len(self.layers)

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.gelu(x)
    return x


def classifier_group_of_path(path: Sequence[Any]) -> int:
  """Depth group of an :class:`MLPClassifier` parameter: ``('layers', i, ...) -> i``."""
  if path[0] != "layers":
    raise ValueError(f"parameter {path_key(path)} belongs to no layer")
  return int(path[1])


def example_cross_entropy(model: nnx.Module, inputs: Mapping[str, jax.Array]) -> jax.Array:
  """Cross-entropy of one unbatched example ``{"x": [D], "y": []}``."""
  logits = model(inputs["x"][None])[0]
  return optax.softmax_cross_entropy_with_integer_labels(logits, inputs["y"])


@dataclasses.dataclass
class ClassifierRun:
  """A finished classifier training run.

  Attributes:
    graphdef: the model's graphdef.
    params: final parameters.
    checkpoints: :class:`~govjax.provenance.index.CheckpointParams` kept every ``checkpoint_every`` steps.
    train_seconds: wall time of the training steps (after compilation).
    train_examples: examples processed in that time.
  """

  graphdef: nnx.GraphDef
  params: Any
  checkpoints: list[CheckpointParams]
  train_seconds: float
  train_examples: int

  @property
  def examples_per_s(self) -> float:
    return self.train_examples / max(self.train_seconds, 1e-9)


def _nu_by_path(opt_state: Any) -> tuple[dict[str, np.ndarray], int] | None:
  for part in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState)):
    if isinstance(part, optax.ScaleByAdamState):
      nu = {path_key(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(part.nu)}
      return nu, int(part.count)
  return None


def train_classifier(model: nnx.Module, x: np.ndarray, y: np.ndarray, *, num_epochs: int, batch_size: int,
                     learning_rate: float = 1e-2, checkpoint_every: int = 50, seed: int = 0) -> ClassifierRun:
  """Trains with Adam (constant learning rate) on shuffled minibatches, keeping TracIn checkpoints.

  Args:
    model: the classifier.
    x: float ``[N, D]`` inputs.
    y: int ``[N]`` labels.
    num_epochs: passes over the data.
    batch_size: examples per step (the last partial batch of an epoch is dropped).
    learning_rate: Adam's learning rate (also the TracIn weight of every checkpoint).
    checkpoint_every: keep parameters (and Adam's second moment) every this many steps.
    seed: shuffling seed.

  Returns:
    A :class:`ClassifierRun`.
  """
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, xb, yb):
    def loss(p):
      logits = nnx.merge(graphdef, p)(xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  steps_per_epoch = len(x) // batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"batch_size {batch_size} exceeds the {len(x)} training examples")
  jax.block_until_ready(step(params, opt_state, x[:batch_size], y[:batch_size]))  # compile
  checkpoints, seconds, done = [], 0.0, 0
  for _ in range(num_epochs):
    order = rng.permutation(len(x))
    for b in range(steps_per_epoch):
      index = order[b * batch_size:(b + 1) * batch_size]
      start = time.perf_counter()
      params, opt_state = step(params, opt_state, x[index], y[index])
      jax.block_until_ready(params)
      seconds += time.perf_counter() - start
      done += 1
      if done % checkpoint_every == 0:
        adam = _nu_by_path(opt_state)
        checkpoints.append(CheckpointParams(step=done, learning_rate=learning_rate, params=params,
                                            adam_nu=None if adam is None else adam[0],
                                            adam_count=None if adam is None else adam[1]))
  return ClassifierRun(graphdef=graphdef, params=params, checkpoints=checkpoints, train_seconds=seconds,
                       train_examples=done * batch_size)
