"""Voice sketches and their alignment: per-voice rhythm, coverage both ways, the tune, serialisation."""

from __future__ import annotations

import dataclasses
import random
from fractions import Fraction

import music21
import numpy as np
import pytest

from govjax.documentation import melodic_alignment as ma
from govjax.documentation import music_transforms as mt
from govjax.documentation.music_notes import Note, NoteList, notes_from_score


@pytest.fixture(scope="module")
def chorale():
  return notes_from_score(music21.corpus.parse("bach/bwv66.6"))


def _list(notes):
  voices = sorted({n.voice for n in notes})
  renumber = {v: i for i, v in enumerate(voices)}
  return NoteList(tuple(dataclasses.replace(n, voice=renumber[n.voice]) for n in notes), len(voices))


def test_a_voice_sketch_does_not_change_when_other_voices_change(chorale):
  ornamented_lower = [n for n in chorale.notes if n.voice == 0]
  ornamented_lower += mt.ornament([n for n in chorale.notes if n.voice > 0], 1.0, random.Random(0))
  before, after = ma.voice_sketches(chorale), ma.voice_sketches(_list(ornamented_lower))
  np.testing.assert_array_equal(before[0].intervals, after[0].intervals)
  np.testing.assert_array_equal(before[0].rhythm, after[0].rhythm)
  assert not np.array_equal(before[1].intervals, after[1].intervals)


def test_rhythm_classes_are_tempo_invariant_and_relative_to_the_previous_note():
  line = [ma.Note(0, Fraction(t), p, Fraction(1)) for t, p in ((0, 60), (1, 62), (3, 64), (4, 65))]
  sketch = ma.voice_sketches(NoteList(tuple(line), 1))[0]
  assert sketch.intervals.tolist() == [2, 2, 1] and sketch.rhythm.tolist() == [0, 2, -2]
  slow = ma.voice_sketches(NoteList(tuple(mt.time_scale(line, Fraction(3))), 1))[0]
  assert slow.rhythm.tolist() == sketch.rhythm.tolist()


def test_coverage_in_both_directions(chorale):
  record = ma.voice_sketches(chorale)
  rng = random.Random(0)
  part = ma.compare(ma.voice_sketches(_list(mt.excerpt(chorale.notes, 0.4, rng))), record)
  assert part.query_coverage > 0.95 and part.record_coverage < 0.6 and len(part.pairs) == 4
  assert part.pairs[0].record_bars[0] > 0
  bigger = ma.compare(ma.voice_sketches(_list(mt.add_parts(chorale.notes, 2, rng))), record)
  assert bigger.record_coverage > 0.95 and bigger.query_coverage < 0.75
  subset = ma.compare(ma.voice_sketches(_list(mt.voice_subset(chorale.notes, 2, rng))), record)
  assert subset.query_coverage > 0.95 and len(subset.pairs) == 2
  assert {p.query_voice for p in subset.pairs} == {0, 1}


def test_edited_copy_keeps_most_intervals_and_unrelated_works_do_not_pair(chorale):
  record = ma.voice_sketches(chorale)
  edited = ma.compare(ma.voice_sketches(_list(mt.edit_pitches(chorale.notes, 0.1, random.Random(1)))), record)
  assert min(edited.query_coverage, edited.record_coverage) > 0.5
  other = ma.compare(ma.voice_sketches(notes_from_score(music21.corpus.parse("bach/bwv26.6"))), record)
  assert other.query_coverage < 0.3 and other.melody < 0.5


def test_the_tune_in_another_setting(chorale):
  soprano = [n for n in chorale.notes if n.voice == 0]
  other = notes_from_score(music21.corpus.parse("bach/bwv26.6"))
  setting = soprano + [n for n in other.notes if n.voice > 0]
  comparison = ma.compare(ma.voice_sketches(_list(setting)), ma.voice_sketches(chorale))
  assert comparison.melody == 1.0 and comparison.melody_voice == 0
  assert comparison.record_coverage < 0.5


