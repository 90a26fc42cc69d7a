"""Rights-holder lookup: is this file, or a near-copy of it, in the documented training set?

Given a query file (MusicXML / MIDI / ABC / Humdrum via music21, an image, or a text) and a manifest
(:mod:`govjax.documentation.manifest`), the lookup tries, in order of strength:

- tier **2a** ``exact-file``: sha256 of the query bytes equals a record's source sha256;
- tier **2b** ``exact-content``: the canonical content hash (music: transposition-, tempo- and
  encoding-invariant; text: normalised text; image: decoded pixels) equals a record's;
- tier **3** (music): candidates from an inverted index of the voices' interval 4-grams (exact counts, no
  sampling), then every voice of the query aligned with every voice of each candidate
  (:mod:`govjax.documentation.melodic_alignment`); with ``query_coverage`` (the share of the query found in
  the record) and ``record_coverage`` (the share of the record found in the query):

  - ``near-copy``: both coverages >= ``copy_threshold`` (an edited, ornamented, re-barred or re-voiced copy,
    or a re-used setting), or, between two pieces of as many voices (at least three), the voices compared rank
    by rank match on average >= ``setting_threshold`` of the longer voice (the comparison's ``setting``
    score, default :data:`SETTING_THRESHOLD`): a re-used setting with some of its lines re-written, whose
    coverages stay below ``copy_threshold`` (``copy_axis`` in ``scores`` says which rule answered);
  - ``partial-copy``: one coverage >= ``partial_threshold`` over at least two voices matched in the same
    bars (an excerpt, a subset of the voices, or the work with added parts), or one query voice found as an
    inner voice of the record with the same rhythm; ``scores`` names the matched voices and bars of both
    pieces;
  - ``same-tune``: the record's highest voice (its tune) is matched by one voice of the query over
    >= ``melody_threshold`` of the longer of the two, without a copy of the setting (e.g. another
    harmonisation of the same chorale tune, or the tune alone). Reported apart: it does not make ``found``
    true.

  Lines that mostly hold or repeat a note (inner voices of plain settings) match each other by chance: a
  partial copy, and a tune found in a query voice other than its highest, are answered only when at most
  :data:`MAX_REPEATED_SHARE` of the matched intervals are repeated notes.

  Between two one-voice works (a folk tune against a folk tune) a copy and the tune coincide, and a single
  line matched in a few blocks of intervals is weak evidence: either answer then also needs the tune score
  (``melody``) >= ``one_voice_threshold`` (default :data:`ONE_VOICE_THRESHOLD`).

  Text: every record's MinHash signature compared with the query's (one numpy comparison), a match needs
  estimated Jaccard >= ``near_copy_threshold``; images: both perceptual hashes within ``max_hamming`` bits.

Every match carries the record's tier-1 rights and treatment (excluded with reason / depth d / region) and,
when a run directory is given, the trained model's audit row (``<workdir>/audit/per_work.jsonl``) and how many
lineage files of generated outputs (``<workdir>/provenance/lineage/*.json``) list it
(:mod:`govjax.documentation.run_outputs`), or "not available". Each match names the tier that matched as
``matched_by``: ``exact`` (file bytes), ``content`` (canonical content), ``alignment`` (music tier 3) or
``fingerprint`` (text and image tier 3). A music lookup imports neither datasketch nor scipy.

A music query holds at most :data:`MAX_QUERY_NOTES` notes (a chorale has about 250; parsing and fingerprinting
that many takes a few seconds): MusicXML and MIDI files are counted before music21 parses them, other formats
(which cannot be counted without parsing) are limited to :data:`MAX_UNCOUNTED_QUERY_BYTES`. A longer query is
rejected with a :class:`QueryError` naming the limit; look up an excerpt instead (a partial copy).

Example::

    index = ManifestIndex(load_manifest("manifest_dir"))
    result = lookup_file("my_chorale.mid", index)
    result.found, [(m.work_id, m.tier, m.level) for m in result.matches]
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from govjax.core.errors import UserError
from govjax.documentation import image_fingerprint, music_fingerprint, music_notes, text_fingerprint
from govjax.documentation.manifest import Manifest, ManifestError, has_fingerprint, load_manifest, sha256_file
from govjax.documentation.melodic_alignment import (
    MIN_PAIR_INTERVALS,
    MIN_SETTING_VOICES,
    Comparison,
    VoiceSketch,
    compare,
    sketches_from_json,
)
from govjax.documentation.music_fingerprint import MusicFingerprint, decode_signature
from govjax.documentation.run_outputs import NOT_AVAILABLE, RunOutputs, load_run_outputs

__all__ = ["MAX_QUERY_NOTES", "MAX_UNCOUNTED_QUERY_BYTES", "ONE_VOICE_THRESHOLD", "SETTING_THRESHOLD", "LookupResult",
           "ManifestIndex", "Match", "NOT_AVAILABLE", "QueryError", "check_query_size", "lookup_file",
           "lookup_fingerprint", "query_modality"]

TIERS = {"exact-file": "2a", "exact-content": "2b", "near-copy": "3", "partial-copy": "3", "same-tune": "3"}
MATCHED_BY = {"exact-file": "exact", "exact-content": "content", "near-copy": "fingerprint",
              "partial-copy": "alignment", "same-tune": "alignment"}
_LEVEL_RANK = {"exact-file": 0, "exact-content": 1, "near-copy": 2, "partial-copy": 3, "same-tune": 4}
GRAM = 4  # intervals per gram of the candidate index
MIN_PARTIAL_INTERVALS = 24  # a partial copy covers at least this many matched intervals (about two bars of SATB)
MIN_SINGLE_VOICE_RHYTHM = 0.5  # one query voice found as an inner voice: rhythm classes agree on this share
# A partial copy, or a tune found in a query voice other than its highest, needs at most this share of its
# matched intervals to be repeated notes: inner voices that hold or repeat notes match by chance.
MAX_REPEATED_SHARE = 0.5
# Two one-voice works: any tier-3 answer needs the tune score >= this. Chosen on the development split of the
# Essen folk songs (experiments/results/lookup_bench.json, ``distinct_works``: at 0.62, 11 of 4,231 never-
# documented songs still got a copy answer for an unrelated melody; at 0.7, none); checked on held-out O'Neill's
# 1850 tunes (``distinct_works_oneills1850``: no false answer in 1,004 queries, upper bound 0.003).
ONE_VOICE_THRESHOLD = 0.7
# Two pieces of as many voices (at least MIN_SETTING_VOICES): a near-copy also when their voices, compared rank by
# rank, match on average this share of the longer voice (``Comparison.setting``). Chosen on the ordered pairs of
# music21's Bach chorales that set one tune (govjax.bench.lookup_distinct): pairs whose voices the ground truth
# aligns (mean difflib ratio >= 0.7, 79 pairs) score 0.575-1 (71 >= 0.6), other settings of the tune 0.20-0.56
# (642 pairs), pairs that are duplicates by note overlap alone 0.30-0.58 (197 pairs). Only pieces of as many
# voices (at least three) get the score, so one-voice tunes (folk songs) are never answered by it.
SETTING_THRESHOLD = 0.6
MAX_QUERY_NOTES = 10_000
MAX_UNCOUNTED_QUERY_BYTES = 512 * 1024


class QueryError(UserError, ValueError):
  """A query that cannot be looked up (unknown file type, unparsable or too long file)."""




# --------------------------------------------------------------------------------------------- results


@dataclasses.dataclass
class Match:
  """One documented work that matches the query.

  Attributes:
    work_id: the record's work.
    tier: ``2a``, ``2b`` or ``3``.
    matched_by: ``exact`` (tier 2a), ``content`` (tier 2b), ``alignment`` (music tier 3) or ``fingerprint``
      (text and image tier 3).
    level: ``exact-file``, ``exact-content``, ``near-copy``, ``partial-copy`` or ``same-tune``.
    score: 1.0 for exact tiers; music: the smaller coverage (near-copy; the setting score for a near-copy by
      the setting rule), the larger one (partial-copy) or the tune's alignment (same-tune); text: the estimated
      Jaccard; images: ``1 - hamming/64``.
    scores: every similarity computed (music: coverages, tune alignment, matched voices and bars; text:
      Jaccard and containment; images: Hamming distances).
    record: tier-1 summary (title, composer, licence, attribution, rights holder, opt-out, split).
    treatment: the record's tier-1 treatment (status, depth, region, reason, label).
    audit: the trained model's audit row for this work, or "not available".
    provenance_appearances: number of lineage files of generated outputs that list the work, or
      "not available".
  """

  work_id: str
  tier: str
  matched_by: str
  level: str
  score: float
  scores: dict[str, Any]
  record: dict[str, Any]
  treatment: dict[str, Any]
  audit: Any = NOT_AVAILABLE
  provenance_appearances: Any = NOT_AVAILABLE

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def describe_partial(self) -> str:
    """``query bars a-b = record bars c-d, voices ...`` for a partial copy (empty otherwise)."""
    voices = self.scores.get("voices") or []
    if self.level != "partial-copy" or not voices:
      return ""
    q = (min(v["query_bars"][0] for v in voices), max(v["query_bars"][1] for v in voices))
    r = (min(v["record_bars"][0] for v in voices), max(v["record_bars"][1] for v in voices))
    kind = self.scores.get("partial_kind", "")
    pairs = ", ".join(f"{v['query_voice'] + 1}->{v['record_voice'] + 1}" for v in voices)
    return (f"{kind}: query bars {q[0]}-{q[1]} = record bars {r[0]}-{r[1]}; voices (query->record, 1 = highest) "
            f"{pairs}")


@dataclasses.dataclass
class LookupResult:
  """The answer to one query.

  Attributes:
    query: what was looked up (path, modality, sha256, content hash, voices).
    found: a match at tier 2a, 2b, near-copy or partial-copy level exists.
    matches: those matches, strongest first.
    same_tune: same-tune-only matches (music), strongest first.
    model: which trained-model inputs were available (``audit``, ``provenance``).
  """

  query: dict[str, Any]
  found: bool
  matches: list[Match]
  same_tune: list[Match]
  model: dict[str, Any]

  @property
  def same_melody(self) -> list[Match]:
    """Former name of :attr:`same_tune`."""
    return self.same_tune

  def to_json(self) -> dict[str, Any]:
    return {"query": self.query, "found": self.found, "matches": [m.to_json() for m in self.matches],
            "same_tune": [m.to_json() for m in self.same_tune], "model": self.model}

  def format(self) -> str:
    """A human-readable report."""
    lines = [f"query: {self.query.get('path', '<in memory>')} ({self.query['modality']})"]
    if not self.found:
      lines.append("NOT FOUND: no copy, near-copy or partial copy of this work is documented in the training set.")
    heads = {"partial-copy": "FOUND (partial copy)", "same-tune": "RELATED (same tune, another setting)"}
    for match in self.matches + self.same_tune:
      rec = match.record
      lines.append(f"{heads.get(match.level, 'FOUND')}: {match.work_id} - {rec.get('title') or ''} "
                   f"({rec.get('composer') or 'unknown'})")
      lines.append(f"  matched by {match.matched_by} (tier {match.tier}, {match.level}), score {match.score:.3f}")
      if match.describe_partial():
        lines.append(f"  {match.describe_partial()}")
      lines.append(f"  licence: {rec.get('licence') or 'no rights record'}; attribution: "
                   f"{rec.get('attribution_text') or '-'}; opted out: {rec.get('opted_out')}")
      lines.append(f"  treatment in training: {match.treatment.get('label')}"
                   + (f" (split {rec.get('split')})" if rec.get("split") else ""))
      audit = match.audit
      if isinstance(audit, Mapping):
        audit = ", ".join(f"{k}={v}" for k, v in audit.items() if k != "work_id")
      lines.append(f"  trained-model audit: {audit}")
      lines.append(f"  appearances in output provenance: {match.provenance_appearances}"
                   + (f" of {self.model.get('num_lineage_files')} lineage files"
                      if isinstance(match.provenance_appearances, int) else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- index


def _record_summary(record: Mapping[str, Any]) -> dict[str, Any]:
  rights = record["tier1"].get("rights") or {}
  return {"title": record.get("title"), "composer": record.get("composer"), "split": record.get("split"),
          "source_path": record.get("source_path"), "licence": rights.get("licence"),
          "attribution_text": rights.get("attribution_text"), "rightsholder": rights.get("rightsholder"),
          "opted_out": rights.get("opted_out"), "simulated": rights.get("simulated")}


def _grams(sketch: VoiceSketch) -> np.ndarray:
  """Distinct interval ``GRAM``-grams of a voice as int64 codes (7 bits per interval)."""
  intervals = sketch.intervals.astype(np.int64) + 64
  if len(intervals) < GRAM:
    return np.zeros(0, np.int64)
  codes = np.zeros(len(intervals) - GRAM + 1, np.int64)
  for k in range(GRAM):
    codes = (codes << 7) | intervals[k:len(intervals) - GRAM + 1 + k]
  return np.unique(codes)


def _union_grams(sketches: Sequence[VoiceSketch]) -> np.ndarray:
  """Distinct interval grams of all voices."""
  grams = [_grams(s) for s in sketches]
  return np.unique(np.concatenate(grams)) if grams else np.zeros(0, np.int64)


def _unmatched(sketches: Sequence[VoiceSketch], matched: set[int]) -> bool:
  """Whether a voice of some length (at least ``MIN_PAIR_INTERVALS`` intervals) was left unmatched."""
  return any(i not in matched and len(s.intervals) >= MIN_PAIR_INTERVALS for i, s in enumerate(sketches))


class _GramIndex:
  """Exact inverted index of interval grams: which records hold how many of a query's grams."""

  def __init__(self, grams_per_record: Sequence[np.ndarray]):
    self.sizes = np.array([len(g) for g in grams_per_record], np.int64)
    codes = np.concatenate(grams_per_record) if grams_per_record else np.zeros(0, np.int64)
    owners = np.repeat(np.arange(len(grams_per_record)), self.sizes)
    order = np.argsort(codes, kind="stable")
    self.codes, self.owners = codes[order], owners[order]

  def hits(self, query: np.ndarray) -> np.ndarray:
    """Per record, how many of the (distinct) ``query`` grams it holds."""
    if not len(query) or not len(self.codes):
      return np.zeros(len(self.sizes), np.int64)
    left = np.searchsorted(self.codes, query, "left")
    right = np.searchsorted(self.codes, query, "right")
    found = np.concatenate([self.owners[a:b] for a, b in zip(left, right, strict=True) if b > a] or
                           [np.zeros(0, np.int64)])
    return np.bincount(found, minlength=len(self.sizes))


