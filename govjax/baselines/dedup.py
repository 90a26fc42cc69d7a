"""Deduplication baseline: drop near-duplicate works before training (keep the first of each group).

Each work's frame-major SATB tokens (:mod:`govjax.data.tokenizer`) become, per voice, a sequence of *events*: a
note (its pitch interval from the voice's previous note and its length in frames), a rest (its length) or, at the
start, the voice's first note (its length only). Absolute pitch is gone, so a transposed copy has the same events;
rhythm is kept on the tokenizer's grid. The shingles of a work are its voices' ``ngram``-grams of events (tagged
with the voice). Works are compared by the Jaccard similarity of their shingle sets; candidates come from a
datasketch ``MinHashLSH`` over ``num_perm``-permutation MinHash signatures, and each candidate pair is re-scored
exactly from the sets.

Works are visited in input order; a work whose similarity to an already kept work reaches ``threshold`` is removed
and reported with the kept work it duplicates (the most similar one), otherwise it is kept. datasketch chooses the
LSH bands by weighing false positives against false negatives; its default (equal weights) finds only 40% of the
pairs exactly at a threshold of 0.8, so the index weighs a missed pair 99 times a spurious candidate
(:data:`LSH_WEIGHTS`): a pair at the threshold is then found with probability >= 0.97 (0.986 at 0.8), more similar
pairs more surely. Spurious candidates cost an exact re-scoring, never a removal below the threshold.

Example:
  >>> import numpy as np
  >>> from govjax.data.loader import Work
  >>> def work(i, tokens):
  ...   return Work(work_id=f"w{i}", title="", composer="", collection="", source_path="", sha256="", key="",
  ...               tokens=np.asarray(tokens, np.int32), length=len(tokens))
  >>> melody = np.random.default_rng(0).integers(40, 60, size=(64, 4))
  >>> works = [work(0, melody.ravel()), work(1, (melody + 2).ravel()), work(2, melody[::-1].ravel())]
  >>> kept, report = deduplicate_works(works)
  >>> [w.work_id for w in kept], [(r.work_id, r.duplicate_of, r.similarity) for r in report.removed]
  (['w0', 'w2'], [('w1', 'w0', 1.0)])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from govjax.data.loader import FRAME_SIZE, PAD, Work, as_work

REST = 1  # govjax.data.tokenizer.REST (not imported, so deduplication does not need music21)
HOLD = 2
PITCH_OFFSET = 3
MAX_EVENT_FRAMES = 255  # longer events are capped (their length class saturates)
_NOTE, _REST, _FIRST, _TIED = 0, 1, 2, 3  # event kinds
LSH_WEIGHTS = (0.01, 0.99)  # datasketch MinHashLSH (false positive, false negative) weights


@dataclasses.dataclass(frozen=True)
class RemovedWork:
  """A removed work and the kept work it duplicates (indices into the input list)."""

  index: int
  work_id: str
  duplicate_of_index: int
  duplicate_of: str
  similarity: float


@dataclasses.dataclass
class DedupReport:
  """What :func:`deduplicate_works` did.

  Attributes:
    num_works: works in the input.
    kept_indices: input indices of the kept works, in order.
    removed: every removed work, in input order.
    threshold, num_perm, ngram: parameters used.
    candidates_checked: candidate pairs re-scored exactly.
  """

  num_works: int
  kept_indices: list[int]
  removed: list[RemovedWork]
  threshold: float
  num_perm: int
  ngram: int
  candidates_checked: int = 0

  @property
  def num_kept(self) -> int:
    return len(self.kept_indices)

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready form."""
    return {
        "num_works": self.num_works, "num_kept": self.num_kept, "num_removed": len(self.removed),
        "kept_indices": list(self.kept_indices), "removed": [dataclasses.asdict(r) for r in self.removed],
        "threshold": self.threshold, "num_perm": self.num_perm, "ngram": self.ngram,
        "candidates_checked": self.candidates_checked,
    }


