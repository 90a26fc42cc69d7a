"""Per-voice melodic sketches and their alignment: partial copies, edited copies and the same tune elsewhere.

A piece's voices (:mod:`govjax.documentation.music_notes`) are each reduced to a :class:`VoiceSketch`: the
pitch intervals between consecutive onsets of the voice (transposition-invariant), a rhythm class per interval
(``round(2 log2(ioi_i / ioi_(i-1)))``: the ratio of the voice's own consecutive inter-onset intervals, so it
is tempo-invariant, does not depend on the other voices and changes only locally when a note is ornamented)
and the bar of every note. Sketches are stored in the manifest's tier 3 (a few hundred bytes per voice: the
intervals and rhythm of each voice, without key, tempo, durations or the vertical alignment of the voices).

:func:`compare` aligns every voice of a query with every voice of a record (``difflib.SequenceMatcher`` on the
interval sequences, counting only blocks of at least :data:`MIN_BLOCK` equal intervals, so that chance
agreements of stepwise lines do not add up), pairs voices one-to-one, greedily by matched intervals, keeping
pairs that match at least half of the shorter voice in bars that overlap those of the strongest pair in both
pieces (one passage, not voices matched in unrelated places), and reports:

- ``query_coverage``: the fraction of the query's intervals matched in the record (1 for an excerpt or a
  subset of the record's voices),
- ``record_coverage``: the fraction of the record's intervals matched in the query (1 for a copy with added
  parts),
- ``melody``: how much of the record's highest voice (its tune) one voice of the query holds, relative to
  the longer of the two: near 1 for another setting of the same tune,
- ``setting``: between two pieces of as many voices (at least :data:`MIN_SETTING_VOICES`), the voices
  compared rank by rank (highest with highest, ..., lowest with lowest): the mean over the voices of the
  matched intervals relative to the longer voice of each pair. It is high only when every line of the setting
  recurs (a re-used harmonisation, even with a few voices re-written), not when the tune and a similar bass
  do (another harmonisation of the same tune),
- the matched voices and bars.

Intervals, not pitches, are aligned, so a changed note costs two intervals; an inserted passing note costs
one changed interval and one inserted one. Time signatures and durations do not enter the alignment (rhythm
agreement is reported; the lookup requires it only of a single voice found as an inner voice).

Example:
  >>> from music21 import corpus
  >>> from govjax.documentation.music_notes import NoteList, notes_from_score
  >>> notes = notes_from_score(corpus.parse("bach/bwv66.6"))
  >>> sketches = voice_sketches(notes)
  >>> len(sketches), sketches[0].num_notes == sum(1 for n in notes.notes if n.voice == 0)
  (4, True)
  >>> excerpt = NoteList(tuple(n for n in notes.notes if n.onset < 16), 4)
  >>> c = compare(voice_sketches(excerpt), sketches)
  >>> round(c.query_coverage, 2), c.record_coverage < 0.6, len(c.pairs)
  (1.0, True, 4)
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import math
import statistics
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from govjax.documentation.music_notes import Note, NoteList

__all__ = ["MIN_BLOCK", "MIN_PAIR_FRACTION", "MIN_SETTING_VOICES", "Comparison", "VoicePair", "VoiceSketch", "align",
           "compare", "sketches_from_json", "sketches_to_json", "voice_lines", "voice_sketches"]

MIN_BLOCK = 3  # equal consecutive intervals that count as matched
MIN_PAIR_FRACTION = 0.5  # a voice pair counts when it matches at least this fraction of the shorter voice
MIN_PAIR_INTERVALS = 8  # ... and at least this many intervals
MIN_SETTING_VOICES = 3  # the setting score compares pieces of at least this many voices (as many in both)
_CLIP = 60


@dataclasses.dataclass(frozen=True)
class VoiceSketch:
  """One voice: ``intervals`` int8 ``[n - 1]``, ``rhythm`` int8 ``[n - 1]`` and ``bars`` uint16 ``[n]``."""

  intervals: np.ndarray
  rhythm: np.ndarray
  bars: np.ndarray

  @property
  def num_notes(self) -> int:
    return int(self.bars.shape[0])

  @property
  def key(self) -> str:
    """The intervals as a string (one character per interval), the alignment's alphabet."""
    return "".join(chr(128 + int(i)) for i in self.intervals)

  def to_json(self) -> dict[str, str]:
    """base64 of the arrays (little-endian)."""
    return {"i": base64.b64encode(self.intervals.astype(np.int8).tobytes()).decode("ascii"),
            "r": base64.b64encode(self.rhythm.astype(np.int8).tobytes()).decode("ascii"),
            "b": base64.b64encode(self.bars.astype("<u2").tobytes()).decode("ascii")}

  @classmethod
  def from_json(cls, data: Mapping[str, str]) -> VoiceSketch:
    """Inverse of :meth:`to_json`.

    Raises:
      ValueError: arrays of inconsistent lengths.
    """
    intervals = np.frombuffer(base64.b64decode(data["i"]), np.int8)
    rhythm = np.frombuffer(base64.b64decode(data["r"]), np.int8)
    bars = np.frombuffer(base64.b64decode(data["b"]), "<u2").astype(np.uint16)
    if not (len(intervals) == len(rhythm) == max(0, len(bars) - 1)):
      raise ValueError(f"voice sketch with {len(intervals)} intervals, {len(rhythm)} rhythm classes and "
                       f"{len(bars)} bars: expected n - 1, n - 1 and n")
    return cls(intervals, rhythm, bars)