class ManifestIndex:
  """Lookup structures over a manifest: hash tables (tier 2), interval-gram index and alignment (music tier 3),
  LSH (text) and Hamming search (images).

  Args:
    manifest: a loaded :class:`~govjax.documentation.manifest.Manifest`.
    near_copy_threshold: minimum estimated Jaccard for a text near-copy.
    melody_threshold: minimum tune alignment for a same-tune report (music).
    copy_threshold: minimum of both coverages for a music near-copy.
    partial_threshold: minimum of one coverage for a music partial copy.
    one_voice_threshold: between a one-voice query and a one-voice record, minimum tune score (``melody``)
      for any music tier-3 answer (near copy or same tune).
    setting_threshold: between two pieces of as many voices (at least three), minimum voice-by-voice setting
      score (``Comparison.setting``) for a music near-copy whose coverages are below ``copy_threshold``.
    max_hamming: maximum Hamming distance (of 64 bits) of both perceptual hashes for an image match.
    num_candidates: music records aligned per query: the best by gram coverage and, as many again, the best
      by the tune's grams.
  """

  def __init__(self, manifest: Manifest, *, near_copy_threshold: float = 0.45, melody_threshold: float = 0.62,
               copy_threshold: float = 0.5, partial_threshold: float = 0.8,
               one_voice_threshold: float = ONE_VOICE_THRESHOLD, setting_threshold: float = SETTING_THRESHOLD,
               max_hamming: int = 10, num_candidates: int = 16):
    self.manifest = manifest
    self.near_copy_threshold = near_copy_threshold
    self.melody_threshold = melody_threshold
    self.copy_threshold = copy_threshold
    self.partial_threshold = partial_threshold
    self.one_voice_threshold = one_voice_threshold
    self.setting_threshold = setting_threshold
    self.max_hamming = max_hamming
    self.num_candidates = num_candidates
    self.records = {r["work_id"]: r for r in manifest.records}
    self.by_source: dict[str, list[str]] = {}
    self.by_content: dict[tuple[str, str], list[str]] = {}
    for record in manifest.records:
      tier2 = record["tier2"]
      if tier2.get("source_sha256"):
        self.by_source.setdefault(tier2["source_sha256"], []).append(record["work_id"])
      if tier2.get("content_sha256"):
        key = (record["modality"], tier2["content_sha256"])
        self.by_content.setdefault(key, []).append(record["work_id"])
    music = [r for r in manifest.records if r["modality"] == "music" and has_fingerprint(r)]
    self._music_ids = [r["work_id"] for r in music]
    self._music_rows = {w: i for i, w in enumerate(self._music_ids)}
    self._sketches: list[list[VoiceSketch]] = []
    for record in music:
      try:
        self._sketches.append(sketches_from_json(record["tier3"].get("voices", ())))
      except (ValueError, KeyError, TypeError) as error:
        raise ManifestError(f"record {record['work_id']!r}: field 'tier3.voices' is malformed ({error})") from error
    self._grams = _GramIndex([_union_grams(s) for s in self._sketches])
    self._tune_grams = _GramIndex([_grams(s[0]) if s else np.zeros(0, np.int64) for s in self._sketches])
    self._text = self._signature_table("text", ("signature", "size"))
    images = [r for r in manifest.records if r["modality"] == "image" and has_fingerprint(r)]
    self._image_ids = [r["work_id"] for r in images]
    self._phash = [r["tier3"]["phash"] for r in images]
    self._dhash = [r["tier3"]["dhash"] for r in images]

  def _signature_table(self, modality: str, fields: Sequence[str]) -> dict[str, Any]:
    records = [r for r in self.manifest.records if r["modality"] == modality and has_fingerprint(r)]
    table: dict[str, Any] = {"ids": [r["work_id"] for r in records]}
    for name in fields:
      if name.endswith("size"):
        table[name] = np.array([int(r["tier3"][name]) for r in records], np.int64)
      else:
        rows = [decode_signature(r["tier3"][name]) for r in records]
        table[name] = np.stack(rows) if rows else np.zeros((0, 0), np.uint32)
    table["position"] = {w: i for i, w in enumerate(table["ids"])}
    return table

  def __len__(self) -> int:
    return len(self.records)

  def music_candidates(self, fingerprint: MusicFingerprint) -> set[str]:
    """Work ids whose voices are aligned with the query's (before the decision)."""
    return {self._music_ids[i] for i in self._candidate_rows(list(fingerprint.voices))}

  def _candidate_rows(self, sketches: Sequence[VoiceSketch]) -> list[int]:
    if not sketches or not self._music_ids:
      return []
    query = _union_grams(sketches)
    hits = self._grams.hits(query)
    coverage = np.maximum(hits / max(1, len(query)), hits / np.maximum(1, self._grams.sizes))
    tune_hits = self._tune_grams.hits(query)
    tune = tune_hits / np.maximum(1, self._tune_grams.sizes)
    k = self.num_candidates
    rows = set(np.argsort(-coverage, kind="stable")[:k].tolist()) | set(np.argsort(-tune, kind="stable")[:k].tolist())
    return sorted(r for r in rows if hits[r] > 0)

  # -- matching --------------------------------------------------------------------------------------

  def _match(self, work_id: str, level: str, score: float, scores: dict[str, Any],
             matched_by: str | None = None) -> Match:
    record = self.records[work_id]
    return Match(work_id, TIERS[level], matched_by or MATCHED_BY[level], level, float(score), scores,
                 _record_summary(record), dict(record["tier1"]["treatment"]))

  def _exact(self, modality: str, source_sha256: str | None, content_sha256: str | None) -> dict[str, Match]:
    found: dict[str, Match] = {}
    for work_id in self.by_source.get(source_sha256 or "", []):
      found[work_id] = self._match(work_id, "exact-file", 1.0, {})
    for work_id in self.by_content.get((modality, content_sha256 or ""), []):
      if work_id not in found:
        found[work_id] = self._match(work_id, "exact-content", 1.0, {})
    return found

  @staticmethod
  def _scores(table: Mapping[str, Any], name: str, signature: np.ndarray) -> dict[str, float]:
    """Estimated Jaccard of ``signature`` with every row of ``table[name]`` (one numpy comparison)."""
    if not table["ids"]:
      return {}
    similarity = (table[name] == signature[None, :]).mean(axis=1)
    return dict(zip(table["ids"], similarity.tolist(), strict=True))

  def classify(self, comparison: Comparison, query: Sequence[VoiceSketch],
               record: Sequence[VoiceSketch]) -> str | None:
    """The music tier-3 level of a comparison (``near-copy``, ``partial-copy``, ``same-tune``) or None.

    A near-copy has both coverages >= ``copy_threshold``, the smaller at least 3/4 of the larger, and voices
    left unmatched on neither side or on both (an edited voice), or (two pieces of as many voices, at least
    :data:`~govjax.documentation.melodic_alignment.MIN_SETTING_VOICES`) a setting score >=
    ``setting_threshold`` (:meth:`copy_axis`); a partial copy has one coverage >=
    ``partial_threshold`` over at least two voices (or one inner voice alone, whose rhythm classes then agree
    on :data:`MIN_SINGLE_VOICE_RHYTHM` of the matched intervals: a lone line matched by its intervals alone is
    weak evidence, e.g. a folk tune found in a chorale's tenor by chance) and :data:`MIN_PARTIAL_INTERVALS`
    intervals, and at most :data:`MAX_REPEATED_SHARE` of its matched intervals repeated notes; same tune: the
    record's highest voice matched over >= ``melody_threshold`` (by a voice of the query other than its highest,
    with at most :data:`MAX_REPEATED_SHARE` repeated notes among the matched intervals). Rhythm enters the
    decision only in that one-voice case; everywhere else the intervals decide (rhythm agreement is reported).
    Between a one-voice query and a one-voice record, no answer below ``one_voice_threshold`` of the tune
    score (for them the tune score is the near-copy coverage: matched / the longer line).

    Args:
      comparison: :func:`~govjax.documentation.melodic_alignment.compare` of the query and the record.
      query, record: the voice sketches compared.
    """
    if len(query) == 1 and len(record) == 1 and comparison.melody < self.one_voice_threshold:
      return None
    if self.copy_axis(comparison, query, record) is not None:
      return "near-copy"
    pairs = comparison.pairs
    matched = sum(p.matched for p in pairs)
    high = max(comparison.query_coverage, comparison.record_coverage)
    inner_voice = (len(pairs) == 1 and len(query) == 1 and pairs[0].record_voice != 0
                   and pairs[0].rhythm_agreement >= MIN_SINGLE_VOICE_RHYTHM)
    repeated = sum(p.repeated * p.matched for p in pairs) / max(1, matched)
    if ((len(pairs) >= 2 or inner_voice) and matched >= MIN_PARTIAL_INTERVALS and high >= self.partial_threshold
        and repeated <= MAX_REPEATED_SHARE):
      return "partial-copy"
    lower_voice = len(query) > 1 and comparison.melody_voice not in (None, 0)
    if comparison.melody >= self.melody_threshold and not (
        lower_voice and comparison.melody_repeated > MAX_REPEATED_SHARE):
      return "same-tune"
    return None

  def copy_axis(self, comparison: Comparison, query: Sequence[VoiceSketch],
                record: Sequence[VoiceSketch]) -> str | None:
    """Which near-copy rule a comparison meets: ``coverage``, ``setting`` or None (see :meth:`classify`).

    ``coverage``: both coverages >= ``copy_threshold`` over at least two voice pairs (or the one voice of a
    one-voice piece), the smaller at least 3/4 of the larger, and voices of some length left unmatched on
    neither side or on both. ``setting``: otherwise, two pieces of as many voices (at least
    :data:`~govjax.documentation.melodic_alignment.MIN_SETTING_VOICES`) whose voices compared rank by rank
    match on average >= ``setting_threshold`` of the longer voice (``comparison.setting``; computed by
    :func:`~govjax.documentation.melodic_alignment.compare` only for such pieces).

    Args:
      comparison: :func:`~govjax.documentation.melodic_alignment.compare` of the query and the record.
      query, record: the voice sketches compared.

    Returns:
      ``coverage``, ``setting`` or None.
    """
    pairs = comparison.pairs
    low = min(comparison.query_coverage, comparison.record_coverage)
    high = max(comparison.query_coverage, comparison.record_coverage)
    extra_query = _unmatched(query, {p.query_voice for p in pairs})
    extra_record = _unmatched(record, {p.record_voice for p in pairs})
    if (len(pairs) >= min(2, len(query), len(record)) and low >= self.copy_threshold and low >= 0.75 * high
        and extra_query == extra_record):
      return "coverage"
    if (len(query) == len(record) >= MIN_SETTING_VOICES and comparison.setting_voices
        and comparison.setting >= self.setting_threshold):
      return "setting"
    return None

  def search_music(self, fingerprint: MusicFingerprint, *, source_sha256: str | None = None,
                   exhaustive: bool = False) -> tuple[list[Match], list[Match]]:
    """``(matches, same_tune)`` for a music fingerprint (see the module docstring).

    Args:
      fingerprint: the query's fingerprint (its voice sketches; MinHash signatures are not used).
      source_sha256: sha256 of the query file bytes, for tier 2a.
      exhaustive: align every record instead of the gram index's candidates.
    """
    found = self._exact("music", source_sha256, fingerprint.content_sha256)
    sketches = list(fingerprint.voices)
    rows = range(len(self._music_ids)) if exhaustive and sketches else self._candidate_rows(sketches)
    self._align_rows(rows, sketches, found)
    return self._split(found)

  def record_candidates(self, work_id: str, *, exhaustive: bool = False) -> set[str]:
    """Work ids that :meth:`related_records` aligns with a documented record's voices."""
    row = self._music_rows.get(work_id)
    if row is None:
      raise KeyError(f"record {work_id!r}: no music fingerprint (field 'tier3.voices') in the manifest")
    rows = range(len(self._music_ids)) if exhaustive else self._candidate_rows(self._sketches[row])
    return {self._music_ids[r] for r in rows if r != row}

  def related_records(self, work_id: str, *, exhaustive: bool = False) -> list[Match]:
    """Tier-3 music answers for a documented record's own voices queried against the other records.

    The same decision as a lookup (:meth:`classify`), so the manifest's duplicate report and the lookup agree
    (:func:`govjax.documentation.duplicates.find_duplicates`). Exact tiers are not tried here.

    Args:
      work_id: a music record of the manifest with tier-3 voices.
      exhaustive: align every other record instead of the gram index's candidates.

    Returns:
      ``near-copy``, ``partial-copy`` and ``same-tune`` matches, strongest first (the record itself excluded).

    Raises:
      KeyError: ``work_id`` is not a fingerprinted music record.
    """
    row = self._music_rows.get(work_id)
    if row is None:
      raise KeyError(f"record {work_id!r}: no music fingerprint (field 'tier3.voices') in the manifest")
    sketches = self._sketches[row]
    rows = range(len(self._music_ids)) if exhaustive else self._candidate_rows(sketches)
    found: dict[str, Match] = {}
    self._align_rows((r for r in rows if r != row), sketches, found)
    matches, same = self._split(found)
    return matches + same

  def _align_rows(self, rows: Iterable[int], sketches: Sequence[VoiceSketch], found: dict[str, Match]) -> None:
    """Aligns ``sketches`` with the records of ``rows`` not yet in ``found`` and adds their tier-3 answers."""
    for row in rows:
      work_id = self._music_ids[row]
      if work_id in found:
        continue
      record = self._sketches[row]
      comparison = compare(sketches, record, min_melody=self.melody_threshold, min_setting=self.setting_threshold)
      level = self.classify(comparison, sketches, record)
      if level is None:
        continue
      scores = comparison.to_json()
      if level == "near-copy":
        scores["copy_axis"] = self.copy_axis(comparison, sketches, record)
        score = (min(comparison.query_coverage, comparison.record_coverage) if scores["copy_axis"] == "coverage"
                 else comparison.setting)
      elif level == "partial-copy":
        score = max(comparison.query_coverage, comparison.record_coverage)
        scores["partial_kind"] = ("part of the work" if comparison.query_coverage >= self.partial_threshold
                                  else "the work within a larger piece")
      else:
        score = comparison.melody
      found[work_id] = self._match(work_id, level, score, scores, "alignment")

  def search_text(self, fingerprint: text_fingerprint.TextFingerprint, *, source_sha256: str | None = None,
                  exhaustive: bool = False) -> tuple[list[Match], list[Match]]:
    """``(matches, [])`` for a text fingerprint (every record scored; ``exhaustive`` is accepted for symmetry)."""
    found = self._exact("text", source_sha256, fingerprint.content_sha256)
    if fingerprint.size:
      table = self._text
      scores = self._scores(table, "signature", fingerprint.signature)
      for work_id, jaccard in scores.items():
        size = int(table["size"][table["position"][work_id]])
        if work_id not in found and size and jaccard >= self.near_copy_threshold:
          found[work_id] = self._match(work_id, "near-copy", jaccard, {
              "jaccard": jaccard,
              "containment": music_fingerprint.estimate_containment(jaccard, fingerprint.size, size)})
    return self._split(found)

  def search_image(self, fingerprint: image_fingerprint.ImageFingerprint, *,
                   source_sha256: str | None = None) -> tuple[list[Match], list[Match]]:
    """``(matches, [])`` for an image fingerprint (exhaustive Hamming search)."""
    found = self._exact("image", source_sha256, fingerprint.content_sha256)
    phash = image_fingerprint.hamming_many(fingerprint.phash, self._phash)
    dhash = image_fingerprint.hamming_many(fingerprint.dhash, self._dhash)
    for i, work_id in enumerate(self._image_ids):
      if work_id not in found and phash[i] <= self.max_hamming and dhash[i] <= self.max_hamming:
        score = 1.0 - max(phash[i], dhash[i]) / image_fingerprint.HASH_BITS
        found[work_id] = self._match(work_id, "near-copy", score, {"phash_hamming": int(phash[i]),
                                                                   "dhash_hamming": int(dhash[i])})
    return self._split(found)

  @staticmethod
  def _split(found: Mapping[str, Match]) -> tuple[list[Match], list[Match]]:
    ordered = sorted(found.values(), key=lambda m: (_LEVEL_RANK[m.level], -m.score, m.work_id))
    return [m for m in ordered if m.level != "same-tune"], [m for m in ordered if m.level == "same-tune"]