def voice_events(column: np.ndarray) -> np.ndarray:
  """Transposition-invariant event codes of one voice.

  Args:
    column: the voice's token per frame (``tokens[v::4]``); PAD frames are ignored.

  Returns:
    int64 ``[num_events]``: ``kind * 2**20 + (interval + 512) * 2**8 + min(length, 255)`` where kind is a note,
    a rest, the voice's first note or a note tied over from before the work's first frame, and ``interval`` is
    the pitch step from the voice's previous note (0 for non-notes).
  """
  column = np.asarray(column, np.int64)
  column = column[column != PAD]
  if column.size == 0:
    return np.zeros((0,), np.int64)
  is_pitch = column >= PITCH_OFFSET
  prev = np.concatenate([[-1], column[:-1]])
  starts = is_pitch | ((column == REST) & (prev != REST))
  starts[0] = True
  first = np.flatnonzero(starts)
  lengths = np.diff(np.append(first, column.size))
  heads = column[first]
  kinds = np.where(heads >= PITCH_OFFSET, _NOTE, np.where(heads == REST, _REST, _TIED))
  pitch_heads = np.flatnonzero(heads >= PITCH_OFFSET)
  intervals = np.zeros(first.size, np.int64)
  if pitch_heads.size:
    intervals[pitch_heads[1:]] = np.diff(heads[pitch_heads])
    kinds[pitch_heads[0]] = _FIRST
  return kinds * (1 << 20) + (intervals + 512) * (1 << 8) + np.minimum(lengths, MAX_EVENT_FRAMES)


def work_shingles(tokens: np.ndarray, *, ngram: int = 8) -> set[bytes]:
  """The shingle set of a work: per voice, ``ngram``-grams of :func:`voice_events` (a shorter voice gives its
  whole event sequence as one shingle).

  Args:
    tokens: int ``[num_frames * 4]`` frame-major SATB tokens.
    ngram: events per shingle.

  Returns:
    The set of shingles (bytes).
  """
  tokens = np.asarray(tokens)
  shingles = set()
  for voice in range(FRAME_SIZE):
    events = voice_events(tokens[voice::FRAME_SIZE]).astype("<i8")
    if events.size == 0:
      continue
    tag = bytes([voice])
    if events.size < ngram:
      shingles.add(tag + events.tobytes())
      continue
    windows = np.lib.stride_tricks.sliding_window_view(events, ngram)
    shingles.update(tag + row.tobytes() for row in windows)
  return shingles


def jaccard(a: set, b: set) -> float:
  """Jaccard similarity of two sets (1.0 for two empty sets)."""
  if not a and not b:
    return 1.0
  return len(a & b) / len(a | b)


def deduplicate_works(works: Sequence[Work | Mapping[str, Any]], *, threshold: float = 0.8, num_perm: int = 128,
                      ngram: int = 8, seed: int = 1) -> tuple[list[Work], DedupReport]:
  """Removes near-duplicate works, keeping the first of each group in input order.

  Args:
    works: :class:`govjax.data.loader.Work` objects (or dicts with the same fields).
    threshold: Jaccard similarity of shingle sets at or above which a work counts as a duplicate.
    num_perm: MinHash permutations for the LSH candidate search.
    ngram: events per shingle.
    seed: MinHash seed.

  Returns:
    ``(kept, report)``: the kept works in input order and a :class:`DedupReport` listing every removed work.
  """
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"deduplicate_works: threshold must be in (0, 1], got {threshold}")
  if ngram < 1:
    raise ValueError(f"deduplicate_works: ngram must be >= 1, got {ngram}")
  works = [as_work(w) for w in works]
  lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
  kept_sets: dict[int, set[bytes]] = {}
  kept, removed = [], []
  checked = 0
  for index, work in enumerate(works):
    shingles = work_shingles(work.tokens, ngram=ngram)
    minhash = MinHash(num_perm=num_perm, seed=seed)
    minhash.update_batch(sorted(shingles))
    best, best_index = -1.0, -1
    for key in lsh.query(minhash):
      other = int(key)
      checked += 1
      similarity = jaccard(shingles, kept_sets[other])
      if similarity > best or (similarity == best and other < best_index):
        best, best_index = similarity, other
    if best >= threshold:
      removed.append(RemovedWork(index=index, work_id=work.work_id, duplicate_of_index=best_index,
                                 duplicate_of=works[best_index].work_id, similarity=round(best, 6)))
      continue
    lsh.insert(str(index), minhash)
    kept_sets[index] = shingles
    kept.append(index)
  report = DedupReport(num_works=len(works), kept_indices=kept, removed=removed, threshold=threshold,
                       num_perm=num_perm, ngram=ngram, candidates_checked=checked)
  return [works[i] for i in kept], report
