"""Tests for govjax.data.tokenizer: exact tokens of a hand-made score, errors, and round trips."""

from __future__ import annotations

from fractions import Fraction

import hypothesis
import hypothesis.strategies as st
import music21
import numpy as np
import pytest

from govjax.data import tokenizer as tk
from govjax.data.tokenizer import HOLD, PAD, REST

LOSSLESS_CHORALES = ("bach/bwv10.7", "bach/bwv67.4.xml")  # 4/4; 3/4 with a pickup measure
ADJUSTED_CHORALE = "bach/bwv432"  # 32nd notes: snapped to the 16th grid


def _tok(midi: int) -> int:
  return tk.PITCH_OFFSET + midi - tk.MIN_PITCH


def _part(name, elements):
  part = music21.stream.Part(id=name)
  part.partName = name
  for offset, element in elements:
    part.insert(offset, element)
  return part


def _note(pitch, quarter_length, tie=None):
  note = music21.note.Note(pitch, quarterLength=quarter_length)
  if tie:
    note.tie = music21.tie.Tie(tie)
  return note


def hand_made_score():
  """Tied notes, a chord, a grace note, a rest and two off-grid (triplet-like) notes."""
  soprano = _part("Soprano", [(0, _note("C5", 1, "start")), (1, _note("C5", 1, "stop")),
                              (2, music21.note.Rest(quarterLength=1))])
  alto = _part("Alto", [(0, _note("E4", 2)), (2, music21.chord.Chord(["G4", "C5"], quarterLength=1))])
  grace = music21.note.Note("D4").getGrace()
  tenor = _part("Tenor", [(0, grace), (0, _note("G3", 3))])
  bass = _part("Bass", [(0, _note("C3", Fraction(1, 3))), (Fraction(1, 3), _note("E3", Fraction(11, 3)))])
  score = music21.stream.Score()
  for part in (soprano, alto, tenor, bass):
    score.insert(0, part)
  return score


def expected_hand_made_tokens():
  grid = np.full((16, 4), REST, np.int32)
  grid[0, 0], grid[1:8, 0] = _tok(72), HOLD  # C5 tied over two quarters
  grid[0, 1], grid[1:8, 1] = _tok(64), HOLD  # E4 half note
  grid[8, 1], grid[9:12, 1] = _tok(72), HOLD  # chord G4+C5 -> top note C5
  grid[0, 2], grid[1:12, 2] = _tok(55), HOLD  # G3 dotted half; grace note skipped
  grid[0, 3] = _tok(48)  # C3 for 1/3 quarter -> one step
  grid[1, 3], grid[2:16, 3] = _tok(52), HOLD  # E3 from 1/3 to 4 -> steps 1..16
  return grid.reshape(-1)


def test_vocabulary_layout():
  assert (PAD, REST, HOLD, tk.PITCH_OFFSET) == (0, 1, 2, 3)
  assert tk.VOCAB_SIZE == 3 + 96 - 28 + 1
  assert tk.pitch_to_token(28) == 3 and tk.pitch_to_token(96) == tk.VOCAB_SIZE - 1
  assert all(tk.token_to_pitch(tk.pitch_to_token(m)) == m for m in range(28, 97))
  with pytest.raises(tk.EncodingError, match="outside"):
    tk.pitch_to_token(97)
  with pytest.raises(ValueError, match="not a pitch token"):
    tk.token_to_pitch(HOLD)


def test_encode_hand_made_score_exact_tokens_and_counts():
  encoded = tk.encode_score(hand_made_score())
  np.testing.assert_array_equal(encoded.tokens, expected_hand_made_tokens())
  assert encoded.tokens.dtype == np.int32
  assert encoded.num_frames == 16
  assert encoded.notes_encoded == 6
  assert encoded.adjustments == {"notes_quantized": 2, "chords_reduced": 1, "grace_skipped": 1}