# --------------------------------------------------------------------------------------------- queries


def query_modality(path: str | os.PathLike) -> str:
  """``music`` / ``image`` / ``text`` from the file suffix.

  Raises:
    QueryError: an unknown suffix.
  """
  suffix = pathlib.Path(path).suffix.lower()
  if suffix in music_fingerprint.MUSIC_SUFFIXES:
    return "music"
  if suffix in image_fingerprint.IMAGE_SUFFIXES:
    return "image"
  if suffix in text_fingerprint.TEXT_SUFFIXES:
    return "text"
  raise QueryError(f"{path}: unknown file type {suffix!r}; music: {music_fingerprint.MUSIC_SUFFIXES}, "
                     f"images: {image_fingerprint.IMAGE_SUFFIXES}, text: {text_fingerprint.TEXT_SUFFIXES}")


def check_query_size(path: str | os.PathLike, *, max_notes: int = MAX_QUERY_NOTES,
                     max_uncounted_bytes: int = MAX_UNCOUNTED_QUERY_BYTES) -> int | None:
  """Refuses a music query longer than the lookup handles in seconds, before music21 parses it.

  Args:
    path: the query file.
    max_notes: the most notes a query may hold (:data:`MAX_QUERY_NOTES`).
    max_uncounted_bytes: the largest file of a format whose notes cannot be counted before parsing.

  Returns:
    The notes counted (None: a format that cannot be counted, within the size limit).

  Raises:
    QueryError: naming the file, its notes (or bytes) and the limit.
  """
  path = pathlib.Path(path)
  count = music_notes.count_notes_in_file(path)
  if count is not None and count > max_notes:
    raise QueryError(f"{path}: {count:,} notes; a lookup query may hold at most {max_notes:,} "
                     "(MAX_QUERY_NOTES): look up an excerpt of the work instead")
  size = path.stat().st_size
  if count is None and size > max_uncounted_bytes:
    raise QueryError(f"{path}: {size:,} bytes; a {path.suffix} query may have at most {max_uncounted_bytes:,} "
                     "bytes (MAX_UNCOUNTED_QUERY_BYTES; MusicXML and MIDI queries are limited by notes "
                     f"instead, at most {max_notes:,}): look up an excerpt of the work instead")
  return count


