"""Training data for a run: works -> policy -> exclusion -> windows -> batches with their group masks.

Placeholder until the data pipeline lands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


@dataclasses.dataclass
class TrainingData:
  """Everything the loop needs from the data side.

  Attributes:
    train: random access by step: ``train[s]`` is the batch dict for step ``s`` (``tokens``, ``example_id``,
      ``work_index``), infinite and reshuffled every epoch.
    validation: ``validation(max_batches)`` yields eval batches (with ``weight``), or None.
    vocab_size: tokenizer vocabulary size.
    works: the training works, in ``work_index`` order (after exclusion).
    per_work_depth: int32 ``[num_works]`` allowed depth of each training work (``num_groups`` = full depth).
    num_groups: the model's depth groups.
    num_train_examples: number of training windows (``example_id`` ranges over ``[0, num_train_examples)``).
    report: JSON-able report (kept/skipped/excluded counts and reasons).
  """

  train: Any
  validation: Callable[[int], Iterable[dict]] | None
  vocab_size: int
  works: list
  per_work_depth: np.ndarray
  num_groups: int
  num_train_examples: int
  report: dict

  def group_mask(self, batch: dict) -> np.ndarray:
    """``[B, num_groups]`` float32 mask: row b may reach group g iff ``g >= num_groups - depth[b]``."""
    depth = self.per_work_depth[np.asarray(batch["work_index"])]
    groups = np.arange(self.num_groups)[None, :]
    return (groups >= self.num_groups - depth[:, None]).astype(np.float32)


def build_training_data(config) -> TrainingData:
  raise NotImplementedError("the chorale data pipeline is not wired yet")