def test_encode_coarser_grid():
  encoded = tk.encode_score(hand_made_score(), steps_per_quarter=1)
  grid = encoded.tokens.reshape(-1, 4)
  assert encoded.num_frames == 4
  # Bass: C3 (0..1/3) and E3 (1/3..4) both snap to step 0; of two off-grid notes the higher one stays.
  np.testing.assert_array_equal(grid[:, 3], [_tok(52), HOLD, HOLD, HOLD])
  assert encoded.adjustments == {
      "notes_quantized": 2, "notes_dropped_by_quantization": 1, "chords_reduced": 1, "grace_skipped": 1}


def test_quantization_collision_keeps_the_on_grid_note():
  # Two 32nd notes then a quarter on the beat: the second 32nd rounds onto the beat and is dropped.
  soprano = _part("Soprano", [(0, _note("C5", 0.75)), (0.75, _note("D5", 0.125)), (0.875, _note("E5", 0.125)),
                              (1, _note("F5", 1))])
  others = [_part(name, [(0, _note(p, 2))]) for name, p in (("Alto", "C4"), ("Tenor", "G3"), ("Bass", "C3"))]
  score = music21.stream.Score()
  for part in (soprano, *others):
    score.insert(0, part)
  encoded = tk.encode_score(score)
  np.testing.assert_array_equal(encoded.tokens.reshape(-1, 4)[:, 0],
                                [_tok(72), HOLD, HOLD, _tok(74), _tok(77), HOLD, HOLD, HOLD])
  assert encoded.adjustments == {"notes_quantized": 2, "notes_dropped_by_quantization": 1}


def test_encoding_errors():
  score = hand_made_score()
  three = music21.stream.Score()
  for part in list(score.parts)[:3]:
    three.insert(0, part)
  with pytest.raises(tk.EncodingError, match="expected 4 voices, found 3"):
    tk.encode_score(three)
  with pytest.raises(tk.EncodingError, match="expected a music21 Score, got Part"):
    tk.encode_score(score.parts[0])
  high = hand_made_score()
  high.parts[0].notes[0].pitch.midi = 100
  with pytest.raises(tk.EncodingError, match="midi 100.*Soprano"):
    tk.encode_score(high)
  silent = music21.stream.Score()
  for name in tk.VOICE_NAMES:
    silent.insert(0, _part(name, [(0, music21.note.Rest(quarterLength=4))]))
  with pytest.raises(tk.EncodingError, match="no notes"):
    tk.encode_score(silent)
  with pytest.raises(ValueError, match="steps_per_quarter"):
    tk.encode_score(score, steps_per_quarter=0)


def test_decode_hand_made_tokens_gives_the_notes():
  score = tk.decode_tokens(expected_hand_made_tokens(), title="hand made")
  assert [p.partName for p in score.parts] == list(tk.VOICE_NAMES)
  assert score.metadata.title == "hand made"
  assert tk.note_events(score) == [
      (0, 72, 0, 2), (1, 64, 0, 2), (1, 72, 2, 1), (2, 55, 0, 3),
      (3, 48, 0, Fraction(1, 4)), (3, 52, Fraction(1, 4), Fraction(15, 4)),
  ]
  # Every part lasts the whole piece (rests fill the end).
  assert all(part.highestTime == 4 for part in score.parts)


def test_decode_is_lenient_about_sample_artifacts():
  tokens = np.array([
      HOLD, REST, _tok(60), _tok(48),   # HOLD with no note: a rest
      _tok(72), HOLD, HOLD, HOLD,
      PAD, REST, HOLD, HOLD,            # PAD inside: a rest; HOLD after REST: still a rest
      PAD, PAD, PAD, PAD,               # trailing PAD frames are dropped
  ], np.int32)
  score = tk.decode_tokens(tokens)
  assert tk.note_events(score) == [(0, 72, Fraction(1, 4), Fraction(1, 4)), (2, 60, 0, Fraction(3, 4)),
                                   (3, 48, 0, Fraction(3, 4))]
  assert score.highestTime == Fraction(3, 4)


@pytest.mark.parametrize("tokens, message", [
    (np.zeros((2, 4), np.int32), "1-D"),
    (np.array([1.0, 1.0, 1.0, 1.0]), "integers"),
    (np.array([1, 1, 1], np.int32), "multiple of 4"),
    (np.array([1, 1, 1, tk.VOCAB_SIZE], np.int32), "outside"),
])
def test_decode_rejects_malformed_tokens(tokens, message):
  with pytest.raises(ValueError, match=message):
    tk.decode_tokens(tokens)


