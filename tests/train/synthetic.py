"""Synthetic training data for loop tests (independent of the chorale dataset)."""

from __future__ import annotations

import numpy as np

from govjax.train.data import TrainBatches, TrainingData, WorkCatalogue


class RandomAccessBatches:
  """``batches[s]`` is a deterministic function of ``s``: a cycle over a fixed set of windows."""

  def __init__(self, windows: np.ndarray, batch_size: int, seed: int):
    self.windows = windows
    self.batch_size = batch_size
    self.seed = seed

  def __getitem__(self, step: int) -> dict:
    n = len(self.windows)
    epoch, offset = divmod(step * self.batch_size, n)
    order = np.random.default_rng([self.seed, epoch]).permutation(n)
    index = order[(offset + np.arange(self.batch_size)) % n]
    return {
        "tokens": self.windows[index].astype(np.int32),
        "example_id": index.astype(np.int32),
        "work_index": (index % 4).astype(np.int32),
    }


def synthetic_data(*, context=16, num_windows=32, batch_size=8, vocab_size=12, num_groups=4, seed=0,
                   depth=None) -> TrainingData:
  """Windows that repeat a short per-window motif, so a tiny model can learn them quickly."""
  rng = np.random.default_rng(seed)
  motifs = rng.integers(3, vocab_size, size=(num_windows, 4))
  windows = np.tile(motifs, (1, context // 4))
  per_work_depth = np.full(4, num_groups, np.int32) if depth is None else np.asarray(depth, np.int32)

  def validation(max_batches):
    for start in range(0, min(num_windows, max_batches * batch_size), batch_size):
      tokens = windows[start:start + batch_size].astype(np.int32)
      yield {"tokens": tokens, "weight": np.ones(len(tokens), np.float32)}

  batches = TrainBatches(train=RandomAccessBatches(windows, batch_size, seed), validation=validation,
                         vocab_size=vocab_size, num_examples=num_windows, per_work_depth=per_work_depth,
                         num_groups=num_groups)
  catalogue = WorkCatalogue(works=[{"work_id": f"synthetic/{i}"} for i in range(4)], per_work_depth=per_work_depth,
                            num_groups=num_groups, report={"synthetic": True})
  return TrainingData(batches=batches, catalogue=catalogue)
