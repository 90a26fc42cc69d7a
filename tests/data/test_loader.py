"""Tests for govjax.data.loader: window table, random-access training batches, in-order eval batches."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from govjax.data import loader
from govjax.data.loader import PAD, Work


def make_works(frame_counts, seed=0):
  rng = np.random.default_rng(seed)
  return [
      Work(work_id=f"test/w{i}", title=f"w{i}", composer="c", collection="synthetic", source_path=f"w{i}",
           sha256=f"{i:064x}", key="C major", tokens=rng.integers(1, 72, size=4 * n, dtype=np.int32),
           length=4 * n)
      for i, n in enumerate(frame_counts)
  ]


def reference_windows(works, context, stride):
  """Straightforward reference: (work_index, start, padded tokens) for every window, in table order."""
  out = []
  for index, work in enumerate(works):
    start = 0
    while True:
      piece = work.tokens[start : start + context]
      out.append((index, start, np.concatenate([piece, np.full(context - piece.size, PAD, np.int32)])))
      if start + context >= work.tokens.size:
        break
      start += stride
  return out


def test_window_table_matches_reference_and_covers_every_token():
  works = make_works([10, 40, 3, 25, 8])  # 40, 160, 12, 100, 32 tokens
  table = loader.build_window_table(works, context=32, stride=16)
  ref = reference_windows(works, 32, 16)
  assert len(table) == len(ref)
  np.testing.assert_array_equal(table.work_index, [r[0] for r in ref])
  np.testing.assert_array_equal(table.start, [r[1] for r in ref])
  assert np.all(table.start % 4 == 0)
  assert table.num_short_works == 1  # the 12-token work (the 32-token one fills its window exactly)
  assert table.num_padded_windows == sum((r[2] == PAD).any() for r in ref) == 3
  assert table.num_pad_tokens == sum(int((r[2] == PAD).sum()) for r in ref)
  for index, work in enumerate(works):
    covered = np.zeros(work.tokens.size, bool)
    for start in table.start[table.work_index == index]:
      covered[start : start + 32] = True
    assert covered.all()


def test_default_stride_is_non_overlapping_whole_frames():
  works = make_works([30])
  assert loader.build_window_table(works, context=48).stride == 48
  assert loader.build_window_table(works, context=50).stride == 48


@pytest.mark.parametrize("kwargs, message", [
    (dict(context=3), "context"),
    (dict(context=32, stride=6), "stride"),
    (dict(context=32, stride=36), "stride"),
    (dict(context=32, stride=0), "stride"),
])
def test_window_table_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    loader.build_window_table(make_works([10]), **kwargs)


def test_train_batches_shapes_dtypes_and_contents():
  works = make_works([10, 40, 3, 25])
  ds = loader.make_train_dataset(works, context=32, batch_size=5, seed=7, stride=16)
  ref = reference_windows(works, 32, 16)
  for step in (0, 3, 1000):
    batch = ds[step]
    assert set(batch) == {"tokens", "example_id", "work_index"}
    assert batch["tokens"].shape == (5, 32) and batch["tokens"].dtype == np.int32
    assert batch["example_id"].shape == (5,) and batch["example_id"].dtype == np.int32
    assert batch["work_index"].shape == (5,) and batch["work_index"].dtype == np.int32
    for row, example_id in enumerate(batch["example_id"]):
      work_index, _, tokens = ref[example_id]
      assert batch["work_index"][row] == work_index
      np.testing.assert_array_equal(batch["tokens"][row], tokens)


def test_train_batches_are_deterministic_random_access():
  works = make_works([10, 40, 3, 25])
  ds = loader.make_train_dataset(works, context=32, batch_size=4, seed=3, stride=16)
  again = loader.make_train_dataset(works, context=32, batch_size=4, seed=3, stride=16)
  for step in (0, 17, 5, 123456):
    for a, b in ((ds[step], ds[step]), (ds[step], again[step])):
      for name in a:
        np.testing.assert_array_equal(a[name], b[name])
  other_seed = loader.make_train_dataset(works, context=32, batch_size=4, seed=4, stride=16)
  assert not all(np.array_equal(ds[s]["example_id"], other_seed[s]["example_id"]) for s in range(5))


def test_every_window_once_per_epoch_reshuffled_each_epoch():
  works = make_works([10, 40, 3, 25, 17])
  num_windows = len(loader.build_window_table(works, context=32, stride=16))
  batch_size = 7  # does not divide num_windows: batches straddle epochs
  ds = loader.make_train_dataset(works, context=32, batch_size=batch_size, seed=0, stride=16)
  epochs = 3
  steps = -(-epochs * num_windows // batch_size)
  ids = np.concatenate([ds[s]["example_id"] for s in range(steps)])[: epochs * num_windows]
  orders = ids.reshape(epochs, num_windows)
  for order in orders:
    np.testing.assert_array_equal(np.sort(order), np.arange(num_windows))
  assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_eval_batches_cover_every_window_once_in_order():
  works = make_works([10, 40, 3, 25])
  ref = reference_windows(works, 32, 16)
  batches = list(loader.iterate_eval_batches(works, context=32, batch_size=4, stride=16))
  assert len(batches) == -(-len(ref) // 4)
  weight = np.concatenate([b["weight"] for b in batches])
  example_id = np.concatenate([b["example_id"] for b in batches])
  assert weight.dtype == np.float32 and weight.sum() == len(ref)
  np.testing.assert_array_equal(example_id[weight == 1], np.arange(len(ref)))
  np.testing.assert_array_equal(example_id[weight == 0], -1)
  tokens = np.concatenate([b["tokens"] for b in batches])
  work_index = np.concatenate([b["work_index"] for b in batches])
  for i, (w, _, t) in enumerate(ref):
    assert work_index[i] == w
    np.testing.assert_array_equal(tokens[i], t)
  assert (tokens[weight == 0] == PAD).all()
  assert all(b["tokens"].shape == (4, 32) for b in batches)


def test_as_work_from_dicts_and_validation():
  item = {"work_id": b"bach/x", "title": b"x", "composer": b"c", "collection": b"c", "source_path": b"x.mxl",
          "sha256": b"0" * 64, "key": b"C major", "tokens": np.array([3, 4, 5, 6], np.int32), "length": 4,
          "licence": "CC0-1.0"}
  work = loader.as_work(item)
  assert (work.work_id, work.key, work.length) == ("bach/x", "C major", 4)
  assert dict(work.extra) == {"licence": "CC0-1.0"}
  assert not work.tokens.flags.writeable
  assert loader.as_work(work) is work
  assert [w.work_id for w in loader.works_from_data_source([item, item])] == ["bach/x", "bach/x"]
  with pytest.raises(ValueError, match=r"work 'bach/x': missing field\(s\) \['sha256'\]"):
    loader.as_work({k: v for k, v in item.items() if k != "sha256"})
  with pytest.raises(ValueError, match="work 'bach/x': field 'tokens'"):
    loader.as_work({**item, "tokens": np.array([3, 4, 5], np.int32), "length": 3})
  with pytest.raises(ValueError, match="work 'bach/x': field 'length'"):
    loader.as_work({**item, "length": 1})


def test_loader_on_tiny_chorales(tiny_works):
  ds = loader.make_train_dataset(tiny_works, context=64, batch_size=8, seed=0, stride=32)
  table = loader.build_window_table(tiny_works, context=64, stride=32)
  seen = collections.Counter()
  for step in range(-(-len(table) // 8)):  # one epoch (and a little of the next)
    batch = ds[step]
    for row, example_id in enumerate(batch["example_id"]):
      work_index, start = table.work_index[example_id], table.start[example_id]
      assert batch["work_index"][row] == work_index
      expected = tiny_works[work_index].tokens[start : start + 64]
      np.testing.assert_array_equal(batch["tokens"][row][: expected.size], expected)
    seen.update(batch["example_id"].tolist())
  assert set(seen) == set(range(len(table)))


def test_array_window_batches_cover_every_row_once_per_epoch_and_are_deterministic():
  tokens = np.arange(10 * 4, dtype=np.int32).reshape(10, 4)
  work_index = np.arange(10) // 3
  batches = loader.ArrayWindowBatches(tokens, work_index, batch_size=5, seed=1)
  epoch0 = np.concatenate([batches[0]["example_id"], batches[1]["example_id"]])
  assert sorted(epoch0.tolist()) == list(range(10))
  epoch1 = np.concatenate([batches[2]["example_id"], batches[3]["example_id"]])
  assert sorted(epoch1.tolist()) == list(range(10)) and epoch1.tolist() != epoch0.tolist()
  batch = batches[2]
  np.testing.assert_array_equal(batch["tokens"], tokens[batch["example_id"]])
  np.testing.assert_array_equal(batch["work_index"], work_index[batch["example_id"]])
  np.testing.assert_array_equal(loader.ArrayWindowBatches(tokens, work_index, 5, 1)[2]["tokens"], batch["tokens"])
  with pytest.raises(ValueError, match="must be equal"):
    loader.ArrayWindowBatches(tokens, work_index[:3], batch_size=5, seed=1)