def test_pruned_pairs_agree_with_full_alignment(chorale):
  rng = random.Random(2)
  record = ma.voice_sketches(chorale)
  for notes in (mt.ornament(chorale.notes, 0.5, rng), mt.excerpt(chorale.notes, 0.3, rng)):
    query = ma.voice_sketches(_list(notes))
    pruned, full = ma.compare(query, record, min_melody=0.6), ma.compare(query, record)
    assert pruned.pairs == full.pairs and pruned.query_coverage == full.query_coverage


def test_sketch_json_round_trip_and_bad_lengths(chorale):
  sketches = ma.voice_sketches(chorale)
  back = ma.sketches_from_json(ma.sketches_to_json(sketches))
  for a, b in zip(sketches, back, strict=True):
    np.testing.assert_array_equal(a.intervals, b.intervals)
    np.testing.assert_array_equal(a.bars, b.bars)
  broken = ma.VoiceSketch(np.zeros(2, np.int8), np.zeros(2, np.int8), np.zeros(5, np.uint16)).to_json()
  with pytest.raises(ValueError, match="2 intervals, 2 rhythm classes and 5 bars: expected n - 1, n - 1 and n"):
    ma.VoiceSketch.from_json(broken)


def test_setting_score_compares_voices_rank_by_rank():
  reused, record = (ma.voice_sketches(notes_from_score(music21.corpus.parse(w))) for w in ("bach/bwv326",
                                                                                          "bach/bwv327"))
  other, tune = (ma.voice_sketches(notes_from_score(music21.corpus.parse(w))) for w in ("bach/bwv65.7",
                                                                                        "bach/bwv144.6"))
  same_setting, same_tune = ma.compare(reused, record), ma.compare(other, tune)
  # A re-used setting whose bass is re-written: three voices recur, the mean over the four stays high.
  assert [round(v, 2) for v in same_setting.setting_voices] == [1.0, 0.82, 0.75, 0.12]
  assert same_setting.setting == pytest.approx(sum(same_setting.setting_voices) / 4)
  assert 0.6 < same_setting.setting < 0.7 and same_setting.query_coverage < 0.5
  # Another harmonisation of one tune: the soprano recurs, the other voices do not.
  assert same_tune.melody == 1.0 and same_tune.setting_voices[0] == 1.0 and same_tune.setting < 0.56
  # Pieces of different voice counts (or fewer than MIN_SETTING_VOICES) get no setting score.
  assert ma.compare(reused[:3], record).setting == 0.0 and ma.compare(reused[:3], record).setting_voices == ()
  assert ma.compare(reused[:2], record[:2]).setting == 0.0 and ma.MIN_SETTING_VOICES == 3
  # A floor the voices cannot reach (bounded by shared grams) reports 0; a reachable one the exact score.
  pruned = ma.compare(reused, record, min_setting=0.6)
  assert pruned.setting == same_setting.setting and pruned.pairs == same_setting.pairs
  assert ma.compare(other, tune, min_setting=0.99).setting in (0.0, same_tune.setting)



def test_voices_matched_in_unrelated_bars_of_the_query_are_not_one_passage():
  """A short record whose two voices are both in a long query: in the same bars they are one passage (two
  pairs), in bars far apart they are not (only the strongest pair is kept): the check is on both pieces."""
  upper = [72, 74, 76, 77, 79, 77, 76, 74, 72, 76, 79, 84, 83]
  lower = [48, 55, 53, 52, 50, 47, 48, 43, 45, 41, 43, 36, 38]
  record = [Note(v, Fraction(i), p, Fraction(1)) for v, line in enumerate((upper, lower)) for i, p in enumerate(line)]
  rng = random.Random(0)
  filler = [[60 + rng.randrange(-9, 10) for _ in range(60)] for _ in range(2)]

  def query(lower_at):
    voices = [list(filler[0]), list(filler[1])]
    voices[0][10:10 + len(upper)] = upper
    voices[1][lower_at:lower_at + len(lower)] = lower
    return NoteList(tuple(Note(v, Fraction(i), p, Fraction(1)) for v, line in enumerate(voices)
                          for i, p in enumerate(line)), 2)

  sketches = ma.voice_sketches(NoteList(tuple(record), 2))
  assert len(ma.compare(ma.voice_sketches(query(10)), sketches).pairs) == 2
  assert len(ma.compare(ma.voice_sketches(query(40)), sketches).pairs) == 1
