"""Sounding notes of symbolic music, from music21 scores, files or govjax tokens, split into monophonic voices.

A score is reduced to its sounding notes: tied notes merged (per pitch, chord members too), chords contributing
all their pitches, grace notes, unpitched notes and zero-length notes counted in ``NoteList.skipped`` (nothing
dropped silently). There is one voice per part; a polyphonic part (e.g. a one-track MIDI of all four voices) is
split into as many voices as notes sound at once, each note going to the free voice nearest its previous pitch.
Times are exact fractions of a quarter note (snapped to 1/960, MIDI-tick exactness); bar starts are kept for
naming bars. These notes feed the fingerprints of :mod:`govjax.documentation.music_fingerprint`.

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

import bisect
import dataclasses
import itertools
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
    bar_offsets: onsets of the bars (quarter notes) when the source has measures, else empty.
  """

  notes: tuple[Note, ...]
  num_voices: int
  skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)
  bar_offsets: tuple[Fraction, ...] = ()

  def bar_of(self, onset: Fraction) -> int:
    """1-based bar number of an onset (from ``bar_offsets``; bars of 4 quarter notes when there are none)."""
    if not self.bar_offsets:
      return int(onset // 4) + 1
    return max(1, bisect.bisect_right(self.bar_offsets, onset))



# ------------------------------------------------------------------------------------------------ notes


def _fraction(value: Any) -> Fraction:
  return Fraction(value).limit_denominator(_MAX_DENOMINATOR)


_Event = tuple[Fraction, int, Fraction]  # (onset, pitch, duration)
_MAX_CONTINUITY_VOICES = 8  # above this many simultaneous notes, voices are split by pitch rank only


def _merge_ties(events: list[tuple[Fraction, int, Fraction, bool, bool]]) -> list[_Event]:
  """Merges tied notes: a note tied forward and the next note of the same pitch starting where it ends.

  Args:
    events: ``(onset, pitch, duration, tied_to_next, tied_from_previous)`` of one part (chord members each).

  Returns:
    ``(onset, pitch, duration)`` events, a tied chain as one note.
  """
  merged: list[list] = []
  # (pitch, end) -> indices of the notes tied forward (two voices of one part can hold a unison across a bar)
  open_ties: dict[tuple[int, Fraction], list[int]] = {}
  for onset, pitch, duration, to_next, from_previous in sorted(events, key=lambda e: (e[0], e[1], not e[4])):
    waiting = open_ties.get((pitch, onset))
    if waiting and from_previous:
      index = waiting.pop(0)
      merged[index][2] += duration
    else:
      index = len(merged)
      merged.append([onset, pitch, duration])
    if to_next:
      open_ties.setdefault((pitch, merged[index][0] + merged[index][2]), []).append(index)
  return [(o, p, d) for o, p, d in merged]


def _rank_split(events: list[_Event]) -> list[list[_Event]]:
  """Voices by pitch rank among the notes sounding at each onset (the first guess of :func:`_split_polyphonic`)."""
  voices: dict[int, list] = {}
  active: list[_Event] = []
  for event in events:
    active = [a for a in active if a[0] + a[2] > event[0]]
    active.append(event)
    rank = sum(1 for a in active if a[1] > event[1])
    voices.setdefault(rank, []).append(event)
  return [voices[k] for k in sorted(voices)]


def _split_polyphonic(events: list[_Event]) -> list[list[_Event]]:
  """Splits one part's notes into monophonic voices, highest first.

  The number of voices is the most notes sounding at once. Notes starting together go, highest to lowest, to
  voices that are free at that onset in voice order, choosing among them the assignment nearest to each
  voice's previous pitch (its median pitch under a pitch-rank split before its first note), with a penalty for
  crossing a held note of a neighbouring voice. So a voice that rests, or two voices that meet in a unison
  (one note in a merged track), leaves the other voices on their own lines. Parts with more than
  :data:`_MAX_CONTINUITY_VOICES` simultaneous notes are split by pitch rank.
  """
  events = sorted(events, key=lambda e: (e[0], -e[1]))
  overlapping = any(b[0] < a[0] + a[2] for a, b in zip(events, events[1:], strict=False))
  if not overlapping:
    return [events]
  ranked = _rank_split(events)
  if len(ranked) > _MAX_CONTINUITY_VOICES:
    return ranked
  count = len(ranked)
  prior = [float(np.median([e[1] for e in voice])) for voice in ranked]
  last: list[float] = list(prior)
  busy_until: list[Fraction] = [Fraction(-1)] * count
  held: list[int | None] = [None] * count
  voices: list[list[_Event]] = [[] for _ in range(count)]
  position = 0
  while position < len(events):
    onset = events[position][0]
    group = []
    while position < len(events) and events[position][0] == onset:
      group.append(events[position])
      position += 1
    free = [v for v in range(count) if busy_until[v] <= onset]
    if len(free) < len(group):  # equal-pitch doubles: more notes than voices; extra ones open new voices
      extra = len(group) - len(free)
      for _ in range(extra):
        prior.append(float(group[-1][1]))
        last.append(float(group[-1][1]))
        busy_until.append(Fraction(-1))
        held.append(None)
        voices.append([])
      free += list(range(count, count + extra))
      count += extra
    best, best_cost = None, None
    for chosen in itertools.combinations(free, len(group)):
      cost = 0.0
      for event, voice in zip(group, chosen, strict=True):
        cost += abs(event[1] - last[voice])
        for other in range(count):
          if held[other] is not None and busy_until[other] > onset and (
              (other < voice and event[1] > held[other]) or (other > voice and event[1] < held[other])):
            cost += 12.0
      if best_cost is None or cost < best_cost:
        best, best_cost = chosen, cost
    for event, voice in zip(group, best, strict=True):
      voices[voice].append(event)
      last[voice] = float(event[1])
      held[voice] = event[1]
      busy_until[voice] = event[0] + event[2]
  return [v for v in voices if v]


def _tie_flags(note: Any) -> tuple[bool, bool]:
  """``(tied to the next note, tied from the previous note)`` of one note (a chord member or a note)."""
  tie = getattr(note, "tie", None)
  kind = getattr(tie, "type", None)
  return kind in ("start", "continue"), kind in ("stop", "continue")


def _bar_offsets(parts: Sequence[Any]) -> tuple[Fraction, ...]:
  """Offsets (quarter notes) at which the bars of the first part with measures start."""
  for part in parts:
    measures = list(part.getElementsByClass(music21.stream.Measure))
    if measures:
      return tuple(sorted({_fraction(part.elementOffset(m)) for m in measures}))
  return ()


def notes_from_score(score: Any) -> NoteList:
  """Extracts the sounding notes of a music21 stream, one voice per part (polyphonic parts split into voices).

  Args:
    score: a ``music21.stream.Score`` (or any stream; a stream without parts is one part).

  Returns:
    :class:`NoteList`; chords contribute all their pitches; tied notes are merged per pitch (chord members
    too), so a one-track encoding gives the same notes as the parts it merges.
  """
  parts = list(getattr(score, "parts", []) or []) or [score]
  skipped = {"grace": 0, "unpitched": 0, "zero_duration": 0}
  voices: list[list[_Event]] = []
  for part in parts:
    flat = part.flatten()
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
      members = list(element.notes) if isinstance(element, music21.chord.Chord) else [element]
      for member in members:
        events.append((onset, int(round(member.pitch.ps)), duration, *_tie_flags(member)))
    if events:
      voices.extend(_split_polyphonic(_merge_ties(events)))
  notes = [Note(v, onset, pitch, duration)
           for v, events in enumerate(voices) for onset, pitch, duration in events]
  return NoteList(tuple(sorted(notes, key=lambda n: (n.voice, n.onset, n.pitch))), len(voices),
                  {k: v for k, v in skipped.items() if v}, _bar_offsets(parts))


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


MIDI_SUFFIXES = (".mid", ".midi")
_DRUM_CHANNEL = 10


def _midi_bar_offsets(signatures: list[tuple[int, int, int]], end: int, ticks: int) -> tuple[Fraction, ...]:
  """Bar starts (quarter notes) from ``(tick, numerator, denominator)`` time signatures up to tick ``end``."""
  if not signatures:
    return ()
  signatures = sorted(signatures)
  bars, position = [], Fraction(signatures[0][0], ticks)
  stop = Fraction(end, ticks)
  for i, (tick, numerator, denominator) in enumerate(signatures):
    position = max(position, Fraction(tick, ticks))
    until = Fraction(signatures[i + 1][0], ticks) if i + 1 < len(signatures) else stop
    length = Fraction(4 * numerator, denominator)
    while position < until and length > 0:
      bars.append(_fraction(position))
      position += length
  return tuple(bars)


def notes_from_midi(path: str | os.PathLike) -> NoteList:
  """The sounding notes of a MIDI file, read from its note events (no conversion to a score).

  Each (track, channel) is a part, split into monophonic voices as :func:`notes_from_score` splits a
  polyphonic part. A note sounds from its note-on to the matching note-off (a note-on of velocity 0 is a
  note-off); a second note-on of a pitch that is still sounding ends the first there (as a synthesiser
  does), and notes still sounding at the end of a track end at its last event. Onsets are exact MIDI ticks, so
  merging the tracks of a file into one, or splitting one, changes no note (music21's conversion to a score
  quantises and re-voices overlapping notes of one track, which shifted onsets). Notes on the drum channel
  (10) are counted as ``unpitched``, zero-length notes as ``zero_duration``. Bars come from the time
  signatures (none: bars of 4 quarter notes).

  Raises:
    MusicParseError: naming the file when it is not a readable MIDI file or uses SMPTE time.
  """
  path = pathlib.Path(path)
  midi = music21.midi.MidiFile()
  try:
    midi.open(str(path))
    midi.read()
    midi.close()
  except Exception as error:  # music21 raises many exception types for bad files
    raise MusicParseError(f"{path}: not a readable MIDI file ({type(error).__name__}: {error})") from error
  ticks = midi.ticksPerQuarterNote
  if not ticks:
    raise MusicParseError(f"{path}: MIDI in SMPTE time (no ticks per quarter note) is not supported")
  skipped = {"unpitched": 0, "zero_duration": 0}
  parts: dict[tuple[int, int], list[_Event]] = {}
  signatures: list[tuple[int, int, int]] = []
  end = 0
  def close(sounding: dict, key: tuple[int, int], at: int, part: int) -> None:
    start = sounding.pop(key)
    if key[0] == _DRUM_CHANNEL:
      skipped["unpitched"] += 1
    elif at <= start:
      skipped["zero_duration"] += 1
    else:
      parts.setdefault((part, key[0]), []).append(
          (_fraction(Fraction(start, ticks)), key[1], _fraction(Fraction(at - start, ticks))))

  for number, track in enumerate(midi.tracks):
    tick, sounding = 0, {}
    for event in track.events:
      if event.isDeltaTime():
        tick += event.time
        continue
      if event.type == music21.midi.MetaEvents.TIME_SIGNATURE and len(event.data) >= 2:
        signatures.append((tick, event.data[0], 2 ** event.data[1]))
      elif event.isNoteOn() or event.isNoteOff():
        key = (event.channel, event.pitch)
        if key in sounding:
          close(sounding, key, tick, number)
        if event.isNoteOn() and event.velocity > 0:
          sounding[key] = tick
    for key in list(sounding):
      close(sounding, key, tick, number)
    end = max(end, tick)
  voices: list[list[_Event]] = []
  for key in sorted(parts):
    voices.extend(_split_polyphonic(parts[key]))
  notes = [Note(v, onset, pitch, duration) for v, events in enumerate(voices) for onset, pitch, duration in events]
  return NoteList(tuple(sorted(notes, key=lambda n: (n.voice, n.onset, n.pitch))), len(voices),
                  {k: v for k, v in skipped.items() if v}, _midi_bar_offsets(signatures, end, ticks))


def notes_from_file(path: str | os.PathLike) -> NoteList:
  """The notes of a music file: :func:`notes_from_midi` for MIDI, else :func:`notes_from_score` of the parse."""
  if pathlib.Path(path).suffix.lower() in MIDI_SUFFIXES:
    return notes_from_midi(path)
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
