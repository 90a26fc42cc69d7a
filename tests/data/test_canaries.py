"""Canaries of both kinds: random passages and held-out chorale windows, per repetition level."""

from __future__ import annotations

import numpy as np
import pytest

from govjax.core.config import CanarySpec
from govjax.data.canaries import (
    canary_group,
    canary_kind,
    canary_records,
    canary_table,
    canary_works,
    split_canary_sources,
)
from govjax.data.loader import Work


def _work(i: int, frames: int) -> Work:
  tokens = np.random.default_rng(i).integers(3, 72, frames * 4).astype(np.int32)
  return Work(f"bach/held{i}", "", "", "", "", "", "", tokens, tokens.size, {})


def test_split_canary_sources_is_a_deterministic_partition():
  works = [_work(i, 8) for i in range(40)]
  sources, rest = split_canary_sources(works)
  again, _ = split_canary_sources(list(reversed(works)))
  assert {w.work_id for w in sources} == {w.work_id for w in again}
  assert not {w.work_id for w in sources} & {w.work_id for w in rest}
  assert len(sources) + len(rest) == 40 and 8 < len(sources) < 32


def test_chorale_canaries_are_distinct_held_out_windows_per_level():
  sources = [_work(i, 40) for i in range(12)]  # 5 windows of 8 frames each: 60 windows
  spec = CanarySpec(count=3, chorale_count=6, repeats=(1, 4, 16), frames=8)
  table = canary_table(spec, sources)
  assert table.tokens.shape == (27, 32)
  assert table.kinds.tolist() == ["random"] * 9 + ["chorale"] * 18
  assert table.repetitions.tolist() == [1] * 3 + [4] * 3 + [16] * 3 + [1] * 6 + [4] * 6 + [16] * 6
  chorale = table.tokens[table.kinds == "chorale"]
  assert len({row.tobytes() for row in chorale}) == 18  # levels never share a window
  windows = {w.tokens[s:s + 32].tobytes() for w in sources for s in range(0, 160, 32)}
  assert all(row.tobytes() in windows for row in chorale)  # cut from the sources, frame-aligned
  np.testing.assert_array_equal(canary_table(spec, list(reversed(sources))).tokens, table.tokens)


def test_canary_works_plant_each_copy_and_name_the_kind():
  sources = [_work(i, 40) for i in range(12)]
  spec = CanarySpec(count=1, chorale_count=2, repeats=(1, 4), frames=8)
  works = canary_works(spec, sources)
  assert len(works) == (1 + 2) * (1 + 4)
  ids = [w.work_id for w in works]
  assert "canary/chorale/r4/1/copy3" in ids and "canary/r1/0/copy0" in ids
  assert canary_kind("canary/chorale/r4/1/copy3") == "chorale" and canary_kind("canary/r1/0") == "random"
  assert canary_kind("bach/bwv1.6") is None and canary_group("canary/chorale/r4/1/copy3") == "canary/chorale/r4/1"
  assert all(r.licence == spec.licence for r in canary_records(works, spec))
  assert len(canary_works(spec)) == 1 + 4  # without sources: the random kind only


def test_too_few_source_windows_is_an_error():
  with pytest.raises(ValueError, match="chorale_count=8"):
    canary_table(CanarySpec(count=0, chorale_count=8, repeats=(1, 4), frames=8), [_work(0, 40)])


def test_probe_calibration_is_disjoint_from_validation_and_canary_sources():
  from govjax.core.config import ModelSpec, TrainConfig
  from govjax.train.data import build_training_data

  train = [_work(100 + i, 40) for i in range(4)]
  validation = [_work(200 + i, 40) for i in range(3)]
  test = [_work(300 + i, 40) for i in range(24)]
  config = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=32), batch_size=4, window_stride=32,
                       canaries=CanarySpec(count=0, chorale_count=2, repeats=(1, 4), frames=8))
  data = build_training_data(config, works={"train": train, "validation": validation, "test": test})
  sources, rest = split_canary_sources(test)

  def windows(works):
    return {w.tokens[s:s + 32].tobytes() for w in works for s in range(0, len(w.tokens) - 31, 4)}

  calibration = [row for batch in data.batches.calibration(100) for row, weight in zip(batch["tokens"], batch["weight"],
                                                                                strict=True) if weight > 0]
  assert calibration and all(row.tobytes() in windows(rest) for row in calibration)
  assert not windows(rest) & (windows(sources) | windows(validation))
  assert all(row.tobytes() in windows(sources) for row in data.canaries.tokens)  # canaries: the other part of test
