"""Four-voice settings of one-voice tunes: thousands of distinct multi-voice works of one common style.

music21's corpus holds about 400 four-voice Bach chorales and some 1,500 other multi-voice works, too few to bound
the lookup's false-positive rate between distinct four-voice works at 0.001 (that needs about 3,000 queries
without a false answer). Every one-voice tune of a folk collection, set for four voices by :func:`harmonise`,
is a four-voice work, and tunes that are not variants of one another give settings that are distinct works. The
settings are a hard case for a lookup on purpose: they share one plain style, block chords on the melody's
rhythm, the same few triads, inner voices that mostly hold or step, so their lower voices look alike across
works far more than the voices of two chorales do.

The setting: the tonic is the pitch class of the tune's last note, the mode major when the major third above it
sounds longer than the minor third. The melody (highest note at each onset), moved by octaves into the soprano
range, gets one chord per note, drawn (``rng``) among the diatonic triads that contain it (I, IV and V weighted
above the others, the previous chord favoured; V then I at the end when they fit; a note no triad contains keeps
the previous chord). The bass takes the root (sometimes the third), alto and tenor the chord tones nearest their
previous pitches below the voice above, each in its range. Every voice has the melody's rhythm.

:func:`revoice` re-writes one inner voice of a setting with other tones of the same chords: the same setting
re-used with one line changed (a copy), as opposed to :func:`harmonise` with another ``rng`` (another setting of
the same tune).

Example:
  >>> import random
  >>> from fractions import Fraction
  >>> tune = [Note(0, Fraction(i), p, Fraction(1)) for i, p in enumerate([67, 69, 71, 72, 71, 69, 67, 62, 67])]
  >>> setting = harmonise(tune, random.Random(0))
  >>> sorted({n.voice for n in setting}), len(setting)
  ([0, 1, 2, 3], 36)
  >>> [n.pitch for n in setting if n.voice == 0] == [67, 69, 71, 72, 71, 69, 67, 62, 67]
  True
  >>> all(a.pitch > b.pitch for a in setting for b in setting if a.onset == b.onset and a.voice < b.voice)
  True
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from fractions import Fraction

from govjax.documentation.music_notes import Note

__all__ = ["RANGES", "harmonise", "melody_of", "revoice"]

# Triads by their root's distance from the tonic (semitones), as pitch-class offsets from the tonic.
_MAJOR = {0: (0, 4, 7), 2: (2, 5, 9), 4: (4, 7, 11), 5: (5, 9, 0), 7: (7, 11, 2), 9: (9, 0, 4)}
_MINOR = {0: (0, 3, 7), 3: (3, 7, 10), 5: (5, 8, 0), 7: (7, 11, 2), 8: (8, 0, 3), 10: (10, 2, 5)}
_WEIGHT = {0: 4.0, 5: 3.0, 7: 3.0}  # tonic, subdominant, dominant; any other triad weighs 1
_KEEP = 2.0  # the previous chord's weight is multiplied by this
_INVERSION = 0.2  # share of chords with the third in the bass
# voice -> (lowest, highest) MIDI pitch: soprano, alto, tenor, bass
RANGES = {0: (60, 81), 1: (53, 74), 2: (46, 69), 3: (36, 60)}


def melody_of(notes: Sequence[Note]) -> list[Note]:
  """The highest note at each onset, in onset order, as voice 0."""
  top: dict[Fraction, Note] = {}
  for note in notes:
    if note.onset not in top or note.pitch > top[note.onset].pitch:
      top[note.onset] = note
  return [dataclasses.replace(top[onset], voice=0) for onset in sorted(top)]


def _key(melody: Sequence[Note]) -> tuple[int, dict[int, tuple[int, int, int]]]:
  tonic = melody[-1].pitch % 12
  length = {pc: Fraction(0) for pc in range(12)}
  for note in melody:
    length[(note.pitch - tonic) % 12] += note.duration
  return tonic, (_MAJOR if length[4] >= length[3] else _MINOR)


def _nearest(pitch_classes: Sequence[int], low: int, high: int, previous: int | None, target: int) -> int | None:
  """The pitch of one of ``pitch_classes`` in ``[low, high]`` nearest ``previous`` (or ``target``)."""
  options = [p for p in range(low, high + 1) if p % 12 in pitch_classes]
  if not options:
    return None
  anchor = target if previous is None else previous
  return min(options, key=lambda p: (abs(p - anchor), p))


def _chords(melody: Sequence[Note], rng: random.Random, tonic: int,
            triads: dict[int, tuple[int, int, int]]) -> list[tuple[int, int]]:
  """``(tonic, root offset)`` per melody note: the drawn chord's root, as a distance from the tonic."""
  roots, previous = [], 0
  for i, note in enumerate(melody):
    degree = (note.pitch - tonic) % 12
    fitting = [root for root, triad in triads.items() if degree in triad]
    if not fitting:
      roots.append(previous)
      continue
    last = i == len(melody) - 1
    if last and 0 in fitting:
      choice = 0
    elif i == len(melody) - 2 and 7 in fitting:
      choice = 7
    else:
      weights = [_WEIGHT.get(root, 1.0) * (_KEEP if root == previous else 1.0) for root in fitting]
      choice = rng.choices(fitting, weights)[0]
    roots.append(choice)
    previous = choice
  return [(tonic, root) for root in roots]