def voice_lines(note_list: NoteList) -> list[list[Note]]:
  """Per voice, one note per onset (the highest), by onset; voices ordered by median pitch, highest first."""
  lines: list[dict[Fraction, Note]] = [{} for _ in range(note_list.num_voices)]
  for note in note_list.notes:
    line = lines[note.voice]
    if note.onset not in line or note.pitch > line[note.onset].pitch:
      line[note.onset] = note
  ordered = [[line[o] for o in sorted(line)] for line in lines if line]
  return sorted(ordered, key=lambda line: -statistics.median(n.pitch for n in line))


def _rhythm_classes(line: Sequence[Note]) -> list[int]:
  """Class of each inter-onset interval relative to the previous one (0 for the first)."""
  iois = [b.onset - a.onset for a, b in zip(line, line[1:], strict=False)]
  classes = [0]
  for previous, current in zip(iois, iois[1:], strict=False):
    classes.append(max(-8, min(8, round(2 * math.log2(current / previous)))))
  return classes[:len(iois)]


def voice_sketches(note_list: NoteList) -> list[VoiceSketch]:
  """The :class:`VoiceSketch` of every voice with at least two onsets, highest voice first.

  Args:
    note_list: the notes (:func:`~govjax.documentation.music_notes.notes_from_score`).

  Returns:
    The sketches.
  """
  sketches = []
  for line in voice_lines(note_list):
    if len(line) < 2:
      continue
    intervals = [max(-_CLIP, min(_CLIP, b.pitch - a.pitch)) for a, b in zip(line, line[1:], strict=False)]
    bars = [min(65535, note_list.bar_of(n.onset)) for n in line]
    sketches.append(VoiceSketch(np.array(intervals, np.int8), np.array(_rhythm_classes(line), np.int8),
                                np.array(bars, np.uint16)))
  return sketches


def sketches_to_json(sketches: Sequence[VoiceSketch]) -> list[dict[str, str]]:
  return [s.to_json() for s in sketches]


def sketches_from_json(data: Sequence[Mapping[str, str]]) -> list[VoiceSketch]:
  return [VoiceSketch.from_json(d) for d in data]


# ------------------------------------------------------------------------------------------------ alignment


@dataclasses.dataclass(frozen=True)
class VoicePair:
  """An aligned pair of voices.

  Attributes:
    query_voice, record_voice: voice indices (0 = highest voice).
    matched: intervals matched (in blocks of at least :data:`MIN_BLOCK`).
    query_bars, record_bars: first and last bar of the matched notes in each piece.
    rhythm_agreement: fraction of matched intervals whose rhythm classes are equal too.
    repeated: fraction of matched intervals that are repeated notes (interval 0): lines that mostly hold or
      repeat a note match each other by chance far more often than moving lines do.
  """

  query_voice: int
  record_voice: int
  matched: int
  query_bars: tuple[int, int]
  record_bars: tuple[int, int]
  rhythm_agreement: float
  repeated: float = 0.0


