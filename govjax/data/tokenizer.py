"""Four-voice (SATB) chorale tokenizer on a fixed time grid.

A chorale becomes a sequence of *frames* on a grid of ``steps_per_quarter`` steps per quarter note (default 4:
sixteenth notes). Every frame holds one token per voice in the order Soprano, Alto, Tenor, Bass, and the flat
sequence is frame-major: ``[f0S, f0A, f0T, f0B, f1S, ...]``. Tokens:

* ``PAD`` (0): padding, never produced by :func:`encode_score`;
* ``REST`` (1): the voice is silent in this frame;
* ``HOLD`` (2): the voice's previous note continues through this frame;
* ``PITCH_OFFSET + (midi - MIN_PITCH)`` for ``MIN_PITCH <= midi <= MAX_PITCH``: a note starts in this frame.

Nothing is altered silently: :class:`EncodedScore` counts every note that had to be snapped to the grid,
dropped because snapping made it collide with another note, lengthened to one step, cut short by an
overlapping note, reduced from a chord to its top note, or skipped (grace notes). Scores that cannot be
encoded raise :class:`EncodingError` with a reason.

Example:
  >>> import tempfile
  >>> from music21 import corpus
  >>> encoded = encode_score(corpus.parse("bach/bwv10.7"))
  >>> encoded.num_frames, encoded.tokens[:8].tolist(), encoded.adjustments
  (352, [49, 42, 33, 30, 2, 2, 2, 2], {})
  >>> score = decode_tokens(encoded.tokens)
  >>> bool((encode_score(score).tokens == encoded.tokens).all())
  True
  >>> write_midi(score, tempfile.mkdtemp() + "/bwv10.7.mid").suffix
  '.mid'
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from fractions import Fraction
from typing import NamedTuple

import music21
import numpy as np

PAD = 0
REST = 1
HOLD = 2
PITCH_OFFSET = 3
MIN_PITCH = 28  # E1
MAX_PITCH = 96  # C7
VOCAB_SIZE = PITCH_OFFSET + MAX_PITCH - MIN_PITCH + 1
NUM_VOICES = 4
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
DEFAULT_STEPS_PER_QUARTER = 4


class EncodingError(ValueError):
  """A score cannot be encoded; ``reason`` says why (e.g. "expected 4 voices, found 3")."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


class NoteEvent(NamedTuple):
  """One sounding note: voice index (0 = Soprano), MIDI pitch, offset and duration in quarter notes."""

  voice: int
  pitch: int
  offset: Fraction
  duration: Fraction


@dataclasses.dataclass(frozen=True)
class EncodedScore:
  """Tokens of one score plus counts of every adjustment the encoder made.

  Attributes:
    tokens: int32 array ``[num_frames * 4]``, frame-major SATB.
    num_frames: number of frames (grid steps); the last frame is the end of the last note.
    steps_per_quarter: grid resolution used.
    notes_encoded: notes written as pitch tokens.
    notes_quantized: notes whose onset or end was not on the grid and was rounded to it.
    notes_dropped_by_quantization: off-grid notes dropped because rounding put their onset on the same step
      as another note of the same part (e.g. the second of two 32nd notes on a 16th grid).
    notes_lengthened: notes shorter than one step after rounding, lengthened to one step.
    chords_reduced: chords (or simultaneous notes within one part) reduced to their top note.
    grace_skipped: grace notes skipped (they have no duration on the grid).
    overlaps_truncated: notes cut short because a later note of the same part started before they ended.
  """

  tokens: np.ndarray
  num_frames: int
  steps_per_quarter: int
  notes_encoded: int = 0
  notes_quantized: int = 0
  notes_dropped_by_quantization: int = 0
  notes_lengthened: int = 0
  chords_reduced: int = 0
  grace_skipped: int = 0
  overlaps_truncated: int = 0

  ADJUSTMENT_FIELDS = (
      "notes_quantized",
      "notes_dropped_by_quantization",
      "notes_lengthened",
      "chords_reduced",
      "grace_skipped",
      "overlaps_truncated",
  )

  @property
  def adjustments(self) -> dict[str, int]:
    """The non-zero adjustment counts, e.g. ``{"grace_skipped": 2}`` (empty when encoded losslessly)."""
    counts = {name: getattr(self, name) for name in self.ADJUSTMENT_FIELDS}
    return {name: count for name, count in counts.items() if count}


def pitch_to_token(midi: int) -> int:
  """Returns the token of MIDI pitch ``midi``; raises ``EncodingError`` outside MIN_PITCH..MAX_PITCH."""
  if not MIN_PITCH <= midi <= MAX_PITCH:
    raise EncodingError(f"pitch {midi} is outside the range {MIN_PITCH}..{MAX_PITCH}")
  return PITCH_OFFSET + midi - MIN_PITCH


