"""Near-duplicate report inside a documented set: works that are copies, parts or other settings of each other.

Duplicates drive memorisation (a work seen twice is learned twice), so they are reported before training and
shipped with the manifest. Levels, strongest first:

- ``exact-file``: same source bytes (sha256);
- ``exact-content``: same canonical content (e.g. the same chorale in two encodings, or transposed);
- music: the lookup's own tier-3 decision (:meth:`govjax.documentation.lookup.ManifestIndex.classify`), each
  record's voices queried against the other records (both directions; the stronger answer kept), so that a
  pair reported here is what ``govjax lookup`` answers for one of the two works:

  - ``near-copy``: an edited, ornamented, re-barred or re-voiced copy, or a re-used setting;
  - ``partial-copy``: one work is an excerpt or a subset of the voices of the other (``detail`` says which);
  - ``same-tune``: the same tune in another setting (in music21's Bach corpus mostly re-harmonisations of one
    chorale tune, expected and legitimate);

- text: estimated Jaccard of the MinHash signatures >= ``near_copy_threshold`` (``near-copy``); images: both
  perceptual hashes within ``max_hamming`` bits (``near-copy``).

Music candidates come from the lookup's interval-gram index (every pair with ``exhaustive=True``); text
candidates from a datasketch ``MinHashLSH`` (:mod:`govjax.documentation.lsh`), or all pairs with
``exhaustive=True``. The music MinHash signatures (tier 3 ``melody`` / ``full``) are still reported per pair
(``full_jaccard``, ``melody_jaccard``) but no longer decide: a MinHash of exact 5-note shingles misses edited
copies, excerpts and other settings that the alignment finds.

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
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from govjax.documentation import image_fingerprint
from govjax.documentation.lookup import ManifestIndex
from govjax.documentation.lsh import candidate_pairs, signature_index
from govjax.documentation.manifest import Manifest
from govjax.documentation.music_fingerprint import FingerprintConfig, decode_signature
from govjax.documentation.text_fingerprint import TextFingerprintConfig
from govjax.documentation.tiers import has_fingerprint

LEVELS = ("exact-file", "exact-content", "near-copy", "partial-copy", "same-tune")


@dataclasses.dataclass(frozen=True)
class DuplicatePair:
  """Two works (``work_a < work_b``) at a duplicate ``level`` with their similarity estimates.

  Attributes:
    work_a, work_b: the works.
    level: one of :data:`LEVELS`.
    full_jaccard, melody_jaccard: MinHash estimates (music: all voices / highest voice; text: ``full_jaccard``
      only), for the record; None when not computed.
    score: the deciding score (music: the lookup's coverage or tune alignment; text: Jaccard; images:
      ``1 - hamming/64``; exact levels: 1.0).
    detail: music tier 3: which work was queried (``query``), the lookup's ``partial_kind`` and the matched
      voices and bars (``voices``).
  """

  work_a: str
  work_b: str
  level: str
  full_jaccard: float | None
  melody_jaccard: float | None
  score: float | None = None
  detail: dict[str, Any] | None = None


@dataclasses.dataclass
class DuplicateReport:
  """Every duplicate pair found, with the thresholds used.

  Attributes:
    num_works: works compared.
    pairs: the pairs, strongest level first, then by score.
    near_copy_threshold, melody_threshold, max_hamming: thresholds used (``melody_threshold``: the lookup's
      same-tune alignment).
    copy_threshold, partial_threshold: the lookup's music near-copy and partial-copy coverages.
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
  copy_threshold: float = 0.5
  partial_threshold: float = 0.8

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
            "thresholds": {"near_copy": self.near_copy_threshold, "same_tune": self.melody_threshold,
                           "music_copy": self.copy_threshold, "music_partial": self.partial_threshold,
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


def _music_pairs(music: Sequence[Mapping[str, Any]], *, melody_threshold: float, copy_threshold: float,
                 partial_threshold: float, exhaustive: bool) -> tuple[dict[tuple[str, str], DuplicatePair], int]:
  """The lookup's tier-3 answer for every music pair (each record queried against the others)."""
  if len(music) < 2:
    return {}, 0
  manifest = Manifest({}, list(music), FingerprintConfig(), TextFingerprintConfig(), pathlib.Path("."))
  index = ManifestIndex(manifest, melody_threshold=melody_threshold, copy_threshold=copy_threshold,
                        partial_threshold=partial_threshold)
  rank = {level: i for i, level in enumerate(LEVELS)}
  tier3 = {r["work_id"]: r["tier3"] for r in music}
  best: dict[tuple[str, str], DuplicatePair] = {}
  checked = 0
  for record in music:
    query = record["work_id"]
    checked += len(index.record_candidates(query, exhaustive=exhaustive))
    for match in index.related_records(query, exhaustive=exhaustive):
      a, b = sorted((query, match.work_id))
      current = best.get((a, b))
      if current is not None and (rank[current.level], -(current.score or 0.0)) <= (rank[match.level],
                                                                                    -match.score):
        continue
      detail = {"query": query, "voices": match.scores.get("voices", [])}
      if "partial_kind" in match.scores:
        part, whole = ((query, match.work_id) if match.scores["partial_kind"] == "part of the work"
                       else (match.work_id, query))
        detail["partial_kind"] = f"{part} is part of {whole}"
      best[(a, b)] = DuplicatePair(a, b, match.level, _jaccard(tier3[a], tier3[b], "full"),
                                   _jaccard(tier3[a], tier3[b], "melody"), round(match.score, 4), detail)
  return best, checked


def _jaccard(a: Mapping[str, Any], b: Mapping[str, Any], field: str) -> float | None:
  if not a.get(f"{field}_size") or not b.get(f"{field}_size") or not a.get(field) or not b.get(field):
    return None
  return float(np.mean(decode_signature(a[field]) == decode_signature(b[field])))


def find_duplicates(records: Sequence[Mapping[str, Any]], *, near_copy_threshold: float = 0.45,
                    melody_threshold: float = 0.62, copy_threshold: float = 0.5, partial_threshold: float = 0.8,
                    max_hamming: int = 10, exhaustive: bool = False) -> DuplicateReport:
  """Finds duplicate pairs among manifest records (see the module docstring).

  Args:
    records: manifest records (:func:`~govjax.documentation.manifest.build_records` or a loaded manifest's).
    near_copy_threshold: minimum estimated Jaccard for a text ``near-copy``.
    melody_threshold: the lookup's same-tune alignment (music).
    copy_threshold: the lookup's near-copy coverage (music).
    partial_threshold: the lookup's partial-copy coverage (music).
    max_hamming: maximum perceptual-hash Hamming distance for image near-copies.
    exhaustive: score all pairs instead of candidates (music: every record aligned; text: no LSH).

  Returns:
    :class:`DuplicateReport`.
  """
  best: dict[tuple[str, str], DuplicatePair] = {}
  rank = {level: i for i, level in enumerate(LEVELS)}

  def offer(pair: tuple[str, str], level: str, full: float | None = None, melody: float | None = None,
            score: float | None = None) -> None:
    a, b = sorted(pair)
    current = best.get((a, b))
    if current is None or rank[level] < rank[current.level]:
      best[(a, b)] = DuplicatePair(a, b, level, full, melody, score)

  for field, level in (("source_sha256", "exact-file"), ("content_sha256", "exact-content")):
    groups: dict[tuple[str, str], list[str]] = {}
    for record in records:
      value = record["tier2"].get(field)
      if value:
        groups.setdefault((record["modality"], value), []).append(record["work_id"])
    for ids in groups.values():
      for pair in itertools.combinations(sorted(set(ids)), 2):
        offer(pair, level, score=1.0)
  music = [r for r in records if r["modality"] == "music" and has_fingerprint(r) and r["tier3"].get("voices")]
  music_pairs, checked = _music_pairs(music, melody_threshold=melody_threshold, copy_threshold=copy_threshold,
                                      partial_threshold=partial_threshold, exhaustive=exhaustive)
  for pair, found in music_pairs.items():
    current = best.get(pair)
    if current is None:
      best[pair] = found
    else:  # an exact pair: keep the exact level, with the alignment's scores for the record
      best[pair] = dataclasses.replace(current, full_jaccard=found.full_jaccard,
                                       melody_jaccard=found.melody_jaccard, detail=found.detail)
  texts = [r for r in records if r["modality"] == "text" and has_fingerprint(r)]
  text_scores, n_text = _signature_pairs(texts, "signature", "size", near_copy_threshold, exhaustive)
  checked += n_text
  for pair, score in text_scores.items():
    if score >= near_copy_threshold:
      offer(pair, "near-copy", score, score=score)
  images = [r for r in records if r["modality"] == "image" and has_fingerprint(r)]
  for i, a in enumerate(images):
    for b in images[i + 1:]:
      checked += 1
      d_p = image_fingerprint.hamming(a["tier3"]["phash"], b["tier3"]["phash"])
      d_d = image_fingerprint.hamming(a["tier3"]["dhash"], b["tier3"]["dhash"])
      if d_p <= max_hamming and d_d <= max_hamming:
        score = 1.0 - max(d_p, d_d) / image_fingerprint.HASH_BITS
        offer((a["work_id"], b["work_id"]), "near-copy", score, score=score)
  order = lambda p: (rank[p.level], -(p.score or 0.0), -(p.full_jaccard or 0.0), p.work_a, p.work_b)
  pairs = sorted(best.values(), key=order)
  return DuplicateReport(len(records), pairs, near_copy_threshold, melody_threshold, max_hamming, checked,
                         copy_threshold=copy_threshold, partial_threshold=partial_threshold)
