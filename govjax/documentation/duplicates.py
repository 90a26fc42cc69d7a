"""Near-duplicate report inside a documented set: works that are copies or arrangements of each other.

Duplicates drive memorisation (a work seen twice is learned twice), so they are reported before training and
shipped with the manifest. Levels, strongest first:

- ``exact-file``: same source bytes (sha256);
- ``exact-content``: same canonical content (e.g. the same chorale in two encodings, or transposed);
- ``near-copy``: estimated Jaccard of the all-voice (``full``) fingerprints >= ``near_copy_threshold``;
- ``same-melody``: only the highest voice matches (``melody`` Jaccard >= ``melody_threshold``): in music21's
  Bach corpus these are mostly re-harmonisations of one chorale tune, expected and legitimate.

Candidate pairs come from a datasketch ``MinHashLSH`` (:mod:`govjax.documentation.lsh`), or all pairs with
``exhaustive=True``, and are re-scored from the MinHash signatures.

Example:
  >>> from govjax.documentation.tiers import build_records
  >>> recs = build_records([{"work_id": "a", "text": "one two three four five six seven"},
  ...                       {"work_id": "b", "text": "One two three, four five six seven!"}])
  >>> [(p.work_a, p.work_b, p.level) for p in find_duplicates(recs).pairs]
  [('a', 'b', 'exact-content')]
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from govjax.documentation import image_fingerprint
from govjax.documentation.lsh import candidate_pairs, signature_index
from govjax.documentation.music_fingerprint import decode_signature
from govjax.documentation.tiers import has_fingerprint

LEVELS = ("exact-file", "exact-content", "near-copy", "same-melody")


@dataclasses.dataclass(frozen=True)
class DuplicatePair:
  """Two works (``work_a < work_b``) at a duplicate ``level`` with their similarity estimates."""

  work_a: str
  work_b: str
  level: str
  full_jaccard: float | None
  melody_jaccard: float | None


@dataclasses.dataclass
class DuplicateReport:
  """Every duplicate pair found, with the thresholds used.

  Attributes:
    num_works: works compared.
    pairs: the pairs, strongest level first, then by score.
    near_copy_threshold, melody_threshold, max_hamming: thresholds used.
    candidates_checked: candidate pairs scored.
    scope: which works were compared (e.g. the training set).
  """

  num_works: int
  pairs: list[DuplicatePair]
  near_copy_threshold: float
  melody_threshold: float
  max_hamming: int
  candidates_checked: int
  scope: str = "all given records"

  def counts(self) -> dict[str, int]:
    """Number of pairs per level (every level present)."""
    counter = collections.Counter(p.level for p in self.pairs)
    return {level: counter.get(level, 0) for level in LEVELS}

  def groups(self, levels: Sequence[str] = ("exact-file", "exact-content", "near-copy")) -> list[list[str]]:
    """Connected groups of works linked by pairs at ``levels`` (sorted; singletons left out)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
      while parent.setdefault(x, x) != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
      return x

    for pair in self.pairs:
      if pair.level in levels:
        parent[find(pair.work_a)] = find(pair.work_b)
    groups: dict[str, list[str]] = {}
    for work in parent:
      groups.setdefault(find(work), []).append(work)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)

  def to_json(self) -> dict[str, Any]:
    return {"scope": self.scope, "num_works": self.num_works, "counts": self.counts(),
            "thresholds": {"near_copy": self.near_copy_threshold, "same_melody": self.melody_threshold,
                           "max_hamming": self.max_hamming},
            "candidates_checked": self.candidates_checked, "near_copy_groups": self.groups(),
            "pairs": [dataclasses.asdict(p) for p in self.pairs]}


def _signature_pairs(records: Sequence[Mapping[str, Any]], field: str, size_field: str, threshold: float,
                     exhaustive: bool) -> tuple[dict[tuple[str, str], float], int]:
  """Estimated Jaccard of the ``field`` signatures for candidate pairs with both sets non-empty."""
  usable = [r for r in records if int(r["tier3"].get(size_field, 0) or 0) > 0]
  if len(usable) < 2:
    return {}, 0
  signatures = {r["work_id"]: decode_signature(r["tier3"][field]) for r in usable}
  num_perm = len(next(iter(signatures.values())))
  if exhaustive:
    candidates = {tuple(sorted(p)) for p in itertools.combinations(signatures, 2)}
  else:
    lsh = signature_index(signatures, threshold=threshold, num_perm=num_perm)
    candidates = candidate_pairs(lsh, signatures)
  scores = {pair: float(np.mean(signatures[pair[0]] == signatures[pair[1]])) for pair in candidates}
  return scores, len(candidates)