def token_to_pitch(token: int) -> int:
  """Returns the MIDI pitch of a pitch token; raises ``ValueError`` for PAD/REST/HOLD or unknown tokens."""
  if not PITCH_OFFSET <= token < VOCAB_SIZE:
    raise ValueError(f"token {token} is not a pitch token ({PITCH_OFFSET}..{VOCAB_SIZE - 1})")
  return int(token) - PITCH_OFFSET + MIN_PITCH


def _check_steps_per_quarter(steps_per_quarter: int) -> None:
  if not isinstance(steps_per_quarter, int | np.integer) or steps_per_quarter < 1:
    raise ValueError(f"steps_per_quarter must be a positive integer, got {steps_per_quarter!r}")


def _score_parts(score) -> list:
  if not isinstance(score, music21.stream.Score):
    raise EncodingError(f"expected a music21 Score, got {type(score).__name__}")
  parts = list(score.parts)
  if len(parts) != NUM_VOICES:
    raise EncodingError(f"expected {NUM_VOICES} voices, found {len(parts)}")
  return parts


def _raw_part_notes(part):
  """Yields ``(offset, duration, pitches, is_grace)`` for every note/chord of a part, ties merged."""
  flat = part.stripTies().flatten()
  for element in flat.notes:
    if isinstance(element, music21.note.Unpitched | music21.percussion.PercussionChord):
      raise EncodingError(f"unpitched note at offset {flat.elementOffset(element)}")
    offset = Fraction(flat.elementOffset(element))
    duration = Fraction(element.duration.quarterLength)
    yield offset, duration, list(element.pitches), element.duration.isGrace


def note_events(score) -> list[NoteEvent]:
  """Returns the sounding notes of a 4-part score, ties merged, chords as their top note, grace notes skipped.

  Offsets and durations are exact (not snapped to a grid), so this is the reference the encoder is checked
  against. Sorted by (voice, offset, pitch).

  Args:
    score: a ``music21.stream.Score`` with exactly 4 parts (Soprano, Alto, Tenor, Bass in that order).

  Returns:
    A list of :class:`NoteEvent`.
  """
  events = []
  for voice, part in enumerate(_score_parts(score)):
    for offset, duration, pitches, is_grace in _raw_part_notes(part):
      if is_grace or not pitches:
        continue
      top = max(pitches, key=lambda p: p.ps)
      events.append(NoteEvent(voice, top.midi, offset, duration))
  return sorted(events)


def _snap(value: Fraction, steps_per_quarter: int) -> int:
  """Rounds ``value`` quarter notes to the nearest grid step (halves round up, deterministically)."""
  return math.floor(value * steps_per_quarter + Fraction(1, 2))


def encode_score(score, *, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER) -> EncodedScore:
  """Encodes a four-part score as frame-major SATB tokens.

  Parts are taken in score order as Soprano, Alto, Tenor, Bass. Ties are merged (``stripTies``), so a tied
  note is one pitch token followed by HOLDs. The sequence ends with the end of the last note.

  Args:
    score: a ``music21.stream.Score`` with exactly 4 parts.
    steps_per_quarter: grid resolution (4 = sixteenth notes).

  Returns:
    An :class:`EncodedScore` with the tokens and the adjustment counts.

  Raises:
    EncodingError: not a Score, not 4 parts, an unpitched note, a pitch outside MIN_PITCH..MAX_PITCH, or no
      notes at all.

  Example::

      encoded = encode_score(music21.corpus.parse("bach/bwv10.7"))
      assert encoded.tokens.shape == (4 * encoded.num_frames,)
  """
  _check_steps_per_quarter(steps_per_quarter)
  counts = {name: 0 for name in EncodedScore.ADJUSTMENT_FIELDS}
  voices: list[list[tuple[int, int, int]]] = []  # per voice: (start_step, end_step, midi)
  for voice, part in enumerate(_score_parts(score)):
    candidates = []
    for offset, duration, pitches, is_grace in _raw_part_notes(part):
      if is_grace:
        counts["grace_skipped"] += 1
        continue
      if not pitches:
        continue
      if len(pitches) > 1:
        counts["chords_reduced"] += 1
      top = max(pitches, key=lambda p: p.ps)
      if not MIN_PITCH <= top.midi <= MAX_PITCH:
        raise EncodingError(
            f"pitch {top.nameWithOctave} (midi {top.midi}) in {VOICE_NAMES[voice]} at offset "
            f"{float(offset)} is outside the range {MIN_PITCH}..{MAX_PITCH}"
        )
      start = _snap(offset, steps_per_quarter)
      end = _snap(offset + duration, steps_per_quarter)
      quantized = start != offset * steps_per_quarter or end != (offset + duration) * steps_per_quarter
      counts["notes_quantized"] += quantized
      candidates.append((start, quantized, -top.midi, end))
    notes: list[tuple[int, int, int]] = []
    # Same start step: prefer a note that was on the grid, then the higher pitch.
    for start, quantized, neg_midi, end in sorted(candidates):
      if notes and notes[-1][0] == start:
        counts["notes_dropped_by_quantization" if quantized else "chords_reduced"] += 1
        continue
      if end <= start:
        end = start + 1
        counts["notes_lengthened"] += 1
      if notes and notes[-1][1] > start:
        counts["overlaps_truncated"] += 1
        notes[-1] = (notes[-1][0], start, notes[-1][2])
      notes.append((start, end, -neg_midi))
    voices.append(notes)
  num_frames = max((notes[-1][1] for notes in voices if notes), default=0)
  if num_frames == 0:
    raise EncodingError("score has no notes")
  grid = np.full((num_frames, NUM_VOICES), REST, dtype=np.int32)
  for voice, notes in enumerate(voices):
    for start, end, midi in notes:
      grid[start, voice] = pitch_to_token(midi)
      grid[start + 1 : end, voice] = HOLD
  return EncodedScore(
      tokens=grid.reshape(-1),
      num_frames=num_frames,
      steps_per_quarter=int(steps_per_quarter),
      notes_encoded=sum(len(notes) for notes in voices),
      **counts,
  )