def attach_run_outputs(matches: Iterable[Match], outputs: RunOutputs) -> None:
  """Fills ``audit`` / ``provenance_appearances`` of matches from a run's outputs (in place)."""
  for match in matches:
    match.audit = outputs.audit_row(match.work_id)
    match.provenance_appearances = outputs.appearance_count(match.work_id)


def lookup_fingerprint(index: ManifestIndex, modality: str, fingerprint: Any, *,
                       source_sha256: str | None = None, workdir: str | os.PathLike | RunOutputs | None = None,
                       exhaustive: bool = False,
                       query_info: Mapping[str, Any] | None = None) -> LookupResult:
  """Looks up an already computed fingerprint (e.g. of a generated output) in ``index``.

  Args:
    index: the manifest index.
    modality: ``music``, ``text`` or ``image``.
    fingerprint: a ``MusicFingerprint`` / ``TextFingerprint`` / ``ImageFingerprint`` computed with the
      manifest's fingerprint parameters.
    source_sha256: sha256 of the query file's bytes (tier 2a), if any.
    workdir: a run directory (or its loaded :class:`RunOutputs`) for audit and provenance information.
    exhaustive: align (music) or score (text) every record instead of the candidates.
    query_info: extra fields for ``result.query`` (e.g. the path).

  Returns:
    :class:`LookupResult`.
  """
  if modality == "music":
    matches, same = index.search_music(fingerprint, source_sha256=source_sha256, exhaustive=exhaustive)
    info = {"content_sha256": fingerprint.content_sha256, "num_notes": fingerprint.num_notes,
            "num_voices": fingerprint.num_voices, "voice_notes": [v.num_notes for v in fingerprint.voices]}
  elif modality == "text":
    matches, same = index.search_text(fingerprint, source_sha256=source_sha256, exhaustive=exhaustive)
    info = {"content_sha256": fingerprint.content_sha256, "num_words": fingerprint.num_words}
  elif modality == "image":
    matches, same = index.search_image(fingerprint, source_sha256=source_sha256)
    info = {"content_sha256": fingerprint.content_sha256, "phash": fingerprint.phash,
            "dhash": fingerprint.dhash}
  else:
    raise QueryError(f"unknown modality {modality!r}")
  outputs = workdir if isinstance(workdir, RunOutputs) else load_run_outputs(workdir)
  attach_run_outputs(matches + same, outputs)
  model = {**outputs.describe(), "num_lineage_files": outputs.num_lineage_files}
  query = {"modality": modality, "sha256": source_sha256, **info, **dict(query_info or {})}
  return LookupResult(query, bool(matches), matches, same, model)


