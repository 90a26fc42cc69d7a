"""Sounding notes: tokens, voices of polyphonic parts, tied chords merged, bars, skips counted, round trip."""

from __future__ import annotations

from fractions import Fraction

import music21
import pytest

from govjax.documentation import music_fingerprint as mf
from govjax.documentation import music_notes as mn
from govjax.documentation import music_transforms as mt


@pytest.fixture(scope="module")
def chorale():
  return music21.corpus.parse("bach/bwv66.6")


def test_tokens_give_the_tokenizer_reference_notes(chorale):
  from govjax.data import tokenizer

  encoded = tokenizer.encode_score(chorale)
  from_tokens = mn.notes_from_tokens(encoded.tokens)
  reference = tokenizer.note_events(chorale)  # bwv66.6 is on the 16th grid: no adjustment
  assert sorted((n.voice, n.pitch, n.onset, n.duration) for n in from_tokens.notes) == sorted(
      (e.voice, e.pitch, Fraction(e.offset), Fraction(e.duration)) for e in reference)


def _stream(parts):
  score = music21.stream.Score()
  for events in parts:
    part = music21.stream.Part()
    for onset, pitches, duration in events:
      element = music21.chord.Chord(pitches) if isinstance(pitches, list) else music21.note.Note(pitches)
      element.quarterLength = duration
      part.insert(onset, element)
    score.insert(0, part)
  return score


def test_polyphonic_part_is_split_into_voices_by_pitch_rank():
  score = _stream([[(0, [60, 67], 1), (1, [62, 65], 1), (2, [64, 72], 2)]])
  notes = mn.notes_from_score(score)
  assert notes.num_voices == 2
  voices = {v: [n.pitch for n in notes.notes if n.voice == v] for v in (0, 1)}
  assert voices == {0: [67, 65, 72], 1: [60, 62, 64]}


def test_grace_notes_are_skipped_and_counted():
  score = _stream([[(0, 60, 1), (1, 62, 1)]])
  grace = music21.note.Note(61).getGrace()
  score.parts[0].insert(1, grace)
  notes = mn.notes_from_score(score)
  assert [n.pitch for n in notes.notes] == [60, 62]
  assert notes.skipped == {"grace": 1}


def test_score_round_trip_through_midi_keeps_the_notes(chorale, tmp_path):
  notes = mn.notes_from_score(chorale)
  mn.score_from_notes(notes.notes).write("midi", fp=str(tmp_path / "x.mid"))
  back = mn.notes_from_file(tmp_path / "x.mid")
  key = lambda n: (n.onset, n.pitch, n.duration)
  assert sorted(map(key, back.notes)) == sorted(map(key, notes.notes))


def test_unparsable_file_is_named(tmp_path):
  (tmp_path / "broken.mid").write_bytes(b"not midi")
  with pytest.raises(mn.MusicParseError, match="broken.mid: not a readable MIDI file"):
    mn.notes_from_file(tmp_path / "broken.mid")
  (tmp_path / "broken.xml").write_bytes(b"<not music")
  with pytest.raises(mn.MusicParseError, match="broken.xml: music21 cannot parse it"):
    mn.notes_from_file(tmp_path / "broken.xml")


def test_tied_chord_members_are_merged_per_pitch():
  part = music21.stream.Part()
  first = music21.chord.Chord([60, 64, 67], quarterLength=2)
  second = music21.chord.Chord([60, 65, 67], quarterLength=2)
  for member, kind in zip(first.notes, ("start", None, "start"), strict=True):
    member.tie = music21.tie.Tie(kind) if kind else None
  for member, kind in zip(second.notes, ("stop", None, "stop"), strict=True):
    member.tie = music21.tie.Tie(kind) if kind else None
  part.insert(0, first)
  part.insert(2, second)
  score = music21.stream.Score()
  score.insert(0, part)
  notes = mn.notes_from_score(score)
  assert sorted((n.onset, n.pitch, n.duration) for n in notes.notes) == [
      (0, 60, 4), (0, 64, 2), (0, 67, 4), (2, 65, 2)]


