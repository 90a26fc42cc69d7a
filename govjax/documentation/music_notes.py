"""Sounding notes of symbolic music, from music21 scores, files or govjax tokens, split into monophonic voices.

A score is reduced to its sounding notes: ties merged, chords contributing all their pitches, grace notes,
unpitched notes and zero-length notes counted in ``NoteList.skipped`` (nothing dropped silently). There is one
voice per part; a polyphonic part (e.g. a one-track MIDI of all four voices) is split by pitch rank among the
notes sounding at each onset. Times are exact fractions of a quarter note (snapped to 1/960, MIDI-tick
exactness). These notes feed the fingerprints of :mod:`govjax.documentation.music_fingerprint`.

Example:
  >>> from music21 import corpus
  >>> notes = notes_from_score(corpus.parse("bach/bwv66.6"))
  >>> notes.num_voices, len(notes.notes) > 100
  (4, True)
  >>> back = notes_from_score(score_from_notes(notes.notes))
  >>> back.notes == notes.notes
  True
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import music21
import numpy as np

from govjax.data import tokenizer

MUSIC_SUFFIXES = (".mxl", ".musicxml", ".xml", ".mid", ".midi", ".abc", ".krn", ".mei", ".rntxt")
_MAX_DENOMINATOR = 960  # quarter-length values are snapped to 1/960 of a quarter (MIDI-tick exactness)


class MusicParseError(ValueError):
  """A music file or score that cannot be fingerprinted; the message names the source and the reason."""


@dataclasses.dataclass(frozen=True)
class Note:
  """One sounding note: voice index, onset and duration in quarter notes (exact fractions), MIDI pitch."""

  voice: int
  onset: Fraction
  pitch: int
  duration: Fraction


@dataclasses.dataclass(frozen=True)
class NoteList:
  """The notes of a score plus what was skipped.

  Attributes:
    notes: every note, sorted by (voice, onset, pitch).
    num_voices: number of voices (parts after splitting polyphonic parts).
    skipped: counts of skipped items by kind (``grace``, ``unpitched``, ``zero_duration``).
  """

  notes: tuple[Note, ...]
  num_voices: int
  skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)



# ------------------------------------------------------------------------------------------------ notes


def _fraction(value: Any) -> Fraction:
  return Fraction(value).limit_denominator(_MAX_DENOMINATOR)


_Event = tuple[Fraction, int, Fraction]  # (onset, pitch, duration)


def _split_polyphonic(events: list[_Event]) -> list[list[_Event]]:
  """Splits one part's notes into monophonic voices by pitch rank among the notes sounding at each onset."""
  events = sorted(events, key=lambda e: (e[0], -e[1]))
  overlapping = any(b[0] < a[0] + a[2] for a, b in zip(events, events[1:], strict=False))
  if not overlapping:
    return [events]
  voices: dict[int, list] = {}
  active: list[_Event] = []
  for event in events:
    onset = event[0]
    active = [a for a in active if a[0] + a[2] > onset]
    active.append(event)
    rank = sum(1 for a in active if a[1] > event[1])
    voices.setdefault(rank, []).append(event)
  return [voices[k] for k in sorted(voices)]


def notes_from_score(score: Any) -> NoteList:
  """Extracts the sounding notes of a music21 stream, one voice per part (polyphonic parts split by rank).

  Args:
    score: a ``music21.stream.Score`` (or any stream; a stream without parts is one part).

  Returns:
    :class:`NoteList`; chords contribute all their pitches, ties are merged.
  """
  parts = list(getattr(score, "parts", []) or []) or [score]
  skipped = {"grace": 0, "unpitched": 0, "zero_duration": 0}
  voices: list[list[_Event]] = []
  for part in parts:
    flat = part.stripTies().flatten()
    events = []
    for element in flat.notes:
      if isinstance(element, music21.note.Unpitched | music21.percussion.PercussionChord):
        skipped["unpitched"] += 1
        continue
      if element.duration.isGrace:
        skipped["grace"] += 1
        continue
      duration = _fraction(element.duration.quarterLength)
      if duration <= 0:
        skipped["zero_duration"] += 1
        continue
      onset = _fraction(flat.elementOffset(element))
      for pitch in element.pitches:
        events.append((onset, int(round(pitch.ps)), duration))
    if events:
      voices.extend(_split_polyphonic(events))
  notes = [Note(v, onset, pitch, duration)
           for v, events in enumerate(voices) for onset, pitch, duration in events]
  return NoteList(tuple(sorted(notes, key=lambda n: (n.voice, n.onset, n.pitch))), len(voices),
                  {k: v for k, v in skipped.items() if v})