def find_duplicates(records: Sequence[Mapping[str, Any]], *, near_copy_threshold: float = 0.45,
                    melody_threshold: float = 0.5, max_hamming: int = 10,
                    exhaustive: bool = False) -> DuplicateReport:
  """Finds duplicate pairs among manifest records (see the module docstring).

  Args:
    records: manifest records (:func:`~govjax.documentation.manifest.build_records` or a loaded manifest's).
    near_copy_threshold: minimum estimated all-voice (or text) Jaccard for ``near-copy``.
    melody_threshold: minimum estimated highest-voice Jaccard for ``same-melody``.
    max_hamming: maximum perceptual-hash Hamming distance for image near-copies.
    exhaustive: score all pairs instead of LSH candidates.

  Returns:
    :class:`DuplicateReport`.
  """
  best: dict[tuple[str, str], DuplicatePair] = {}
  rank = {level: i for i, level in enumerate(LEVELS)}

  def offer(pair: tuple[str, str], level: str, full: float | None = None,
            melody: float | None = None) -> None:
    a, b = sorted(pair)
    current = best.get((a, b))
    if current is None or rank[level] < rank[current.level]:
      best[(a, b)] = DuplicatePair(a, b, level, full, melody)

  for field, level in (("source_sha256", "exact-file"), ("content_sha256", "exact-content")):
    groups: dict[tuple[str, str], list[str]] = {}
    for record in records:
      value = record["tier2"].get(field)
      if value:
        groups.setdefault((record["modality"], value), []).append(record["work_id"])
    for ids in groups.values():
      for pair in itertools.combinations(sorted(set(ids)), 2):
        offer(pair, level)
  checked = 0
  music = [r for r in records if r["modality"] == "music" and has_fingerprint(r)]
  full, n_full = _signature_pairs(music, "full", "full_size", near_copy_threshold, exhaustive)
  melody, n_melody = _signature_pairs(music, "melody", "melody_size", melody_threshold, exhaustive)
  checked += n_full + n_melody
  signatures = {r["work_id"]: r["tier3"] for r in music}
  for pair in set(full) | set(melody):
    tier3_a, tier3_b = signatures[pair[0]], signatures[pair[1]]
    f = full.get(pair)
    if f is None and tier3_a["full_size"] and tier3_b["full_size"]:
      f = float(np.mean(decode_signature(tier3_a["full"]) == decode_signature(tier3_b["full"])))
    m = melody.get(pair)
    if m is None and tier3_a["melody_size"] and tier3_b["melody_size"]:
      m = float(np.mean(decode_signature(tier3_a["melody"]) == decode_signature(tier3_b["melody"])))
    if f is not None and f >= near_copy_threshold:
      offer(pair, "near-copy", f, m)
    elif m is not None and m >= melody_threshold:
      offer(pair, "same-melody", f, m)
    elif pair in best:  # an exact pair: keep its scores for the record
      best[pair] = dataclasses.replace(best[pair], full_jaccard=f, melody_jaccard=m)
  texts = [r for r in records if r["modality"] == "text" and has_fingerprint(r)]
  text_scores, n_text = _signature_pairs(texts, "signature", "size", near_copy_threshold, exhaustive)
  checked += n_text
  for pair, score in text_scores.items():
    if score >= near_copy_threshold:
      offer(pair, "near-copy", score)
  images = [r for r in records if r["modality"] == "image" and has_fingerprint(r)]
  for i, a in enumerate(images):
    for b in images[i + 1:]:
      checked += 1
      d_p = image_fingerprint.hamming(a["tier3"]["phash"], b["tier3"]["phash"])
      d_d = image_fingerprint.hamming(a["tier3"]["dhash"], b["tier3"]["dhash"])
      if d_p <= max_hamming and d_d <= max_hamming:
        offer((a["work_id"], b["work_id"]), "near-copy", 1.0 - max(d_p, d_d) / image_fingerprint.HASH_BITS)
  order = lambda p: (rank[p.level], -(p.full_jaccard or 0.0), -(p.melody_jaccard or 0.0), p.work_a, p.work_b)
  pairs = sorted(best.values(), key=order)
  return DuplicateReport(len(records), pairs, near_copy_threshold, melody_threshold, max_hamming, checked)