def _check_tokens(tokens) -> np.ndarray:
  tokens = np.asarray(tokens)
  if tokens.ndim != 1:
    raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
  if not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
  if tokens.size % NUM_VOICES:
    raise ValueError(f"number of tokens ({tokens.size}) is not a multiple of {NUM_VOICES} (one per voice)")
  bad = np.flatnonzero((tokens < 0) | (tokens >= VOCAB_SIZE))
  if bad.size:
    raise ValueError(f"token {int(tokens[bad[0]])} at position {int(bad[0])} is outside 0..{VOCAB_SIZE - 1}")
  return tokens.astype(np.int64)


def decode_tokens(tokens, *, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER, title: str | None = None):
  """Decodes frame-major SATB tokens into a four-part ``music21.stream.Score``.

  A pitch token starts a note, following HOLD tokens lengthen it, REST tokens are rests. Trailing frames that
  are entirely PAD are dropped; any other PAD token is read as a rest, and a HOLD with no note to continue
  (at the start or after a rest) also continues the rest, so any token sequence (e.g. a model sample)
  decodes.

  Args:
    tokens: integer array ``[num_frames * 4]``.
    steps_per_quarter: grid resolution the tokens were encoded with.
    title: optional title stored in the score's metadata.

  Returns:
    A Score with parts Soprano, Alto, Tenor, Bass of equal length, notes and rests at their grid offsets.

  Raises:
    ValueError: tokens not 1-D integers, a length not a multiple of 4, or a token outside the vocabulary.

  Example::

      score = decode_tokens(np.array([40, 36, 31, 24, 2, 2, 2, 2], np.int32))
      write_musicxml(score, "/tmp/two_frames.musicxml")
  """
  _check_steps_per_quarter(steps_per_quarter)
  grid = _check_tokens(tokens).reshape(-1, NUM_VOICES)
  not_pad = np.flatnonzero((grid != PAD).any(axis=1))
  grid = grid[: not_pad[-1] + 1] if not_pad.size else grid[:0]
  num_frames = grid.shape[0]
  step = Fraction(1, steps_per_quarter)
  score = music21.stream.Score()
  if title is not None:
    score.insert(0, music21.metadata.Metadata(title=title))
  for voice, name in enumerate(VOICE_NAMES):
    part = music21.stream.Part(id=name)
    part.partName = name
    # Runs of (kind, start, length, midi); kind is "note" or "rest".
    runs: list[list] = []
    for frame, token in enumerate(grid[:, voice]):
      if token >= PITCH_OFFSET:
        runs.append(["note", frame, 1, token_to_pitch(token)])
      elif token == HOLD and runs:
        runs[-1][2] += 1
      elif runs and runs[-1][0] == "rest":
        runs[-1][2] += 1
      else:
        runs.append(["rest", frame, 1, None])
    for kind, start, length, midi in runs:
      element = music21.note.Note(midi) if kind == "note" else music21.note.Rest()
      element.duration = music21.duration.Duration(length * step)
      part.insert(start * step, element)
    if num_frames == 0:
      part.insert(0, music21.note.Rest(quarterLength=1))
    score.insert(0, part)
  return score


def write_midi(score, path: str | os.PathLike) -> pathlib.Path:
  """Writes ``score`` as a standard MIDI file at ``path`` (parent folders are created); returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  score.write("midi", fp=str(path))
  return path


def write_musicxml(score, path: str | os.PathLike) -> pathlib.Path:
  """Writes ``score`` as MusicXML at ``path`` (compressed when it ends in ``.mxl``); returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  score.write("mxl" if path.suffix == ".mxl" else "musicxml", fp=str(path))
  return path
