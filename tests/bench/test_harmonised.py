"""Four-voice settings of tunes: the melody kept, voices ordered and in range, chords that fit, revoicing."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from govjax.bench import harmonised
from govjax.documentation.music_notes import Note

# "Nun danket"-like opening in G major, ending on the tonic
TUNE = [67, 67, 69, 71, 72, 71, 69, 67, 66, 67, 69, 67, 66, 62, 67]


def _tune(pitches=TUNE, step=Fraction(1, 2)):
  return [Note(0, i * step, p, step) for i, p in enumerate(pitches)]


def _by_onset(notes):
  out = {}
  for n in notes:
    out.setdefault(n.onset, {})[n.voice] = n
  return out


@pytest.mark.parametrize("rhythm", ["note", "beat"])
def test_setting_keeps_the_melody_and_orders_voices_within_their_ranges(rhythm):
  setting = harmonised.harmonise(_tune(), random.Random(1), rhythm=rhythm)
  assert [n.pitch for n in setting if n.voice == 0] == TUNE  # median 67 is already in the soprano range
  assert {n.voice for n in setting} == {0, 1, 2, 3}
  for voice, (low, high) in harmonised.RANGES.items():
    if voice:
      assert all(low - 12 <= n.pitch <= high for n in setting if n.voice == voice)
  # at every onset where alto, tenor and bass change, they sound below the soprano note then sounding, in order
  for onset, chord in _by_onset(setting).items():
    if {1, 2, 3} <= set(chord):
      soprano = max((n for n in setting if n.voice == 0 and n.onset <= onset), key=lambda n: n.onset)
      assert soprano.pitch > chord[1].pitch > chord[2].pitch > chord[3].pitch


def test_chords_contain_the_melody_note_and_end_on_the_tonic():
  setting = harmonised.harmonise(_tune(), random.Random(2))
  for chord in _by_onset(setting).values():
    classes = {n.pitch % 12 for n in chord.values()}
    assert len(classes) >= 2
  last = _by_onset(setting)[max(n.onset for n in setting)]
  assert last[3].pitch % 12 in {7, 11}  # G major tonic triad, root or third in the bass
  assert {n.pitch % 12 for n in last.values()} <= {7, 11, 2}


def test_beat_rhythm_holds_the_lower_voices_over_each_beat():
  setting = harmonised.harmonise(_tune(), random.Random(0), rhythm="beat")
  bass = [n for n in setting if n.voice == 3]
  assert len(bass) == 8 and all(n.onset.denominator == 1 for n in bass)  # 15 eighths: 8 beats
  assert sum(n.duration for n in bass) == Fraction(15, 2)


def test_settings_are_reproducible_and_differ_between_draws():
  a = harmonised.harmonise(_tune(), random.Random(5))
  assert a == harmonised.harmonise(_tune(), random.Random(5))
  others = [harmonised.harmonise(_tune(), random.Random(s)) for s in range(6, 12)]
  assert any(o != a for o in others)


def test_revoice_rewrites_one_inner_line_only():
  setting = harmonised.harmonise(_tune(), random.Random(3))
  changed = harmonised.revoice(setting, 2, random.Random(0))
  same = [n for n in changed if n.voice != 2]
  assert same == [n for n in setting if n.voice != 2]
  old = [n.pitch for n in setting if n.voice == 2]
  new = [n.pitch for n in changed if n.voice == 2]
  assert len(new) == len(old) and sum(a != b for a, b in zip(old, new, strict=True)) >= len(old) // 2
  with pytest.raises(ValueError, match="voice must be 1"):
    harmonised.revoice(setting, 0, random.Random(0))
  with pytest.raises(ValueError, match="no notes"):
    harmonised.harmonise([], random.Random(0))