def _voice(melody: Sequence[Note], chords: Sequence[tuple[int, int]], rng: random.Random,
           triads: dict[int, tuple[int, int, int]], *, spans: Sequence[tuple[Fraction, Fraction]],
           spacing: int) -> list[Note]:
  """Alto, tenor and bass for each chord, each sounding over its ``spans`` entry (onset, duration)."""
  out = list(melody)
  bass = tenor = alto = None
  for note, (tonic, root), (onset, duration) in zip(melody, chords, spans, strict=True):
    triad = [(tonic + offset) % 12 for offset in triads[root]]
    bass_pc = triad[1] if rng.random() < _INVERSION else triad[0]
    bass = _nearest([bass_pc], *RANGES[3], bass, 48)
    alto_high = min(RANGES[1][1], note.pitch - 1)
    alto = _nearest(triad, RANGES[1][0], alto_high, alto, note.pitch - spacing) or alto_high
    missing = [pc for pc in triad if pc not in {note.pitch % 12, alto % 12, bass % 12}] or triad
    tenor_high = min(RANGES[2][1], alto - 1)
    tenor = _nearest(missing, max(RANGES[2][0], bass + 3), tenor_high, tenor, alto - spacing)
    if tenor is None:
      tenor = _nearest(triad, RANGES[2][0], tenor_high, None, alto - spacing) or max(bass + 1, tenor_high)
    if tenor <= bass:
      bass -= 12
    for voice, pitch in ((1, alto), (2, tenor), (3, bass)):
      out.append(Note(voice, onset, pitch, duration))
  return sorted(out, key=lambda n: (n.voice, n.onset, n.pitch))


def _soprano(notes: Sequence[Note]) -> list[Note]:
  melody = melody_of(notes)
  if not melody:
    raise ValueError("harmonise: the tune has no notes")
  pitches = sorted(n.pitch for n in melody)
  shift = 12 * round((70 - pitches[len(pitches) // 2]) / 12)
  return [dataclasses.replace(n, pitch=n.pitch + shift) for n in melody]


def harmonise(notes: Sequence[Note], rng: random.Random, *, rhythm: str = "note") -> list[Note]:
  """A four-voice setting of a tune (module docstring): voices 0-3 = soprano (the melody), alto, tenor, bass.

  Args:
    notes: the tune (its highest note at each onset is the melody).
    rng: draws the chords and inversions; another draw gives another setting of the tune.
    rhythm: ``"note"``: one chord per melody note in close position, every voice on the melody's rhythm (the
      chorale-like default); ``"beat"``: one chord per beat (quarter note), held under the melody's notes
      within the beat, in open position: a setting of another texture.

  Returns:
    The setting's notes, sorted by (voice, onset, pitch).

  Raises:
    ValueError: the tune has no notes, or an unknown ``rhythm``.
  """
  if rhythm not in ("note", "beat"):
    raise ValueError(f"harmonise: rhythm must be 'note' or 'beat', got {rhythm!r}")
  melody = _soprano(notes)
  tonic, triads = _key(melody)
  if rhythm == "note":
    spans = [(n.onset, n.duration) for n in melody]
    return _voice(melody, _chords(melody, rng, tonic, triads), rng, triads, spans=spans, spacing=4)
  heads = [n for i, n in enumerate(melody) if i == 0 or n.onset // 1 != melody[i - 1].onset // 1]
  ends = [h.onset for h in heads[1:]] + [melody[-1].onset + melody[-1].duration]
  spans = [(h.onset, end - h.onset) for h, end in zip(heads, ends, strict=True)]
  lower = _voice(heads, _chords(heads, rng, tonic, triads), rng, triads, spans=spans, spacing=9)
  return sorted([n for n in lower if n.voice > 0] + list(melody), key=lambda n: (n.voice, n.onset, n.pitch))


def revoice(setting: Sequence[Note], voice: int, rng: random.Random) -> list[Note]:
  """The setting with inner ``voice`` (1 = alto, 2 = tenor) moved to other tones of its chord where it can.

  At each onset the voice takes another pitch of the pitch classes sounding there (between its neighbours
  above and below, in its range), drawn by ``rng``; where there is none it keeps its note. The other voices are
  unchanged: the same setting with one line re-written.
  """
  if voice not in (1, 2):
    raise ValueError(f"revoice: voice must be 1 (alto) or 2 (tenor), got {voice}")
  by_onset: dict[Fraction, dict[int, Note]] = {}
  for note in setting:
    by_onset.setdefault(note.onset, {})[note.voice] = note
  out = [n for n in setting if n.voice != voice]
  for onset in sorted(by_onset):
    chord = by_onset[onset]
    if voice not in chord:
      continue
    current = chord[voice]
    above = chord.get(voice - 1, current).pitch
    below = chord.get(voice + 1, current).pitch
    classes = {n.pitch % 12 for n in chord.values()}
    low, high = max(RANGES[voice][0], below + 1), min(RANGES[voice][1], above - 1)
    options = [p for p in range(low, high + 1) if p % 12 in classes and p != current.pitch]
    pitch = rng.choice(options) if options else current.pitch
    out.append(dataclasses.replace(current, pitch=pitch))
  return sorted(out, key=lambda n: (n.voice, n.onset, n.pitch))
