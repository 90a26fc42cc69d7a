"""Deduplication: exact and transposed copies are removed, distinct works kept, every removal reported."""

import json

import numpy as np
import pytest

from govjax.baselines.dedup import deduplicate_works, voice_events, work_shingles
from govjax.data.loader import Work

HOLD, REST = 2, 1


def _work(work_id, frames):
  tokens = np.asarray(frames, np.int32).ravel()
  return Work(work_id=work_id, title=work_id, composer="test", collection="test", source_path=f"{work_id}.mxl",
              sha256="0" * 64, key="C major", tokens=tokens, length=tokens.size)


def _chorale(seed, num_frames=96):
  """Random SATB frames: notes in each voice's range, held for 1-4 frames, with a few rests."""
  rng = np.random.default_rng(seed)
  frames = np.empty((num_frames, 4), np.int32)
  for voice, (low, high) in enumerate([(40, 56), (34, 50), (28, 44), (20, 36)]):
    t = 0
    while t < num_frames:
      length = int(rng.integers(1, 5))
      head = REST if rng.random() < 0.1 else int(rng.integers(low, high))
      frames[t:t + length, voice] = HOLD if head != REST else REST
      frames[t, voice] = head
      t += length
  return frames


def _transpose(frames, semitones):
  frames = frames.copy()
  pitched = frames >= 3
  frames[pitched] += semitones
  return frames


def test_voice_events_are_transposition_invariant_and_rhythmic():
  column = np.array([10, 2, 2, 12, 1, 1, 9, 0, 0])  # note(4 frames) note(+2, 1) rest(2) note(-3, 1) PAD PAD
  events = voice_events(column)
  assert len(events) == 4
  kinds, intervals, lengths = events >> 20, ((events >> 8) & 0xFFF) - 512, events & 0xFF
  np.testing.assert_array_equal(kinds, [2, 0, 1, 0])
  np.testing.assert_array_equal(intervals, [0, 2, 0, -3])
  np.testing.assert_array_equal(lengths, [3, 1, 2, 1])
  np.testing.assert_array_equal(voice_events(np.where(column >= 3, column + 5, column)), events)
  assert not np.array_equal(voice_events(np.array([10, 2, 12, 2, 1, 1, 9])), events)  # other rhythm
  assert voice_events(np.array([0, 0])).size == 0


def test_shingles_short_work_and_voice_tags():
  frames = _chorale(0, num_frames=4)
  shingles = work_shingles(frames.ravel(), ngram=50)
  assert len(shingles) == 4 and {s[0] for s in shingles} == {0, 1, 2, 3}  # one whole-voice shingle per voice
  swapped = frames[:, [1, 0, 2, 3]].ravel()
  assert work_shingles(swapped, ngram=50) != shingles


def test_copies_removed_distinct_kept_report_complete():
  originals = [_chorale(seed) for seed in range(6)]
  works = [_work(f"w{i}", f) for i, f in enumerate(originals)]
  works.insert(2, _work("copy_of_w0", originals[0]))
  works.insert(4, _work("transposed_w1", _transpose(originals[1], 3)))
  works.append(_work("transposed_down_w4", _transpose(originals[4], -2)))
  edited = originals[5].copy()
  edited[40:43, 0] = [50, HOLD, 52]  # a small edit: still a near copy of w5
  works.append(_work("edited_w5", edited))

  kept, report = deduplicate_works(works, threshold=0.8)
  assert [w.work_id for w in kept] == [f"w{i}" for i in range(6)]
  assert report.num_works == len(works) and report.num_kept == 6
  assert report.kept_indices == [i for i, w in enumerate(works) if w.work_id.startswith("w")]
  removed = {r.work_id: r for r in report.removed}
  assert set(removed) == {"copy_of_w0", "transposed_w1", "transposed_down_w4", "edited_w5"}
  assert [r.work_id for r in report.removed] == [w.work_id for w in works if w.work_id in removed]  # input order
  for name, source in [("copy_of_w0", "w0"), ("transposed_w1", "w1"), ("transposed_down_w4", "w4")]:
    assert removed[name].duplicate_of == source and removed[name].similarity == 1.0
    assert works[removed[name].duplicate_of_index].work_id == source
    assert works[removed[name].index].work_id == name
  assert removed["edited_w5"].duplicate_of == "w5" and 0.8 <= removed["edited_w5"].similarity < 1.0
  data = json.loads(json.dumps(report.to_dict()))
  assert data["num_removed"] == 4 and data["num_kept"] == 6 and len(data["removed"]) == 4


def test_first_of_cluster_kept_and_threshold():
  frames = _chorale(7)
  works = [_work("late_original", _transpose(frames, 1)), _work("earlier_copy", frames)]
  kept, report = deduplicate_works(works)
  assert [w.work_id for w in kept] == ["late_original"]
  assert report.removed[0].duplicate_of == "late_original"
  # an unrelated work shares little
  kept, report = deduplicate_works([_work("a", _chorale(8)), _work("b", _chorale(9))])
  assert len(kept) == 2 and report.removed == []


def test_accepts_dicts_and_rejects_bad_arguments():
  frames = _chorale(10).ravel()
  item = {"work_id": "d", "title": "", "composer": "", "collection": "", "source_path": "", "sha256": "",
          "key": "", "tokens": frames, "length": frames.size}
  kept, report = deduplicate_works([item, dict(item, work_id="e")])
  assert [w.work_id for w in kept] == ["d"] and report.removed[0].work_id == "e"
  with pytest.raises(ValueError, match="threshold"):
    deduplicate_works([], threshold=0.0)
  with pytest.raises(ValueError, match="ngram"):
    deduplicate_works([], ngram=0)
  with pytest.raises(ValueError, match="'bad'.*length"):
    deduplicate_works([dict(item, work_id="bad", length=3)])


def test_near_duplicates_just_above_the_threshold_are_all_found():
  """Edited copies with Jaccard 0.81-0.86: the LSH (datasketch, weighted against misses) finds every one, as the
  exhaustive rule would; with datasketch's equal weights 6 of these 15 pairs were never candidates."""
  from govjax.baselines.dedup import jaccard

  rng = np.random.default_rng(5)
  works, similarities = [], []
  for seed in range(30):
    frames = _chorale(100 + seed)
    works.append(_work(f"w{seed}", frames))
    original, edited = work_shingles(frames.ravel()), frames.copy()
    for _ in range(100):  # raise random notes by a semitone until the copy is barely a duplicate
      t, v = int(rng.integers(0, 96)), int(rng.integers(0, 4))
      edited[t, v] += 1 if edited[t, v] >= 3 else 0
      similarity = jaccard(original, work_shingles(edited.ravel()))
      if similarity < 0.86:
        break
    if similarity >= 0.8:
      works.append(_work(f"edited_w{seed}", edited))
      similarities.append(similarity)
  assert len(similarities) == 15 and 0.8 <= min(similarities) and max(similarities) < 0.86
  kept, report = deduplicate_works(works, threshold=0.8)
  assert [w.work_id for w in kept] == [f"w{seed}" for seed in range(30)]
  assert {r.work_id: r.duplicate_of for r in report.removed} == {
      w.work_id: w.work_id.removeprefix("edited_") for w in works if w.work_id.startswith("edited_")}
  assert sorted(r.similarity for r in report.removed) == sorted(round(s, 6) for s in similarities)