def align(query: VoiceSketch, record: VoiceSketch, *, min_block: int = MIN_BLOCK) -> tuple[int, list[tuple]]:
  """Matched intervals of two voices and the matching blocks ``(query_start, record_start, size)``.

  Args:
    query, record: the sketches.
    min_block: shortest run of equal intervals that counts.

  Returns:
    ``(matched, blocks)``.
  """
  if not len(query.intervals) or not len(record.intervals):
    return 0, []
  matcher = difflib.SequenceMatcher(None, query.key, record.key, autojunk=False)
  blocks = [b for b in matcher.get_matching_blocks() if b.size >= min_block]
  return sum(b.size for b in blocks), blocks


def _pair(query: VoiceSketch, record: VoiceSketch, qi: int, ri: int, blocks: Sequence) -> VoicePair:
  matched = sum(b.size for b in blocks)
  same_rhythm = sum(int(np.sum(query.rhythm[b.a:b.a + b.size] == record.rhythm[b.b:b.b + b.size]))
                    for b in blocks)
  first, last = blocks[0], blocks[-1]
  return VoicePair(qi, ri, matched,
                   (int(query.bars[first.a]), int(query.bars[last.a + last.size])),
                   (int(record.bars[first.b]), int(record.bars[last.b + last.size])),
                   same_rhythm / max(1, matched), _repeated_share(query, blocks))


def _repeated_share(query: VoiceSketch, blocks: Sequence) -> float:
  """The share of repeated notes (interval 0) among the query intervals of matched ``blocks``."""
  matched = sum(b.size for b in blocks)
  return sum(int(np.sum(query.intervals[b.a:b.a + b.size] == 0)) for b in blocks) / max(1, matched)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
  return a[0] <= b[1] and b[0] <= a[1]


@dataclasses.dataclass(frozen=True)
class Comparison:
  """How a query relates to a record (see the module docstring).

  Attributes:
    pairs: the voice pairs kept, by query voice.
    query_coverage: fraction of the query's intervals matched.
    record_coverage: fraction of the record's intervals matched.
    melody: the record's highest voice against the best query voice: matched / the longer of the two.
    melody_voice: that query voice (None without one).
    setting: voice by voice (rank with rank, pieces of as many voices, at least :data:`MIN_SETTING_VOICES`),
      the mean of matched intervals / the longer voice; 0 for pieces of different voice counts or fewer voices.
    setting_voices: the per-voice scores whose mean is ``setting`` (empty when it is not computed).
    melody_repeated: the share of repeated notes among the melody pair's matched intervals.
  """

  pairs: list[VoicePair]
  query_coverage: float
  record_coverage: float
  melody: float
  melody_voice: int | None
  setting: float = 0.0
  setting_voices: tuple[float, ...] = ()
  melody_repeated: float = 0.0

  def to_json(self) -> dict[str, Any]:
    return {"query_coverage": round(self.query_coverage, 4), "record_coverage": round(self.record_coverage, 4),
            "melody": round(self.melody, 4), "melody_voice": self.melody_voice,
            "setting": round(self.setting, 4), "setting_voices": [round(v, 4) for v in self.setting_voices],
            "melody_repeated": round(self.melody_repeated, 4),
            "voices": [dataclasses.asdict(p) for p in self.pairs]}


def _gram_set(key: str, size: int) -> set[str]:
  return {key[i:i + size] for i in range(len(key) - size + 1)}


def _upper_bound(key: str, grams: set[str], size: int) -> int:
  """Intervals of ``key`` inside a ``size``-gram that the other voice holds: at least the matched count."""
  covered, end = 0, 0
  for i in range(len(key) - size + 1):
    if key[i:i + size] in grams:
      covered += i + size - max(i, end)
      end = i + size
  return covered


