"""Transformations a copier might apply to a documented work, for testing the lookup (``govjax bench lookup``).

Each function takes notes (:class:`~govjax.documentation.music_notes.Note`) and, where it is random, an explicit
``random.Random``; none changes its input. Families:

- whole-work copies: :func:`transpose`, :func:`time_scale`, :func:`edit_pitches` (a given number or fraction
  of notes moved by 1-2 semitones), :func:`ornament` (passing notes filling melodic thirds),
  :func:`change_meter` (the first beat of every bar lengthened: the bars and rhythm change, the pitches do
  not), :func:`merge_tracks` (every voice in one track), :func:`split_tracks` (the voices spread over two
  tracks, as two piano staves);
- partial copies: :func:`excerpt` (a contiguous span of the bars), :func:`voice_subset` (some voices),
  :func:`add_parts` (new voices added around the work).

Example:
  >>> import random
  >>> from fractions import Fraction
  >>> notes = [Note(0, Fraction(i), 60 + i % 3, Fraction(1)) for i in range(8)]
  >>> [n.pitch for n in transpose(notes, 2)][:3]
  [62, 63, 64]
  >>> len(excerpt(notes, 0.5, random.Random(0)))
  4
  >>> {n.voice for n in add_parts(notes, 1, random.Random(0))}
  {0, 1}
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from fractions import Fraction

from govjax.documentation.music_notes import Note

__all__ = ["FAMILIES", "add_parts", "apply", "change_meter", "edit_pitches", "excerpt", "merge_tracks",
           "ornament", "split_tracks", "time_scale", "transpose", "voice_subset"]

# family -> (file format of the query, whether the answer is a partial copy)
FAMILIES = {
    "transpose": ("musicxml", False), "time_scale": ("musicxml", False), "midi": ("midi", False),
    "edit": ("musicxml", False), "combined": ("midi", False), "pitch_edits_10": ("midi", False),
    "ornament": ("musicxml", False), "meter": ("musicxml", False), "track_merge": ("midi", False),
    "track_split": ("musicxml", False), "excerpt": ("musicxml", True), "voice_subset": ("musicxml", True),
    "added_parts": ("musicxml", True),
}


def transpose(notes: Sequence[Note], semitones: int) -> list[Note]:
  """Every pitch moved by ``semitones``."""
  return [dataclasses.replace(n, pitch=n.pitch + semitones) for n in notes]


def time_scale(notes: Sequence[Note], factor: Fraction) -> list[Note]:
  """Onsets and durations multiplied by ``factor``."""
  return [dataclasses.replace(n, onset=n.onset * factor, duration=n.duration * factor) for n in notes]


def edit_pitches(notes: Sequence[Note], amount: float, rng: random.Random) -> list[Note]:
  """Moves notes by 1 or 2 semitones up or down: ``amount`` notes (an int) or that fraction of them (< 1)."""
  notes = list(notes)
  count = int(amount) if amount >= 1 else round(amount * len(notes))
  for i in rng.sample(range(len(notes)), min(count, len(notes))):
    notes[i] = dataclasses.replace(notes[i], pitch=notes[i].pitch + rng.choice((-2, -1, 1, 2)))
  return notes


def _lines(notes: Sequence[Note]) -> dict[int, list[Note]]:
  lines: dict[int, list[Note]] = {}
  for note in sorted(notes, key=lambda n: (n.voice, n.onset, -n.pitch)):
    lines.setdefault(note.voice, []).append(note)
  return lines


def ornament(notes: Sequence[Note], fraction: float, rng: random.Random) -> list[Note]:
  """Fills ``fraction`` of the melodic thirds (3 or 4 semitones between consecutive notes of a voice) with a
  passing note: the first note keeps half its duration, the passing note (a step towards the second) the
  other half."""
  out = []
  for line in _lines(notes).values():
    for a, b in zip(line, line[1:] + [None], strict=True):
      step = None if b is None else b.pitch - a.pitch
      if step is not None and abs(step) in (3, 4) and b.onset >= a.onset + a.duration and rng.random() < fraction:
        half = a.duration / 2
        out.append(dataclasses.replace(a, duration=half))
        out.append(dataclasses.replace(a, onset=a.onset + half, duration=half,
                                       pitch=a.pitch + (2 if step > 0 else -2)))
      else:
        out.append(a)
  return out


def change_meter(notes: Sequence[Note], bar: Fraction = Fraction(4)) -> list[Note]:
  """Re-times the music so that the first beat of every bar of length ``bar`` lasts twice as long (4/4 becomes
  5/4): onsets and durations are mapped through that piecewise-linear warp of time."""

  def warp(t: Fraction) -> Fraction:
    whole, inside = divmod(t, bar)
    return whole * (bar + 1) + (2 * inside if inside < 1 else inside + 1)

  return [dataclasses.replace(n, onset=warp(n.onset), duration=warp(n.onset + n.duration) - warp(n.onset))
          for n in notes]


def merge_tracks(notes: Sequence[Note]) -> list[Note]:
  """Every note in one track (voice 0)."""
  return [dataclasses.replace(n, voice=0) for n in notes]


def split_tracks(notes: Sequence[Note]) -> list[Note]:
  """The upper half of the voices in track 0 and the lower half in track 1 (two piano staves)."""
  voices = sorted({n.voice for n in notes})
  upper = set(voices[:(len(voices) + 1) // 2])
  return [dataclasses.replace(n, voice=0 if n.voice in upper else 1) for n in notes]


def excerpt(notes: Sequence[Note], fraction: float, rng: random.Random) -> list[Note]:
  """The notes starting in a random contiguous span of ``fraction`` of the distinct onsets."""
  onsets = sorted({n.onset for n in notes})
  size = max(1, round(fraction * len(onsets)))
  start = rng.randrange(0, len(onsets) - size + 1)
  low, high = onsets[start], onsets[start + size - 1]
  return [n for n in notes if low <= n.onset <= high]


def voice_subset(notes: Sequence[Note], keep: int, rng: random.Random) -> list[Note]:
  """``keep`` randomly chosen voices, renumbered from 0."""
  voices = sorted({n.voice for n in notes})
  chosen = sorted(rng.sample(voices, min(keep, len(voices))))
  renumber = {v: i for i, v in enumerate(chosen)}
  return [dataclasses.replace(n, voice=renumber[n.voice]) for n in notes if n.voice in renumber]


def add_parts(notes: Sequence[Note], count: int, rng: random.Random) -> list[Note]:
  """Adds ``count`` new voices: random stepwise lines in the rhythm of a random existing voice, alternately
  above the highest and below the lowest note."""
  lines = _lines(notes)
  out = list(notes)
  top, bottom = max(n.pitch for n in notes), min(n.pitch for n in notes)
  for k in range(count):
    rhythm = lines[rng.choice(sorted(lines))]
    pitch = top + 5 if k % 2 == 0 else bottom - 5
    voice = max(lines) + 1 + k
    for note in rhythm:
      pitch += rng.choice((-2, -1, 0, 1, 2, 3, -3))
      out.append(Note(voice, note.onset, pitch, note.duration))
  return out


def apply(notes: Sequence[Note], family: str, rng: random.Random, *, edits: int = 3) -> list[Note]:
  """The notes of one of :data:`FAMILIES` applied to ``notes`` (parameters drawn from ``rng``).

  Args:
    notes: the work's notes.
    family: a key of :data:`FAMILIES`.
    rng: random source.
    edits: notes changed by ``edit`` and ``combined``.

  Raises:
    ValueError: an unknown family.
  """
  shift = rng.choice([s for s in range(-6, 7) if s])
  if family == "transpose":
    return transpose(notes, shift)
  if family == "time_scale":
    return time_scale(notes, rng.choice((Fraction(2), Fraction(1, 2))))
  if family == "midi":
    return list(notes)
  if family == "edit":
    return edit_pitches(notes, edits, rng)
  if family == "combined":
    return time_scale(edit_pitches(transpose(notes, shift), edits, rng), Fraction(2))
  if family == "pitch_edits_10":
    return transpose(edit_pitches(notes, 0.1, rng), shift)
  if family == "ornament":
    return ornament(notes, 0.5, rng)
  if family == "meter":
    return change_meter(transpose(notes, shift))
  if family == "track_merge":
    return merge_tracks(transpose(notes, shift))
  if family == "track_split":
    return split_tracks(notes)
  if family == "excerpt":
    return excerpt(notes, rng.uniform(0.25, 0.5), rng)
  if family == "voice_subset":
    return voice_subset(notes, rng.choice((2, 3)), rng)
  if family == "added_parts":
    return add_parts(notes, rng.choice((1, 2)), rng)
  raise ValueError(f"unknown transformation family {family!r}; expected one of {sorted(FAMILIES)}")