def test_a_resting_voice_does_not_shift_the_others():
  # three voices; the middle one rests at beat 1, so pitch rank alone would put the lowest voice in the middle
  score = _stream([[(0, [72, 64, 48], 1), (1, [71, 50], 1), (2, [72, 65, 52], 1)]])
  notes = mn.notes_from_score(score)
  voices = {v: [n.pitch for n in notes.notes if n.voice == v] for v in range(notes.num_voices)}
  assert voices == {0: [72, 71, 72], 1: [64, 65], 2: [48, 50, 52]}


def test_bars_are_named_from_the_measures(chorale):
  notes = mn.notes_from_score(chorale)
  assert notes.bar_offsets[:2] == (0, 1)  # a one-beat pickup
  assert notes.bar_of(Fraction(0)) == 1 and notes.bar_of(Fraction(1)) == 2 and notes.bar_of(Fraction(5)) == 3
  assert mn.NoteList((), 0).bar_of(Fraction(9)) == 3


def _midi_bytes(events, ticks=480):
  """A one-track MIDI file of ``(delta ticks, status, data1, data2)`` channel events (and meta events as bytes)."""
  body = b""
  for delta, *message in events:
    varlen = [delta & 0x7F]
    delta >>= 7
    while delta:
      varlen.insert(0, (delta & 0x7F) | 0x80)
      delta >>= 7
    body += bytes(varlen) + (message[0] if isinstance(message[0], bytes) else bytes(message))
  body += b"\x00\xff\x2f\x00"
  header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
  header += ticks.to_bytes(2, "big")
  return header + b"MTrk" + len(body).to_bytes(4, "big") + body


def test_midi_notes_come_from_the_note_events(tmp_path):
  path = tmp_path / "events.mid"
  path.write_bytes(_midi_bytes([
      (0, b"\xff\x58\x04\x03\x02\x18\x08"),  # 3/4
      (0, 0x90, 60, 80), (0, 0x90, 67, 80),  # two notes at once on channel 1
      (240, 0x90, 60, 80),  # 60 struck again while sounding: the first 60 ends here
      (240, 0x80, 60, 0), (0, 0x90, 67, 0),  # note-off, and note-on velocity 0 as a note-off
      (0, 0x99, 36, 80), (480, 0x89, 36, 0),  # drum channel 10: unpitched
      (0, 0x90, 62, 80), (0, 0x80, 62, 0),  # zero length
      (0, 0x90, 64, 80), (960, 0xB0, 7, 100),  # still sounding at the end of the track
  ]))
  notes = mn.notes_from_file(path)
  assert sorted((n.onset, n.pitch, n.duration) for n in notes.notes) == [
      (0, 60, Fraction(1, 2)), (0, 67, 1), (Fraction(1, 2), 60, Fraction(1, 2)), (2, 64, 2)]
  assert notes.skipped == {"unpitched": 1, "zero_duration": 1}
  assert notes.bar_offsets == (0, 3) and notes.num_voices == 2


@pytest.mark.parametrize("work", ["bach/bwv122.6", "bach/bwv137.5"])
def test_merging_or_splitting_tracks_keeps_the_exact_content(work, tmp_path):
  """bwv122.6 merged into one MIDI track was re-voiced and shifted by a score conversion; bwv137.5's tenor and
  bass hold a unison tied over a bar line, which two voices of one staff must keep as two tied notes."""
  notes = mn.notes_from_score(music21.corpus.parse(work))
  mn.score_from_notes(mt.merge_tracks(notes.notes)).write("midi", fp=str(tmp_path / "merged.mid"))
  mn.score_from_notes(mt.split_tracks(notes.notes)).write("musicxml", fp=str(tmp_path / "split.musicxml"))
  for copy in ("merged.mid", "split.musicxml"):
    back = mn.notes_from_file(tmp_path / copy)
    assert mf.content_sha256(back.notes) == mf.content_sha256(notes.notes), copy
