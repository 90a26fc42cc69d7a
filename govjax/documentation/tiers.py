"""Per-work manifest records: tier 1 (rights + treatment), tier 2 (sha256s) and tier 3 (fingerprints).

One record (a line of ``records.jsonl``) per work::

    {"work_id", "modality", "title", "composer", "collection", "source_path", "source_url", "split",
     "tier1": {"rights": <rights record or null>, "treatment": {"status": "included" | "excluded" |
               "not-trained" | "unknown", "depth", "num_groups", "region", "rule", "reason", "label"}},
     "tier2": {"source_sha256", "content_sha256"},
     "tier3": {<music: see below> | <text: signature> | <image: phash/dhash> | {"unavailable": reason}}}

Music tier 3 holds ``voices``, one sketch per voice, highest first (``{"i": intervals, "r": rhythm classes, "b":
bars}``, base64 of int8 / int8 / little-endian uint16; :class:`~govjax.documentation.melodic_alignment.
VoiceSketch`), ``num_notes``, ``num_voices``, and the ``melody`` / ``full`` MinHash signatures (base64 uint32)
with their shingle-set sizes. The lookup and the duplicate report decide on the voices alone: their pitch
intervals are aligned (near-copy, partial copy, same tune) and their bars name the matched passage; the rhythm
classes are stored and reported (``rhythm_agreement``) but do not enter the decision. The MinHash signatures are
kept as an overall similarity estimate for the record.

Every work with content at hand gets tier 3, whatever its treatment: an opted-out or excluded work is
fingerprinted too, so that a copy of it can be found. Note what the voices disclose: the interval sequence of a
voice is that voice's melody up to transposition (its rhythm up to the classes, and its bars), so a manifest
lets anyone rebuild the tunes it documents, opted-out works included (see the README's lookup section).

Example:
  >>> recs = build_records([{"work_id": "t/1", "modality": "text", "text": "a b c d e f g"}],
  ...                      treatments={"t/1": {"include": False, "reason": "opted out"}})
  >>> recs[0]["tier1"]["treatment"]["label"], len(recs[0]["tier2"]["content_sha256"])
  ('excluded (opted out)', 64)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from govjax.core.errors import UserError
from govjax.data.corpus import WorkSkipped, select_satb_parts
from govjax.documentation import image_fingerprint, music_fingerprint, text_fingerprint
from govjax.documentation.music_fingerprint import FingerprintConfig
from govjax.documentation.text_fingerprint import TextFingerprintConfig

MODALITIES = ("music", "text", "image")
TREATMENT_STATUSES = ("included", "excluded", "not-trained", "unknown")


class ManifestError(UserError, ValueError):
  """A manifest that cannot be built or loaded; the message names the work / file and the field."""



# ------------------------------------------------------------------------------------------------ tier 1


def _plain(value: Any) -> Any:
  if hasattr(value, "model_dump"):
    return value.model_dump(mode="json")
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return dataclasses.asdict(value)
  return dict(value)


def rights_entry(record: Any) -> dict[str, Any] | None:
  """Tier-1 rights: a rights record (pydantic ``RightsRecord``, dataclass or mapping) as a JSON-able dict.

  Derived facts of a ``RightsRecord`` (``opted_out``, ``opt_out_reasons``, ``licence_class``) are added.
  """
  if record is None:
    return None
  entry = _plain(record)
  for name in ("opted_out", "opt_out_reasons", "licence_class"):
    if name not in entry and hasattr(record, name):
      value = getattr(record, name)
      entry[name] = list(value) if isinstance(value, list | tuple) else value
  return entry


def treatment_entry(treatment: Any, *, num_groups: int | None = None) -> dict[str, Any]:
  """Tier-1 treatment, normalised.

  Accepts a ``PolicyDecisions.rows()`` row (``include``, ``depth``, ``region``, ``rule``, ``reason``), a
  policy ``Treatment`` / mapping (``action`` = exclude / depth / region), a mapping already in this form
  (``status``), or None (``status="unknown"``).

  Returns:
    ``{"status", "depth", "num_groups", "region", "rule", "reason", "label"}``.
  """
  if treatment is None:
    return {"status": "unknown", "depth": None, "num_groups": num_groups, "region": None, "rule": None,
            "reason": "no treatment recorded", "label": "unknown"}
  data = _plain(treatment)
  num_groups = data.get("num_groups", num_groups)
  if "status" in data:
    status = data["status"]
  elif "include" in data:
    status = "included" if data["include"] else "excluded"
  elif "action" in data:
    status = "excluded" if data["action"] == "exclude" else "included"
  else:
    raise ManifestError(f"treatment {data!r}: needs one of the fields 'status', 'include' or 'action'")
  if status not in TREATMENT_STATUSES:
    raise ManifestError(f"treatment {data!r}: field 'status' must be one of {TREATMENT_STATUSES}")
  depth = data.get("depth")
  if status == "excluded":
    depth = 0
  region = data.get("region")
  reason = str(data.get("reason") or "")
  if status == "excluded":
    label = "excluded" + (f" ({reason})" if reason else "")
  elif status == "included":
    label = f"depth {depth}" + (f"/{num_groups}" if num_groups else "") if depth is not None else "included"
    if region:
      label = f"region {region}, {label}"
  else:
    label = status + (f" ({reason})" if reason else "")
  return {"status": status, "depth": depth, "num_groups": num_groups, "region": region,
          "rule": data.get("rule"), "reason": reason, "label": label}


# -------------------------------------------------------------------------------------------- tiers 2-3


def _modality(work: Mapping[str, Any]) -> str:
  if "modality" in work:
    modality = work["modality"]
  elif "text" in work:
    modality = "text"
  elif any(k in work for k in ("notes", "score", "tokens")):
    modality = "music"
  else:
    suffix = pathlib.Path(str(work.get("path") or work.get("source_path") or "")).suffix.lower()
    if suffix in image_fingerprint.IMAGE_SUFFIXES:
      modality = "image"
    elif suffix in text_fingerprint.TEXT_SUFFIXES:
      modality = "text"
    else:
      modality = "music"
  if modality not in MODALITIES:
    raise ManifestError(f"work {work.get('work_id')!r}: field 'modality' must be one of {MODALITIES}")
  return modality


def sha256_file(path: str | os.PathLike) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def fingerprint_work(work: Mapping[str, Any], *, music_config: FingerprintConfig | None = None,
                     text_config: TextFingerprintConfig | None = None) -> dict[str, Any]:
  """Tiers 2 and 3 of one work.

  Args:
    work: mapping with ``work_id`` and one content source: ``notes`` (a ``NoteList``), ``score`` (music21),
      ``tokens`` (+ ``steps_per_quarter``), ``text``, or ``path`` (a music / image / text file). The source
      sha256 comes from ``sha256`` / ``source_sha256``, else from the bytes at ``path``. A work whose content
      is not at hand (e.g. an excluded work documented from its rights record only) gives ``unavailable``
      (the reason) instead: its tier 3 is ``{"unavailable": reason}`` and only tier 2a can match it.
    music_config: music fingerprint parameters.
    text_config: text fingerprint parameters.

  Returns:
    ``{"modality", "tier2": {...}, "tier3": {...}}``.

  Raises:
    ManifestError: no usable content, or content without notes / words.
  """
  music_config = music_config or FingerprintConfig()
  text_config = text_config or TextFingerprintConfig()
  work_id = work.get("work_id")
  modality = _modality(work)
  path = work.get("path")
  source_sha256 = work.get("source_sha256") or work.get("sha256")
  if source_sha256 is None and path is not None:
    source_sha256 = sha256_file(path)
  if work.get("unavailable"):
    return {"modality": modality, "tier2": {"source_sha256": source_sha256, "content_sha256": None},
            "tier3": {"unavailable": str(work["unavailable"])}}
  try:
    if modality == "music":
      if work.get("notes") is not None:
        notes = work["notes"]
      elif work.get("score") is not None:
        notes = music_fingerprint.notes_from_score(work["score"])
      elif work.get("tokens") is not None:
        notes = music_fingerprint.notes_from_tokens(work["tokens"],
                                                    steps_per_quarter=int(work.get("steps_per_quarter", 4)))
      elif path is not None and work.get("select_satb"):
        notes = music_fingerprint.notes_from_score(_select_satb(music_fingerprint.parse_music_file(path), work_id))
      elif path is not None:
        notes = music_fingerprint.notes_from_file(path)  # MIDI read from its note events
      else:
        raise ManifestError(f"work {work_id!r}: no music content (give 'notes', 'score', 'tokens' or 'path')")
      if not notes.notes:
        raise ManifestError(f"work {work_id!r}: no pitched notes to fingerprint")
      fingerprint = music_fingerprint.fingerprint_notes(notes, music_config).to_json()
      extra = {"skipped": dict(notes.skipped)} if notes.skipped else {}
    elif modality == "text":
      text = work["text"] if work.get("text") is not None else (
          text_fingerprint.read_text_file(path) if path is not None else None)
      if text is None:
        raise ManifestError(f"work {work_id!r}: no text content (give 'text' or 'path')")
      fingerprint, extra = text_fingerprint.fingerprint_text(text, text_config).to_json(), {}
    else:
      if path is None:
        raise ManifestError(f"work {work_id!r}: images need 'path'")
      fingerprint, extra = image_fingerprint.fingerprint_image_file(path).to_json(), {}
  except music_fingerprint.MusicParseError as error:
    raise ManifestError(f"work {work_id!r}: {error}") from error
  content_sha256 = fingerprint.pop("content_sha256")
  return {"modality": modality, "tier2": {"source_sha256": source_sha256, "content_sha256": content_sha256},
          "tier3": {**fingerprint, **extra}}


def _select_satb(score: Any, work_id: Any) -> Any:
  """The Soprano/Alto/Tenor/Bass parts as the dataset selects them (``govjax.data.corpus``)."""
  try:
    return select_satb_parts(score)[0]
  except WorkSkipped as error:
    raise ManifestError(f"work {work_id!r}: {error}") from error


def make_record(work: Mapping[str, Any], fingerprints: Mapping[str, Any], *, rights: Any = None,
                treatment: Any = None, num_groups: int | None = None) -> dict[str, Any]:
  """One ``records.jsonl`` entry from a work's metadata, its :func:`fingerprint_work` output and tier 1."""
  work_id = work.get("work_id")
  if not work_id or not isinstance(work_id, str):
    raise ManifestError(f"work {work!r}: field 'work_id' must be a non-empty string")
  return {
      "work_id": work_id,
      "modality": fingerprints["modality"],
      "title": str(work.get("title") or ""),
      "composer": str(work.get("composer") or ""),
      "collection": str(work.get("collection") or ""),
      "source_path": str(work.get("source_path") or ""),
      "source_url": str(work.get("source_url") or ""),
      "split": work.get("split"),
      "tier1": {"rights": rights_entry(rights),
                "treatment": treatment_entry(treatment, num_groups=num_groups)},
      "tier2": dict(fingerprints["tier2"]),
      "tier3": dict(fingerprints["tier3"]),
  }


