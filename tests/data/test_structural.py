import hashlib
import itertools

import music21
import numpy as np
import pytest

from govjax.data import structural, tokenizer
from govjax.data.scenario import real_records
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import default_policy


@pytest.fixture(scope="module")
def works():
  return structural.structural_works()


def _frames(work):
  return work["tokens"].reshape(-1, 4)


def _sounding_pitches(work):
  """Per frame and voice: the MIDI pitch sounding (note start or held), or None for a rest."""
  grid, out = _frames(work), []
  current = [None] * 4
  for frame in grid:
    for v, token in enumerate(frame):
      if token >= tokenizer.PITCH_OFFSET:
        current[v] = tokenizer.token_to_pitch(int(token))
      elif token == tokenizer.REST:
        current[v] = None
      else:
        assert token == tokenizer.HOLD and current[v] is not None
    out.append(list(current))
  return out


def test_all_materials_in_all_keys_encode(works):
  expected = [f"structural/{name}-{key.name}" for name in [*structural.PROGRESSIONS, structural.SCALES_NAME]
              for key in structural.KEYS]
  assert len(structural.KEYS) == 24 and [w["work_id"] for w in works] == expected
  for w in works:
    assert w["tokens"].dtype == np.int32 and w["tokens"].size == 4 * w["length"] > 0
    assert w["composer"] == "govjax generator" and w["licence"] == "CC0-1.0"
    assert w["content_class"] == "structural"
    assert w["sha256"] == hashlib.sha256(w["tokens"].astype("<i4").tobytes()).hexdigest()
    assert not np.isin(w["tokens"], [tokenizer.PAD]).any()


def test_four_voices_every_pitch_in_its_range(works):
  for w in works:
    assert _frames(w).shape[1] == 4
    for frame in _sounding_pitches(w):
      for v, pitch in enumerate(frame):
        if pitch is not None:
          lo, hi = structural.VOICE_RANGES[v]
          assert lo <= pitch <= hi, (w["work_id"], v, pitch)


def test_progressions_voice_every_chord_correctly(works):
  by_id = {w["work_id"]: w for w in works}
  for name, (major, minor, _) in structural.PROGRESSIONS.items():
    for key in structural.KEYS:
      numerals = major if key.mode == "major" else minor
      frames = _sounding_pitches(by_id[f"structural/{name}-{key.name}"])
      chords = [tuple(f) for f, _ in itertools.groupby(frames)]
      assert len(chords) == len(numerals)
      m21_key = music21.key.Key(key.music21_tonic)
      for numeral, chord in zip(numerals, chords, strict=True):
        reference = music21.roman.RomanNumeral(numeral, m21_key).pitchClasses  # reference implementation
        s, a, t, b = chord
        assert s > a > t > b and s - a <= 12 and a - t <= 12  # no crossing, spacing
        assert b % 12 == reference[0]  # root position
        assert {p % 12 for p in chord} <= set(reference)
        assert {reference[0], reference[1]} <= {p % 12 for p in chord}
      for before, after in itertools.pairwise(chords):
        assert structural._parallels(before, after) == 0, (name, key.name, before, after)


def test_scales_in_each_voice(works):
  for w in (x for x in works if x["work_id"].startswith("structural/scales-")):
    key = next(k for k in structural.KEYS if w["work_id"].endswith(k.name))
    scale = music21.key.Key(key.music21_tonic).getScale()
    frames = _frames(w)
    for voice in range(4):
      starts = [tokenizer.token_to_pitch(int(t)) for t in frames[:, voice] if t >= tokenizer.PITCH_OFFSET]
      assert len(starts) == 15  # up an octave and back down
      up, down = starts[:8], starts[7:]
      assert up[-1] - up[0] == 12 and np.all(np.diff(up) > 0) and np.all(np.diff(down) < 0)
      assert down[-1] == up[0]
      assert up[0] % 12 in (key.tonic_pc, (key.tonic_pc + 7) % 12)  # tonic or plagal octave
      degrees_up = {(p - key.tonic_pc) % 12 for p in up}
      degrees_down = {(p - key.tonic_pc) % 12 for p in down}
      if key.mode == "major":
        assert down == up[::-1]
        assert {p % 12 for p in up} == {p.pitchClass for p in scale.getPitches()}
      else:  # melodic minor up, natural minor down
        assert degrees_up == {0, 2, 3, 5, 7, 9, 11} and degrees_down == {0, 2, 3, 5, 7, 8, 10}
    sounding = np.asarray([[p is not None for p in f] for f in _sounding_pitches(w)])
    assert (sounding.sum(axis=1) == 1).all()  # one voice at a time


def test_generation_is_deterministic():
  a = structural.structural_works(names=["circle-of-fifths", "scales"], keys=["F#-minor", "Bb-major"])
  b = structural.structural_works(names=["circle-of-fifths", "scales"], keys=["F#-minor", "Bb-major"])
  assert [w["work_id"] for w in a] == [w["work_id"] for w in b]
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x["tokens"], y["tokens"])
    assert x["sha256"] == y["sha256"]


def test_tokens_decode_back_to_the_same_tokens():
  work = structural.structural_works(names=["deceptive-cadence"], keys=["Eb-minor"])[0]
  decoded = tokenizer.decode_tokens(work["tokens"])
  np.testing.assert_array_equal(tokenizer.encode_score(decoded).tokens, work["tokens"])


def test_unknown_selection_and_rights_records(works):
  with pytest.raises(ValueError, match="unknown structural material"):
    structural.structural_works(names=["fugue"])
  with pytest.raises(ValueError, match="unknown keys"):
    structural.structural_works(keys=["H-major"])
  records = real_records(works[:3])
  assert all(r.content_class == "structural" and r.licence == "CC0-1.0" for r in records)
  assert [r.sha256 for r in records] == [w["sha256"] for w in works[:3]]
  assert apply_policy(records, default_policy(), 5).depth.tolist() == [5, 5, 5]
