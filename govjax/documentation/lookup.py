"""Rights-holder lookup: is this file, or a near-copy of it, in the documented training set?

Given a query file (MusicXML / MIDI / ABC / Humdrum via music21, an image, or a text) and a manifest
(:mod:`govjax.documentation.manifest`), the lookup tries, in order of strength:

- tier **2a** ``exact-file``: sha256 of the query bytes equals a record's source sha256;
- tier **2b** ``exact-content``: the canonical content hash (music: transposition-, tempo- and
  encoding-invariant; text: normalised text; image: decoded pixels) equals a record's;
- tier **3** ``near-copy``: fingerprint candidates from a datasketch ``MinHashLSH`` over the MinHash signatures
  (:mod:`govjax.documentation.lsh`), re-ranked by estimated Jaccard similarity; a match needs ``full`` Jaccard
  >= ``near_copy_threshold`` (images: both perceptual hashes within ``max_hamming`` bits).

Music records whose highest voice matches (``melody`` Jaccard >= ``melody_threshold``) without a near-copy
match are reported separately as ``same-melody`` (e.g. another harmonisation of the same chorale tune); they
do not make ``found`` true. Every match carries the record's tier-1 rights and treatment (excluded with
reason / depth d / region) and, when a run directory is given, the trained model's audit row
(``<workdir>/audit/per_work.jsonl``) and how many lineage files of generated outputs
(``<workdir>/provenance/lineage/*.json``) list it (:mod:`govjax.documentation.run_outputs`), or
"not available". Each match names the tier that matched as ``matched_by``: ``exact`` (file bytes), ``content``
(canonical content) or ``fingerprint``.

A music query holds at most :data:`MAX_QUERY_NOTES` notes (a chorale has about 250; parsing and fingerprinting
that many takes a few seconds): MusicXML and MIDI files are counted before music21 parses them, other formats
(which cannot be counted without parsing) are limited to :data:`MAX_UNCOUNTED_QUERY_BYTES`. A longer query is
rejected with a :class:`QueryError` naming the limit; look up an excerpt instead (tier 3 reports containment).

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
from datasketch import MinHashLSH

from govjax.core.errors import UserError
from govjax.documentation import image_fingerprint, music_fingerprint, music_notes, text_fingerprint
from govjax.documentation.lsh import false_positive_bound, query, signature_index
from govjax.documentation.manifest import Manifest, has_fingerprint, load_manifest, sha256_file
from govjax.documentation.music_fingerprint import MusicFingerprint, decode_signature
from govjax.documentation.run_outputs import NOT_AVAILABLE, RunOutputs, load_run_outputs

__all__ = ["MAX_QUERY_NOTES", "MAX_UNCOUNTED_QUERY_BYTES", "LookupResult", "ManifestIndex", "Match",
           "NOT_AVAILABLE", "QueryError", "check_query_size", "false_positive_bound", "lookup_file",
           "lookup_fingerprint", "query_modality"]

TIERS = {"exact-file": "2a", "exact-content": "2b", "near-copy": "3", "same-melody": "3"}
MATCHED_BY = {"exact-file": "exact", "exact-content": "content", "near-copy": "fingerprint",
              "same-melody": "fingerprint"}
_LEVEL_RANK = {"exact-file": 0, "exact-content": 1, "near-copy": 2, "same-melody": 3}
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
    matched_by: ``exact`` (tier 2a), ``content`` (tier 2b) or ``fingerprint`` (tier 3).
    level: ``exact-file``, ``exact-content``, ``near-copy`` or ``same-melody``.
    score: 1.0 for exact tiers; else the estimated Jaccard (``full`` for near-copy, ``melody`` for
      same-melody; ``1 - hamming/64`` for images).
    scores: all similarity estimates computed (full / melody Jaccard, containment, Hamming distances).
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


@dataclasses.dataclass
class LookupResult:
  """The answer to one query.

  Attributes:
    query: what was looked up (path, modality, sha256, content hash, fingerprint sizes).
    found: a match at tier 2a, 2b or near-copy level exists.
    matches: those matches, strongest first.
    same_melody: same-melody-only matches (music), strongest first.
    model: which trained-model inputs were available (``audit``, ``provenance``).
  """

  query: dict[str, Any]
  found: bool
  matches: list[Match]
  same_melody: list[Match]
  model: dict[str, Any]

  def to_json(self) -> dict[str, Any]:
    return {"query": self.query, "found": self.found, "matches": [m.to_json() for m in self.matches],
            "same_melody": [m.to_json() for m in self.same_melody], "model": self.model}

  def format(self) -> str:
    """A human-readable report."""
    lines = [f"query: {self.query.get('path', '<in memory>')} ({self.query['modality']})"]
    if not self.found:
      lines.append("NOT FOUND: no copy or near-copy of this work is documented in the training set.")
    for match in self.matches + self.same_melody:
      rec = match.record
      head = "FOUND" if match.level != "same-melody" else "RELATED (same melody, different harmonisation)"
      lines.append(f"{head}: {match.work_id} - {rec.get('title') or ''} ({rec.get('composer') or 'unknown'})")
      lines.append(f"  matched by {match.matched_by} (tier {match.tier}, {match.level}), score {match.score:.3f}")
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


class ManifestIndex:
  """Lookup structures over a manifest: hash tables (tier 2) and LSH / Hamming search (tier 3).

  Args:
    manifest: a loaded :class:`~govjax.documentation.manifest.Manifest`.
    near_copy_threshold: minimum estimated ``full`` Jaccard for a near-copy (music, text).
    melody_threshold: minimum estimated ``melody`` Jaccard for a same-melody report (music).
    max_hamming: maximum Hamming distance (of 64 bits) of both perceptual hashes for an image match.
  """

  def __init__(self, manifest: Manifest, *, near_copy_threshold: float = 0.45, melody_threshold: float = 0.5,
               max_hamming: int = 10):
    self.manifest = manifest
    self.near_copy_threshold = near_copy_threshold
    self.melody_threshold = melody_threshold
    self.max_hamming = max_hamming
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
    self._music = self._signature_table("music", ("full", "melody", "full_size", "melody_size"))
    self._text = self._signature_table("text", ("signature", "size"))
    images = [r for r in manifest.records if r["modality"] == "image" and has_fingerprint(r)]
    self._image_ids = [r["work_id"] for r in images]
    self._phash = [r["tier3"]["phash"] for r in images]
    self._dhash = [r["tier3"]["dhash"] for r in images]
    num_perm = manifest.music_config.num_perm
    self._lsh_full = self._build_lsh(self._music, "full", num_perm, near_copy_threshold)
    self._lsh_melody = self._build_lsh(self._music, "melody", num_perm, melody_threshold)
    self._lsh_text = self._build_lsh(self._text, "signature", manifest.text_config.num_perm,
                                     near_copy_threshold)

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

  @staticmethod
  def _build_lsh(table: Mapping[str, Any], name: str, num_perm: int, threshold: float) -> MinHashLSH:
    sizes = table["full_size" if name == "full" else "melody_size" if name == "melody" else "size"]
    signatures = {work_id: table[name][i] for i, work_id in enumerate(table["ids"]) if sizes[i] > 0}
    return signature_index(signatures, threshold=threshold, num_perm=num_perm)

  def __len__(self) -> int:
    return len(self.records)

  def music_candidates(self, fingerprint: MusicFingerprint) -> set[str]:
    """Work ids the LSH index proposes for a music fingerprint (before re-ranking)."""
    if not fingerprint.full_size:
      return set()
    return query(self._lsh_full, fingerprint.full) | query(self._lsh_melody, fingerprint.melody)

  # -- matching --------------------------------------------------------------------------------------

  def _match(self, work_id: str, level: str, score: float, scores: dict[str, Any]) -> Match:
    record = self.records[work_id]
    return Match(work_id, TIERS[level], MATCHED_BY[level], level, float(score), scores, _record_summary(record),
                 dict(record["tier1"]["treatment"]))

  def _exact(self, modality: str, source_sha256: str | None, content_sha256: str | None) -> dict[str, Match]:
    found: dict[str, Match] = {}
    for work_id in self.by_source.get(source_sha256 or "", []):
      found[work_id] = self._match(work_id, "exact-file", 1.0, {})
    for work_id in self.by_content.get((modality, content_sha256 or ""), []):
      if work_id not in found:
        found[work_id] = self._match(work_id, "exact-content", 1.0, {})
    return found

  def _scores(self, table: Mapping[str, Any], name: str, signature: np.ndarray, candidates: Iterable[str],
              exhaustive: bool) -> dict[str, float]:
    ids = table["ids"] if exhaustive else sorted(candidates)
    if not ids:
      return {}
    rows = np.array([table["position"][w] for w in ids], np.int64)
    similarity = (table[name][rows] == signature[None, :]).mean(axis=1)
    return dict(zip(ids, similarity.tolist(), strict=True))

  def search_music(self, fingerprint: MusicFingerprint, *, source_sha256: str | None = None,
                   exhaustive: bool = False) -> tuple[list[Match], list[Match]]:
    """``(matches, same_melody)`` for a music fingerprint (see the module docstring).

    Args:
      fingerprint: the query's fingerprint (computed with ``manifest.music_config``).
      source_sha256: sha256 of the query file bytes, for tier 2a.
      exhaustive: score every record instead of the LSH candidates (exact recall of the thresholds).
    """
    found = self._exact("music", source_sha256, fingerprint.content_sha256)
    table = self._music
    full = self._scores(table, "full", fingerprint.full, query(self._lsh_full, fingerprint.full)
                        if fingerprint.full_size else (), exhaustive and fingerprint.full_size > 0)
    melody = self._scores(table, "melody", fingerprint.melody, query(self._lsh_melody, fingerprint.melody)
                          if fingerprint.melody_size else (), exhaustive and fingerprint.melody_size > 0)
    for work_id in set(full) | set(melody):
      if work_id in found:
        continue
      i = table["position"][work_id]
      if work_id not in full:
        full[work_id] = float(np.mean(table["full"][i] == fingerprint.full))
      if work_id not in melody:
        melody[work_id] = float(np.mean(table["melody"][i] == fingerprint.melody))
      valid_full = fingerprint.full_size > 0 and table["full_size"][i] > 0
      valid_melody = fingerprint.melody_size > 0 and table["melody_size"][i] > 0
      scores = {"full_jaccard": full[work_id] if valid_full else 0.0,
                "melody_jaccard": melody[work_id] if valid_melody else 0.0,
                "containment": music_fingerprint.estimate_containment(
                    full[work_id] if valid_full else 0.0, fingerprint.full_size, int(table["full_size"][i]))}
      if scores["full_jaccard"] >= self.near_copy_threshold:
        found[work_id] = self._match(work_id, "near-copy", scores["full_jaccard"], scores)
      elif scores["melody_jaccard"] >= self.melody_threshold:
        found[work_id] = self._match(work_id, "same-melody", scores["melody_jaccard"], scores)
    return self._split(found)

  def search_text(self, fingerprint: text_fingerprint.TextFingerprint, *, source_sha256: str | None = None,
                  exhaustive: bool = False) -> tuple[list[Match], list[Match]]:
    """``(matches, [])`` for a text fingerprint."""
    found = self._exact("text", source_sha256, fingerprint.content_sha256)
    if fingerprint.size:
      table = self._text
      scores = self._scores(table, "signature", fingerprint.signature,
                            query(self._lsh_text, fingerprint.signature), exhaustive)
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
    return [m for m in ordered if m.level != "same-melody"], [m for m in ordered if m.level == "same-melody"]


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
    exhaustive: score every record instead of the LSH candidates.
    query_info: extra fields for ``result.query`` (e.g. the path).

  Returns:
    :class:`LookupResult`.
  """
  if modality == "music":
    matches, same = index.search_music(fingerprint, source_sha256=source_sha256, exhaustive=exhaustive)
    info = {"content_sha256": fingerprint.content_sha256, "num_notes": fingerprint.num_notes,
            "num_voices": fingerprint.num_voices, "full_size": fingerprint.full_size,
            "melody_size": fingerprint.melody_size}
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
    exhaustive: score every record instead of the LSH candidates.

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
      fingerprint = music_fingerprint.fingerprint_notes(note_list, index.manifest.music_config)
    elif modality == "text":
      fingerprint = text_fingerprint.fingerprint_text_file(path, index.manifest.text_config)
    else:
      fingerprint = image_fingerprint.fingerprint_image_file(path)
  except music_fingerprint.MusicParseError as error:
    raise QueryError(str(error)) from error
  return lookup_fingerprint(index, modality, fingerprint, source_sha256=sha256_file(path), workdir=workdir,
                            exhaustive=exhaustive, query_info={"path": str(path)})