def _fingerprint_job(work: Mapping[str, Any], music_config: dict, text_config: dict) -> dict[str, Any]:
  return fingerprint_work(work, music_config=FingerprintConfig.from_dict(music_config),
                          text_config=TextFingerprintConfig.from_dict(text_config))


def build_records(works: Iterable[Mapping[str, Any]], *, rights: Mapping[str, Any] | None = None,
                  treatments: Mapping[str, Any] | None = None, num_groups: int | None = None,
                  music_config: FingerprintConfig | None = None,
                  text_config: TextFingerprintConfig | None = None, num_workers: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
  """Records (tiers 1-3) of many works.

  Args:
    works: work mappings (see :func:`fingerprint_work`; plus title, composer, collection, source_path,
      source_url, split).
    rights: ``work_id -> rights record`` (missing works get ``rights: null``).
    treatments: ``work_id -> treatment`` (see :func:`treatment_entry`; missing works get status unknown).
    num_groups: the model's depth groups ``L`` (recorded with depths).
    music_config: music fingerprint parameters.
    text_config: text fingerprint parameters.
    num_workers: processes for parsing/fingerprinting (spawned; works must then be picklable).
    progress: called as ``progress(done, total)``.

  Returns:
    The records, in the order of ``works``.

  Raises:
    ManifestError: duplicate work ids, or a work that cannot be fingerprinted (all such works listed).
  """
  works = list(works)
  ids = [w.get("work_id") for w in works]
  duplicates = sorted({i for i in ids if ids.count(i) > 1})
  if duplicates:
    raise ManifestError(f"duplicate work ids: {duplicates[:10]}")
  rights, treatments = rights or {}, treatments or {}
  args = ((music_config or FingerprintConfig()).to_dict(), (text_config or TextFingerprintConfig()).to_dict())
  results: list[Any] = [None] * len(works)
  if num_workers > 1 and len(works) > 1:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
      futures = {pool.submit(_fingerprint_job, w, *args): i for i, w in enumerate(works)}
      for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
        try:
          results[futures[future]] = future.result()
        except ManifestError as error:
          results[futures[future]] = error
        if progress:
          progress(done, len(works))
  else:
    for i, work in enumerate(works):
      try:
        results[i] = _fingerprint_job(work, *args)
      except ManifestError as error:
        results[i] = error
      if progress:
        progress(i + 1, len(works))
  failures = [str(r) for r in results if isinstance(r, ManifestError)]
  if failures:
    raise ManifestError(f"{len(failures)} work(s) cannot be fingerprinted: " + "; ".join(failures[:10]))
  return [make_record(w, r, rights=rights.get(w["work_id"]), treatment=treatments.get(w["work_id"]),
                      num_groups=num_groups) for w, r in zip(works, results, strict=True)]


def has_fingerprint(record: Mapping[str, Any]) -> bool:
  """Whether a record carries tier-3 fingerprints (False for works documented without their content)."""
  return bool(record.get("tier3")) and "unavailable" not in record["tier3"]