def _longer(query: VoiceSketch, record: VoiceSketch) -> int:
  return max(1, len(query.intervals), len(record.intervals))


def compare(query: Sequence[VoiceSketch], record: Sequence[VoiceSketch], *, min_block: int = MIN_BLOCK,
            min_pair_fraction: float = MIN_PAIR_FRACTION, min_melody: float = 0.0,
            min_setting: float = 0.0) -> Comparison:
  """Aligns every query voice with every record voice (see the module docstring).

  Args:
    query, record: the sketches (highest voice first).
    min_block: shortest run of equal intervals that counts.
    min_pair_fraction: a voice pair is kept when it matches at least this fraction of the shorter voice.
    min_melody: melody scores below this may be reported as 0 (voice pairs that cannot reach it, nor a kept
      pair, are not aligned: a count of the intervals in shared ``min_block``-grams bounds the alignment).
    min_setting: setting scores below this may be reported as 0 (when the same bound shows that the voices
      cannot reach it, the voices of equal rank are not all aligned).

  Returns:
    :class:`Comparison`.
  """
  total_query = sum(len(s.intervals) for s in query)
  total_record = sum(len(s.intervals) for s in record)
  if not total_query or not total_record:
    return Comparison([], 0.0, 0.0, 0.0, None)
  table = {}
  record_grams = [_gram_set(r.key, min_block) for r in record]
  bounds = {(qi, ri): _upper_bound(q.key, record_grams[ri], min_block)
            for qi, q in enumerate(query) for ri in range(len(record))}
  by_rank = len(query) == len(record) >= MIN_SETTING_VOICES
  if by_rank:  # the setting score is wanted only when the bounds of the voices of equal rank can reach it
    by_rank = statistics.fmean(bounds[(i, i)] / _longer(q, record[i]) for i, q in enumerate(query)) >= min_setting
  for qi, q in enumerate(query):
    for ri, r in enumerate(record):
      shorter = min(len(q.intervals), len(r.intervals))
      needed = max(MIN_PAIR_INTERVALS, min_pair_fraction * shorter)
      if ri == 0:
        needed = min(needed, min_melody * max(len(q.intervals), len(r.intervals)))
      if by_rank and qi == ri:
        needed = 0  # the setting score needs every voice of equal rank aligned
      if bounds[(qi, ri)] < needed:
        table[(qi, ri)] = (0, [], shorter)  # cannot reach a kept pair (nor the melody floor): not aligned
        continue
      matched, blocks = align(q, r, min_block=min_block)
      table[(qi, ri)] = (matched, blocks, shorter)
  melody, melody_voice = 0.0, None
  for qi, q in enumerate(query):
    score = table[(qi, 0)][0] / max(len(q.intervals), len(record[0].intervals))
    if score > melody:
      melody, melody_voice = score, qi
  melody_repeated = 0.0 if melody_voice is None else _repeated_share(query[melody_voice],
                                                                     table[(melody_voice, 0)][1])
  used_q, used_r, pairs = set(), set(), []
  for (qi, ri), (matched, blocks, shorter) in sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0])):
    if qi in used_q or ri in used_r or matched < max(MIN_PAIR_INTERVALS, min_pair_fraction * shorter):
      continue
    pair = _pair(query[qi], record[ri], qi, ri, blocks)
    if pairs and not (_overlap(pair.record_bars, pairs[0].record_bars) and
                      _overlap(pair.query_bars, pairs[0].query_bars)):
      continue  # voices matched in other bars than the strongest pair, in either piece: not one passage copied
    used_q.add(qi)
    used_r.add(ri)
    pairs.append(pair)
  matched = sum(p.matched for p in pairs)
  setting_voices = tuple(table[(i, i)][0] / _longer(q, record[i]) for i, q in enumerate(query)) if by_rank else ()
  return Comparison(sorted(pairs, key=lambda p: p.query_voice), matched / total_query, matched / total_record,
                    melody, melody_voice, statistics.fmean(setting_voices) if setting_voices else 0.0,
                    setting_voices, melody_repeated)