def lookup_file(path: str | os.PathLike, index: ManifestIndex | Manifest | str | os.PathLike, *,
                workdir: str | os.PathLike | RunOutputs | None = None, exhaustive: bool = False) -> LookupResult:
  """Looks up a file in a manifest.

  Args:
    path: the query: a music file (MusicXML, MIDI, ABC, Humdrum, ...), an image or a text file.
    index: a :class:`ManifestIndex`, a loaded manifest, or a manifest path.
    workdir: a training run directory with audit / provenance outputs (optional).
    exhaustive: align (music) or score (text) every record instead of the candidates.

  Returns:
    :class:`LookupResult`.

  Raises:
    QueryError: unknown file type, a file that cannot be parsed, or a music query of more than
      :data:`MAX_QUERY_NOTES` notes (see :func:`check_query_size`).
  """
  if not isinstance(index, ManifestIndex):
    index = ManifestIndex(index if isinstance(index, Manifest) else load_manifest(index))
  path = pathlib.Path(path)
  if not path.is_file():
    raise QueryError(f"{path}: no such file")
  modality = query_modality(path)
  try:
    if modality == "music":
      check_query_size(path)
      note_list = music_notes.notes_from_file(path)
      if not note_list.notes:
        raise QueryError(f"{path}: no pitched notes found")
      if len(note_list.notes) > MAX_QUERY_NOTES:
        raise QueryError(f"{path}: {len(note_list.notes):,} notes; a lookup query may hold at most "
                         f"{MAX_QUERY_NOTES:,} (MAX_QUERY_NOTES): look up an excerpt of the work instead")
      fingerprint = music_fingerprint.fingerprint_notes(note_list, index.manifest.music_config, minhash=False)
    elif modality == "text":
      fingerprint = text_fingerprint.fingerprint_text_file(path, index.manifest.text_config)
    else:
      fingerprint = image_fingerprint.fingerprint_image_file(path)
  except music_fingerprint.MusicParseError as error:
    raise QueryError(str(error)) from error
  return lookup_fingerprint(index, modality, fingerprint, source_sha256=sha256_file(path), workdir=workdir,
                            exhaustive=exhaustive, query_info={"path": str(path)})

