"""Ground truth of the lookup benches, independent of the lookup, and the corpus works they parse.

Two works are *duplicates* (the same setting re-used, or two editions) when at least half of their notes
coincide (:func:`note_overlap` >= :data:`DUPLICATE_NOTE_OVERLAP`) or their voices' interval sequences align
(:func:`voice_alignment` >= :data:`DUPLICATE_VOICE_ALIGNMENT`); they set the *same tune* when their highest
voices align (:func:`tune_alignment` >= :data:`SAME_TUNE_ALIGNMENT`). Whole-sequence ``difflib`` ratios and note
sets only: no grams, blocks or thresholds of the lookup.

Example:
  >>> from fractions import Fraction
  >>> from govjax.documentation.music_notes import Note, NoteList
  >>> tune = NoteList(tuple(Note(0, Fraction(i), p, Fraction(1)) for i, p in enumerate([60, 62, 64, 65, 67])), 1)
  >>> up = NoteList(tuple(Note(0, n.onset, n.pitch + 2, n.duration) for n in tune.notes), 1)
  >>> verified_duplicates(tune, up)[0], tune_alignment(tune, up)
  (True, 1.0)
"""

from __future__ import annotations

import difflib
import hashlib
import pathlib
import statistics
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from govjax.data.corpus import WorkSkipped, select_satb_parts
from govjax.documentation import music_fingerprint as mf

__all__ = ["DUPLICATE_NOTE_OVERLAP", "DUPLICATE_VOICE_ALIGNMENT", "SAME_TUNE_ALIGNMENT", "corpus_paths", "note_overlap",
           "parse_corpus_work", "pitch_lines", "tune_alignment", "verified_duplicates", "voice_alignment"]

SAME_TUNE_ALIGNMENT = 0.7  # tune_alignment at which two works set the same tune (ground truth)
DUPLICATE_NOTE_OVERLAP = 0.5  # note_overlap at which two works are duplicates (ground truth)
DUPLICATE_VOICE_ALIGNMENT = 0.7  # voice_alignment at which two works are duplicates (ground truth)
_FORMAT_PREFERENCE = (".mxl", ".musicxml", ".xml", ".krn")



def corpus_paths(composer: str = "bach") -> list[pathlib.Path]:
  """One file per work of ``composer`` in music21's corpus (.mxl > .musicxml > .xml > .krn), sorted."""
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  by_id: dict[str, pathlib.Path] = {}
  for path in sorted(pathlib.Path(p) for p in music21.corpus.getComposer(composer)):
    if path.suffix.lower() not in _FORMAT_PREFERENCE:
      continue
    current = by_id.get(path.stem)
    if current is None or _FORMAT_PREFERENCE.index(path.suffix.lower()) < _FORMAT_PREFERENCE.index(
        current.suffix.lower()):
      by_id[path.stem] = path
  return [by_id[k] for k in sorted(by_id)]


def parse_corpus_work(path: str, composer: str = "bach") -> tuple[str, Any, str]:
  """``(work_id, (source_path, sha256, NoteList) or None, skip reason)`` of one corpus file (4 voices)."""
  import music21  # noqa: PLC0415 (music21 takes seconds to import; only corpus parsing needs it)

  path_ = pathlib.Path(path)
  work_id = f"{composer}/{path_.stem}"
  try:
    score = music21.converter.parse(path_)
  except Exception as error:  # music21 raises many exception types
    return work_id, None, f"unparsable: {type(error).__name__}"
  if not isinstance(score, music21.stream.Score):
    return work_id, None, "not a score"
  try:

    try:
      score = select_satb_parts(score)[0]
    except WorkSkipped as skip:
      return work_id, None, skip.reason
  except ImportError:
    if len(score.parts) != 4:
      return work_id, None, "not four voices"
  notes = mf.notes_from_score(score)
  if notes.num_voices != 4 or not notes.notes:
    return work_id, None, "not four voices"
  sha = hashlib.sha256(path_.read_bytes()).hexdigest()
  return work_id, (f"{composer}/{path_.name}", sha, notes), ""

def note_overlap(a: Sequence[mf.Note], b: Sequence[mf.Note]) -> float:
  """Fraction of notes shared by two pieces (onset from the first note and durations in median-duration units,
  pitch after the best transposition), relative to the smaller piece. Independent of the fingerprints."""

  def canon(notes: Sequence[mf.Note]) -> set[tuple[Fraction, int, Fraction]]:
    origin = min(n.onset for n in notes)
    unit = statistics.median_low(sorted(n.duration for n in notes))
    return {((n.onset - origin) / unit, n.pitch, n.duration / unit) for n in notes}

  ca, cb = canon(a), canon(b)
  best = 0
  for shift in range(-12, 13):
    best = max(best, len(ca & {(o, p + shift, d) for o, p, d in cb}))
  return best / max(1, min(len(ca), len(cb)))


def pitch_lines(note_list: mf.NoteList) -> list[list[int]]:
  """Per voice (voice order), the pitch of the first-listed note at each onset."""
  by_voice: dict[int, dict] = {}
  for note in note_list.notes:
    by_voice.setdefault(note.voice, {}).setdefault(note.onset, note.pitch)
  return [[line[o] for o in sorted(line)] for _, line in sorted(by_voice.items())]


def _ratio(x: Sequence[int], y: Sequence[int]) -> float:
  ix, iy = [q - p for p, q in zip(x, x[1:], strict=False)], [q - p for p, q in zip(y, y[1:], strict=False)]
  return difflib.SequenceMatcher(None, ix, iy, autojunk=False).ratio()


def voice_alignment(a: mf.NoteList, b: mf.NoteList) -> float:
  """Mean over voices of the ordered alignment ratio (``difflib``) of the voices' pitch-interval sequences.

  Transposition- and rhythm-invariant and robust to inserted or held notes (fermatas, repeats) that shift all
  later onsets; independent of the fingerprints (no shingles, grams or block counting). Unrelated chorales
  score about 0.33 (99th percentile 0.47 on music21's Bach chorales); copies and re-used harmonisations score
  >= 0.7.
  """
  ratios = [_ratio(x, y) for x, y in zip(pitch_lines(a), pitch_lines(b), strict=False)]
  return statistics.fmean(ratios) if ratios else 0.0


def tune_alignment(a: mf.NoteList, b: mf.NoteList) -> float:
  """``difflib`` ratio of the interval sequences of the two pieces' highest voices (by median pitch): the
  ground truth of "same tune". Over music21's Bach chorales it is bimodal: unrelated tunes score below 0.65
  (median 0.35), settings of one tune 0.7-1."""

  def top(note_list: mf.NoteList) -> list[int]:
    lines = [line for line in pitch_lines(note_list) if line]
    return max(lines, key=lambda line: statistics.median(line)) if lines else []

  return _ratio(top(a), top(b))


def verified_duplicates(a: mf.NoteList, b: mf.NoteList) -> tuple[bool, float, float]:
  """``(duplicate, note_overlap, voice_alignment)``: duplicate when half the notes coincide
  (:func:`note_overlap` >= 0.5) or the voices align (:func:`voice_alignment` >= 0.7)."""
  overlap, alignment = note_overlap(a.notes, b.notes), voice_alignment(a, b)
  return overlap >= DUPLICATE_NOTE_OVERLAP or alignment >= DUPLICATE_VOICE_ALIGNMENT, overlap, alignment