def notes_from_tokens(tokens: Sequence[int] | np.ndarray, *, steps_per_quarter: int = 4) -> NoteList:
  """Notes of a frame-major SATB token sequence (see :mod:`govjax.data.tokenizer`), e.g. a model output.

  Args:
    tokens: int ``[T * 4]``: PAD=0, REST=1, HOLD=2, pitch tokens ``3 + midi - 28``; PAD frames are ignored.
    steps_per_quarter: grid resolution of the tokens.

  Returns:
    :class:`NoteList` with 4 voices (Soprano first).
  """

  grid = np.asarray(tokens, dtype=np.int64).reshape(-1, tokenizer.NUM_VOICES)
  step = Fraction(1, steps_per_quarter)
  notes, skipped = [], {}
  for voice in range(grid.shape[1]):
    start = pitch = None
    for t, token in enumerate(list(grid[:, voice]) + [tokenizer.REST]):
      if token == tokenizer.HOLD and pitch is not None:
        continue
      if pitch is not None:
        notes.append(Note(voice, start * step, pitch, (t - start) * step))
        pitch = None
      if token >= tokenizer.PITCH_OFFSET:
        start, pitch = t, int(token) - tokenizer.PITCH_OFFSET + tokenizer.MIN_PITCH
      elif token == tokenizer.HOLD:
        skipped["hold_without_note"] = skipped.get("hold_without_note", 0) + 1
  return NoteList(tuple(sorted(notes, key=lambda n: (n.voice, n.onset, n.pitch))), grid.shape[1], skipped)


def parse_music_file(path: str | os.PathLike) -> Any:
  """Parses a MusicXML / MIDI / ABC / Humdrum file with music21 (an opus gives its first score).

  Raises:
    MusicParseError: naming the file when music21 cannot parse it.
  """
  path = pathlib.Path(path)
  try:
    parsed = music21.converter.parse(path, forceSource=True)
  except Exception as error:  # music21 raises many exception types for bad files
    raise MusicParseError(f"{path}: music21 cannot parse it ({type(error).__name__}: {error})") from error
  if isinstance(parsed, music21.stream.Opus):
    scores = list(parsed.scores)
    if not scores:
      raise MusicParseError(f"{path}: the file holds an empty opus")
    parsed = scores[0]
  return parsed


def _musicxml_documents(path: pathlib.Path) -> Iterable[bytes]:
  if path.suffix.lower() != ".mxl":
    yield path.read_bytes()
    return
  with zipfile.ZipFile(path) as archive:
    for name in archive.namelist():
      if not name.startswith("META-INF/") and name.lower().endswith((".xml", ".musicxml")):
        yield archive.read(name)


def count_notes_in_file(path: str | os.PathLike) -> int | None:
  """The number of pitched notes of a MusicXML or MIDI file, counted without music21 parsing the score.

  MusicXML: ``<pitch>`` elements (each note of a chord counts, a tied note counts once per notated head).
  MIDI: note-on events with a non-zero velocity. Fast (a 5,000-measure four-part MIDI file takes about a
  second), so that a query can be refused before the slow parse.

  Args:
    path: the music file.

  Returns:
    The count, or None for other formats (ABC, Humdrum, MEI, RomanText) and files that cannot be read this way
    (music21 then reports them when it parses).
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  try:
    if suffix in (".mxl", ".musicxml", ".xml"):
      return sum(document.count(b"<pitch>") for document in _musicxml_documents(path))
    if suffix in (".mid", ".midi"):
      midi_file = music21.midi.MidiFile()
      midi_file.open(str(path))
      try:
        midi_file.read()
      finally:
        midi_file.close()
      note_on = music21.midi.ChannelVoiceMessages.NOTE_ON
      return sum(1 for track in midi_file.tracks for event in track.events
                 if event.type == note_on and event.velocity)
  except Exception:  # unreadable files (music21's MIDI reader raises many exception types): the parse reports them
    return None
  return None


def notes_from_file(path: str | os.PathLike) -> NoteList:
  """:func:`notes_from_score` of a parsed file."""
  return notes_from_score(parse_music_file(path))


def score_from_notes(notes: Iterable[Note]) -> Any:
  """A music21 Score with one part per voice holding ``notes`` (for writing MusicXML / MIDI copies)."""
  by_voice: dict[int, list[Note]] = {}
  for note in notes:
    by_voice.setdefault(note.voice, []).append(note)
  score = music21.stream.Score()
  for voice in sorted(by_voice):
    part = music21.stream.Part(id=f"voice{voice}")
    for note in sorted(by_voice[voice], key=lambda n: (n.onset, n.pitch)):
      element = music21.note.Note(note.pitch)
      element.duration = music21.duration.Duration(note.duration)
      part.insert(note.onset, element)
    score.insert(0, part)
  return score
