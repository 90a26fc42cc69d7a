"""Generated *structural* training material: cadences, progressions and scales in four voices, in all keys.

Structural material is derived from music-theory rules rather than from one specific work, so it carries no
work-specific rights (licence CC0-1.0, content class ``structural``, composer ``govjax generator``). It gives
a model the common vocabulary of tonal four-part writing (how cadences close, how chords connect) that the
rights policy lets train every depth group.

How it is generated (deterministic, no randomness):

1. **Keys**: the 12 major and 12 minor keys (:data:`KEYS`).
2. **Progressions** (:data:`PROGRESSIONS`), each a list of Roman numerals with a major and a minor form:
   authentic, plagal, half and deceptive cadence formulas, I-IV-V-I, ii-V-I and the circle of fifths
   (I-IV-vii°-iii-vi-ii-V-I). Chord pitch classes are built by stacking thirds on the scale degree, using the
   natural minor scale in minor except for V, V7 and vii°, which take the raised leading tone (harmonic
   minor).
3. **Voicing** (:func:`voice_progression`): all chords in root position. Every candidate voicing has the bass
   on the root, every voice inside its range (:data:`VOICE_RANGES`), S > A > T > B, at most an octave between
   adjacent upper voices and a twelfth between tenor and bass, all chord tones present (a V7 may omit its
   fifth), the leading tone and the seventh not doubled. The first chord takes the voicing closest to the
   middle of the ranges; each next chord the candidate with the least total motion plus a heavy penalty for
   parallel fifths or octaves (greedy; ties broken by the voicing's pitches, so the result is deterministic).
4. **Rhythm**: 4/4, every chord a half note, the last a whole note.
5. **Scales** (:func:`scale_line`): per key one work in which each voice in turn (S, A, T, B; the others rest)
   sings the scale up and down an octave in quarter notes: from tonic to tonic when that octave fits the
   voice's range, otherwise from the dominant below to the dominant above (the plagal octave, which then
   always fits). Minor scales ascend in melodic minor and descend in natural minor.
6. Scores are built with music21 (pitches spelled as music21 spells the chord in the key) and encoded with
   :func:`govjax.data.tokenizer.encode_score`.

Work ids are ``structural/<name>-<tonic>-<mode>``, e.g. ``structural/authentic-cadence-Db-major`` and
``structural/scales-F#-minor``.

Example:
  >>> works = structural_works(names=["authentic-cadence"], keys=["C-major"])
  >>> works[0]["work_id"], works[0]["tokens"].shape
  ('structural/authentic-cadence-C-major', (160,))
  >>> voice_progression(["I", "V", "I"], tonic_pc=0, mode="major")[0]
  (67, 64, 55, 48)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from collections.abc import Sequence

import music21
import numpy as np

from govjax.core.ids import STRUCTURAL_PREFIX
from govjax.data import tokenizer

COMPOSER = "govjax generator"
COLLECTION = "structural"
LICENCE = "CC0-1.0"

# Voice ranges (MIDI, inclusive): soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4.
VOICE_RANGES: tuple[tuple[int, int], ...] = ((60, 79), (55, 74), (48, 67), (40, 60))
_RANGE_CENTRES = tuple((lo + hi) / 2 for lo, hi in VOICE_RANGES)

# (name used in work ids, music21 tonic name, pitch class, mode)
_MAJOR = [("C", "C", 0), ("Db", "D-", 1), ("D", "D", 2), ("Eb", "E-", 3), ("E", "E", 4), ("F", "F", 5),
          ("F#", "F#", 6), ("G", "G", 7), ("Ab", "A-", 8), ("A", "A", 9), ("Bb", "B-", 10), ("B", "B", 11)]
_MINOR = [("C", "c", 0), ("C#", "c#", 1), ("D", "d", 2), ("Eb", "e-", 3), ("E", "e", 4), ("F", "f", 5),
          ("F#", "f#", 6), ("G", "g", 7), ("G#", "g#", 8), ("A", "a", 9), ("Bb", "b-", 10), ("B", "b", 11)]


@dataclasses.dataclass(frozen=True)
class Key:
  """A key: ``name`` (``"Db-major"``), music21 tonic (``"D-"``; lower case for minor), pitch class, mode."""

  name: str
  music21_tonic: str
  tonic_pc: int
  mode: str


KEYS: tuple[Key, ...] = tuple(
    [Key(f"{n}-major", m, pc, "major") for n, m, pc in _MAJOR]
    + [Key(f"{n}-minor", m, pc, "minor") for n, m, pc in _MINOR]
)

# name -> (major numerals, minor numerals, description)
PROGRESSIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "authentic-cadence": (("I", "IV", "V7", "I"), ("i", "iv", "V7", "i"), "authentic cadence"),
    "plagal-cadence": (("I", "V", "I", "IV", "I"), ("i", "V", "i", "iv", "i"), "plagal cadence"),
    "half-cadence": (("I", "vi", "IV", "V"), ("i", "VI", "iv", "V"), "half cadence"),
    "deceptive-cadence": (("I", "IV", "V", "vi"), ("i", "iv", "V", "VI"), "deceptive cadence"),
    "I-IV-V-I": (("I", "IV", "V", "I"), ("i", "iv", "V", "i"), "I-IV-V-I progression"),
    "ii-V-I": (("I", "ii", "V7", "I"), ("i", "ii°", "V7", "i"), "ii-V-I progression"),
    "circle-of-fifths": (("I", "IV", "vii°", "iii", "vi", "ii", "V", "I"),
                         ("i", "iv", "VII", "III", "VI", "ii°", "V", "i"), "circle-of-fifths progression"),
}
SCALES_NAME = "scales"

_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
_MELODIC_MINOR_UP = (0, 2, 3, 5, 7, 9, 11)
_DEGREES = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}


def chord_pitch_classes(numeral: str, tonic_pc: int, mode: str) -> tuple[int, ...]:
  """Pitch classes of a root-position chord, root first (``V7`` adds the seventh).

  Args:
    numeral: Roman numeral (``I``, ``ii``, ``vii°``, ``V7``, ``VII``, ...).
    tonic_pc: the key's tonic pitch class.
    mode: ``"major"`` or ``"minor"``.

  Returns:
    ``(root, third, fifth[, seventh])`` pitch classes.

  Example:
    >>> chord_pitch_classes("V7", 0, "minor")
    (7, 11, 2, 5)
  """
  seventh = numeral.endswith("7")
  base = numeral.rstrip("7").rstrip("°")
  degree = _DEGREES[base.lower()]
  if mode == "major":
    scale = _MAJOR_SCALE
  else:
    scale = _HARMONIC_MINOR if base in ("V", "vii") else _NATURAL_MINOR
  steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
  return tuple((tonic_pc + scale[(degree + s) % 7]) % 12 for s in steps)


def _candidates(voice: int, pcs: Sequence[int]) -> list[int]:
  lo, hi = VOICE_RANGES[voice]
  return [m for m in range(lo, hi + 1) if m % 12 in pcs]


def _valid_voicings(pcs: tuple[int, ...], leading_tone: int) -> list[tuple[int, int, int, int]]:
  root, required = pcs[0], set(pcs) if len(pcs) == 3 else {pcs[0], pcs[1], pcs[3]}
  no_double = {leading_tone} | ({pcs[3]} if len(pcs) == 4 else set())
  out = []
  for b in _candidates(3, (root,)):
    for t in _candidates(2, pcs):
      if not b < t <= b + 19:
        continue
      for a in _candidates(1, pcs):
        if not t < a <= t + 12:
          continue
        for s in _candidates(0, pcs):
          if not a < s <= a + 12:
            continue
          classes = [s % 12, a % 12, t % 12, b % 12]
          if not required <= set(classes):
            continue
          if any(classes.count(pc) > 1 for pc in no_double):
            continue
          out.append((s, a, t, b))
  return out


def _parallels(prev: Sequence[int], nxt: Sequence[int]) -> int:
  count = 0
  for i, j in itertools.combinations(range(4), 2):
    before, after = (prev[i] - prev[j]) % 12, (nxt[i] - nxt[j]) % 12
    moved = prev[i] != nxt[i] and prev[j] != nxt[j]
    if moved and before == after and before in (0, 7):
      count += 1
  return count


def voice_progression(numerals: Sequence[str], *, tonic_pc: int,
                      mode: str) -> list[tuple[int, int, int, int]]:
  """Realises Roman numerals as four-voice chords ``(S, A, T, B)`` in MIDI (rules in the module docstring)."""
  leading_tone = (tonic_pc + 11) % 12
  chords: list[tuple[int, int, int, int]] = []
  for numeral in numerals:
    options = _valid_voicings(chord_pitch_classes(numeral, tonic_pc, mode), leading_tone)
    if not options:
      raise ValueError(f"no voicing of {numeral} in pitch class {tonic_pc} {mode} fits the voice ranges")
    if not chords:
      cost = lambda v: (sum(abs(p - c) for p, c in zip(v, _RANGE_CENTRES, strict=True)), v)
    else:
      prev = chords[-1]
      cost = lambda v, prev=prev: (sum(abs(p - q) for p, q in zip(v, prev, strict=True))
                                   + 100 * _parallels(prev, v), v)
    chords.append(min(options, key=cost))
  return chords


def scale_line(tonic_pc: int, mode: str, voice: int) -> list[int]:
  """The MIDI pitches of one voice's scale up and down an octave (tonic or plagal octave; see module doc)."""
  lo, hi = VOICE_RANGES[voice]

  def pitch(k: int, ascending: bool) -> int:
    scale = _MAJOR_SCALE if mode == "major" else (_MELODIC_MINOR_UP if ascending else _NATURAL_MINOR)
    return tonic_pc + scale[k % 7] + 12 * (k // 7)

  for start in (0, -3):  # tonic octave, else the plagal octave (dominant below to dominant above)
    up = [pitch(start + k, True) for k in range(8)]
    down = [pitch(start + k, False) for k in range(6, -1, -1)]
    line = up + down
    fits = [o for o in range(-2, 10) if lo <= min(line) + 12 * o and max(line) + 12 * o <= hi]
    if fits:
      centre = (lo + hi) / 2
      octave = min(fits, key=lambda o: (abs((min(line) + max(line)) / 2 + 12 * o - centre), o))
      return [p + 12 * octave for p in line]
  raise ValueError(f"no octave of the scale fits voice {voice}'s range {VOICE_RANGES[voice]}")


def _spelled_note(midi: int, spellings: Sequence[str], quarter_length: float) -> music21.note.Note:
  for name in spellings:
    p = music21.pitch.Pitch(name)
    if p.pitchClass == midi % 12:
      p.octave = (midi - p.pitchClass) // 12 - 1
      if p.midi != midi:  # B#/Cb cross the octave boundary
        p.octave += (midi - p.midi) // 12
      return music21.note.Note(p, quarterLength=quarter_length)
  return music21.note.Note(midi, quarterLength=quarter_length)


@functools.lru_cache(maxsize=None)
def _key_sharps(music21_tonic: str) -> int:
  return music21.key.Key(music21_tonic).sharps


@functools.lru_cache(maxsize=None)
def _chord_spelling(numeral: str, music21_tonic: str) -> tuple[str, ...]:
  return tuple(p.name for p in music21.roman.RomanNumeral(numeral, music21.key.Key(music21_tonic)).pitches)


@functools.lru_cache(maxsize=None)
def _scale_spelling(music21_tonic: str) -> tuple[str, ...]:
  pitches = list(music21.key.Key(music21_tonic).pitches[:7])
  if music21_tonic.islower():  # minor: melodic minor's raised sixth and seventh
    pitches += [pitches[5].transpose("A1"), pitches[6].transpose("A1")]
  return tuple(p.name for p in pitches)


def _score(parts: Sequence[Sequence[tuple[music21.note.GeneralNote, float]]], title: str, key: Key):
  score = music21.stream.Score()
  score.insert(0, music21.metadata.Metadata(title=title, composer=COMPOSER))
  for voice, name in enumerate(tokenizer.VOICE_NAMES):
    part = music21.stream.Part(id=name)
    part.partName = name
    part.insert(0, music21.key.KeySignature(_key_sharps(key.music21_tonic)))
    part.insert(0, music21.meter.TimeSignature("4/4"))
    offset = 0.0
    for element, length in parts[voice]:
      part.insert(offset, element)
      offset += length
    score.insert(0, part)
  return score


def progression_score(name: str, key: Key):
  """The music21 Score of progression ``name`` in ``key``."""
  major, minor, description = PROGRESSIONS[name]
  numerals = major if key.mode == "major" else minor
  chords = voice_progression(numerals, tonic_pc=key.tonic_pc, mode=key.mode)
  parts: list[list] = [[], [], [], []]
  for i, (numeral, chord) in enumerate(zip(numerals, chords, strict=True)):
    length = 4.0 if i == len(chords) - 1 else 2.0
    spellings = _chord_spelling(numeral, key.music21_tonic)
    for voice, midi in enumerate(chord):
      parts[voice].append((_spelled_note(midi, spellings, length), length))
  title = f"{description.capitalize()} ({'-'.join(numerals)}) in {key.name.replace('-', ' ')}"
  return _score(parts, title, key)


def scales_score(key: Key):
  """The music21 Score of the scales work in ``key``: each voice in turn sings the scale, the others rest."""
  spellings = _scale_spelling(key.music21_tonic)
  parts: list[list] = [[], [], [], []]
  for singer in range(4):
    line = scale_line(key.tonic_pc, key.mode, singer)
    lengths = [1.0] * (len(line) - 1) + [2.0]
    total = sum(lengths)
    for voice in range(4):
      if voice == singer:
        parts[voice] += [(_spelled_note(m, spellings, q), q) for m, q in zip(line, lengths, strict=True)]
      else:
        parts[voice].append((music21.note.Rest(quarterLength=total), total))
  return _score(parts, f"Scales in {key.name.replace('-', ' ')}", key)


def _select(names: Sequence[str] | None, keys: Sequence[str] | None) -> tuple[list[str], list[Key]]:
  all_names = list(PROGRESSIONS) + [SCALES_NAME]
  names = all_names if names is None else list(names)
  unknown = [n for n in names if n not in all_names]
  if unknown:
    raise ValueError(f"unknown structural material {unknown}; known: {all_names}")
  by_name = {k.name: k for k in KEYS}
  if keys is None:
    return names, list(KEYS)
  missing = [k for k in keys if k not in by_name]
  if missing:
    raise ValueError(f"unknown keys {missing}; known: {list(by_name)}")
  return names, [by_name[k] for k in keys]


def structural_scores(*, names: Sequence[str] | None = None,
                      keys: Sequence[str] | None = None) -> list[tuple[str, music21.stream.Score]]:
  """``(work_id, Score)`` for every requested material (default: all) in every requested key (default: 24)."""
  names, selected = _select(names, keys)
  out = []
  for name in names:
    for key in selected:
      score = scales_score(key) if name == SCALES_NAME else progression_score(name, key)
      out.append((f"{STRUCTURAL_PREFIX}{name}-{key.name}", score))
  return out


def structural_works(*, names: Sequence[str] | None = None, keys: Sequence[str] | None = None,
                     steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER) -> list[dict]:
  """Generated works as dicts in the dataset's work layout.

  Args:
    names: materials (``PROGRESSIONS`` names and ``"scales"``); all when None.
    keys: key names (``"C-major"``, ``"F#-minor"``); all 24 when None.
    steps_per_quarter: tokenizer grid.

  Returns:
    One dict per work: ``work_id``, ``title``, ``composer``, ``collection``, ``source_path``
    (``generated:...``), ``sha256`` (of the int32 little-endian token bytes: the generated source), ``key``,
    ``tokens`` (int32), ``length`` (number of frames: tokens // 4), ``content_class`` (``structural``) and
    ``licence`` (``CC0-1.0``). ``govjax.data.loader.as_work`` turns one into a ``Work``.
  """
  works = []
  for work_id, score in structural_scores(names=names, keys=keys):
    encoded = tokenizer.encode_score(score, steps_per_quarter=steps_per_quarter)
    tokens = np.asarray(encoded.tokens, dtype=np.int32)
    works.append({
        "work_id": work_id,
        "title": score.metadata.title,
        "composer": COMPOSER,
        "collection": COLLECTION,
        "source_path": f"generated:govjax.data.structural/{work_id.removeprefix('structural/')}",
        "sha256": hashlib.sha256(tokens.astype("<i4").tobytes()).hexdigest(),
        "key": work_id.rsplit("-", 2)[-2] + " " + work_id.rsplit("-", 1)[-1],
        "tokens": tokens,
        "length": int(encoded.num_frames),
        "content_class": "structural",
        "licence": LICENCE,
    })
  return works