@pytest.fixture(scope="module")
def parsed_chorales():
  names = (*LOSSLESS_CHORALES, ADJUSTED_CHORALE)
  return {name: music21.corpus.parse(name, forceSource=True) for name in names}


def _snapped(events, steps_per_quarter=4):
  return [(v, p, round(o * steps_per_quarter), round(d * steps_per_quarter)) for v, p, o, d in events]


@pytest.mark.parametrize("name", LOSSLESS_CHORALES)
def test_real_chorale_decoded_notes_equal_original(parsed_chorales, name):
  original = parsed_chorales[name]
  encoded = tk.encode_score(original)
  assert encoded.adjustments == {}
  decoded = tk.decode_tokens(encoded.tokens)
  assert _snapped(tk.note_events(decoded)) == _snapped(tk.note_events(original))
  assert len(tk.note_events(decoded)) == encoded.notes_encoded


@pytest.mark.parametrize("name", (*LOSSLESS_CHORALES, ADJUSTED_CHORALE))
def test_real_chorale_encode_decode_encode(parsed_chorales, name):
  encoded = tk.encode_score(parsed_chorales[name])
  again = tk.encode_score(tk.decode_tokens(encoded.tokens))
  np.testing.assert_array_equal(again.tokens, encoded.tokens)
  assert again.adjustments == {}


@pytest.mark.parametrize("name", (*LOSSLESS_CHORALES, ADJUSTED_CHORALE))
def test_real_chorale_midi_round_trip(parsed_chorales, name, tmp_path):
  encoded = tk.encode_score(parsed_chorales[name])
  path = tk.write_midi(tk.decode_tokens(encoded.tokens), tmp_path / "out" / "chorale.mid")
  assert path.read_bytes()[:4] == b"MThd"
  reparsed = music21.converter.parse(path, forceSource=True)
  np.testing.assert_array_equal(tk.encode_score(reparsed).tokens, encoded.tokens)


@pytest.mark.parametrize("suffix", (".musicxml", ".mxl"))
def test_real_chorale_musicxml_round_trip(parsed_chorales, suffix, tmp_path):
  encoded = tk.encode_score(parsed_chorales[LOSSLESS_CHORALES[1]])
  path = tk.write_musicxml(tk.decode_tokens(encoded.tokens), tmp_path / f"chorale{suffix}")
  reparsed = music21.converter.parse(path, forceSource=True)
  np.testing.assert_array_equal(tk.encode_score(reparsed).tokens, encoded.tokens)


@st.composite
def canonical_tokens(draw):
  """Token sequences that the encoder itself could produce: runs of notes (pitch + HOLDs) and rests."""
  voices = []
  for _ in range(4):
    tokens = []
    for _ in range(draw(st.integers(1, 6))):
      length = draw(st.integers(1, 9))
      if draw(st.booleans()):
        tokens += [_tok(draw(st.integers(tk.MIN_PITCH, tk.MAX_PITCH)))] + [HOLD] * (length - 1)
      else:
        tokens += [REST] * length
    voices.append(tokens)
  hypothesis.assume(any(t >= tk.PITCH_OFFSET for v in voices for t in v))
  frames = max(len(v) for v in voices)
  grid = np.array([v + [REST] * (frames - len(v)) for v in voices], np.int32).T
  while (grid[-1] == REST).all():  # the encoder ends at the end of the last note
    grid = grid[:-1]
  return grid.reshape(-1)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(tokens=canonical_tokens(), steps_per_quarter=st.sampled_from([1, 2, 3, 4, 8]))
def test_decode_encode_round_trip_property(tokens, steps_per_quarter):
  score = tk.decode_tokens(tokens, steps_per_quarter=steps_per_quarter)
  encoded = tk.encode_score(score, steps_per_quarter=steps_per_quarter)
  np.testing.assert_array_equal(encoded.tokens, tokens)
  assert encoded.adjustments == {}
