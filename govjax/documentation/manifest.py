"""The training-set manifest on disk: ``croissant.json`` + ``records.jsonl`` (+ ``duplicates.json``).

A manifest directory holds the Croissant 1.1 document (:mod:`govjax.documentation.croissant`), the per-work
records with tiers 1-3 (:mod:`govjax.documentation.tiers`) and the near-duplicate report
(:mod:`govjax.documentation.duplicates`). :func:`write_manifest` validates the Croissant document before
writing it; :func:`load_manifest` validates it again and checks the records file against its sha256. Lookup
(:mod:`govjax.documentation.lookup`) needs only these files, never the training data. Builders for a dataset or
a training run are in :mod:`govjax.documentation.dataset_manifest` and :mod:`govjax.documentation.run_manifest`.

This module re-exports the record and Croissant functions, so ``from govjax.documentation.manifest import
build_records, build_croissant, validate_croissant`` works.

Example:
  >>> import tempfile
  >>> recs = build_records([{"work_id": "t/1", "modality": "text", "text": "a b c d e f g"}])
  >>> out = tempfile.mkdtemp()
  >>> paths = write_manifest(out, recs, name="demo", description="d", url="urn:govjax:demo")
  >>> load_manifest(out).records == recs
  True
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from govjax.documentation.croissant import (
    CONFORMS_TO,
    CONTEXT,
    CROISSANT_FILENAME,
    DEFAULT_RAI,
    DUPLICATES_FILENAME,
    RECORDS_FILENAME,
    RECORDS_FORMAT,
    build_croissant,
    encoding_format,
    validate_croissant,
)
from govjax.documentation.music_fingerprint import FingerprintConfig
from govjax.documentation.text_fingerprint import TextFingerprintConfig
from govjax.documentation.tiers import (
    MODALITIES,
    TREATMENT_STATUSES,
    ManifestError,
    build_records,
    fingerprint_work,
    has_fingerprint,
    make_record,
    rights_entry,
    sha256_file,
    treatment_entry,
)

__all__ = [
    "CONFORMS_TO", "CONTEXT", "CROISSANT_FILENAME", "DEFAULT_RAI", "DUPLICATES_FILENAME", "MODALITIES",
    "RECORDS_FILENAME", "RECORDS_FORMAT", "TREATMENT_STATUSES", "FingerprintConfig", "Manifest",
    "ManifestError", "ManifestPaths", "TextFingerprintConfig", "build_croissant", "build_records",
    "encoding_format", "fingerprint_work", "has_fingerprint", "load_manifest", "make_record", "rights_entry",
    "sha256_file", "treatment_entry", "validate_croissant", "write_manifest",
]


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A loaded manifest.

  Attributes:
    doc: the Croissant JSON-LD document.
    records: the per-work records (dicts, see :mod:`govjax.documentation.tiers`), in file order.
    music_config: fingerprint parameters of the music records.
    text_config: fingerprint parameters of the text records.
    base_dir: the directory of ``croissant.json``.
  """

  doc: dict[str, Any]
  records: list[dict[str, Any]]
  music_config: FingerprintConfig
  text_config: TextFingerprintConfig
  base_dir: pathlib.Path

  def record(self, work_id: str) -> dict[str, Any]:
    for record in self.records:
      if record["work_id"] == work_id:
        return record
    raise KeyError(f"no record for work {work_id!r} in the manifest")


# --------------------------------------------------------------------------------------------- files


@dataclasses.dataclass(frozen=True)
class ManifestPaths:
  """Files written by :func:`write_manifest`."""

  croissant: pathlib.Path
  records: pathlib.Path
  duplicates: pathlib.Path | None

  def total_bytes(self) -> int:
    return sum(p.stat().st_size for p in (self.croissant, self.records, self.duplicates) if p is not None)


def write_manifest(out_dir: str | os.PathLike, records: Sequence[Mapping[str, Any]], *,
                   duplicates: Mapping[str, Any] | None = None, **croissant_kwargs: Any) -> ManifestPaths:
  """Writes ``records.jsonl``, optionally ``duplicates.json``, and a validated ``croissant.json``.

  Args:
    out_dir: output directory (created).
    records: the records (:func:`build_records`).
    duplicates: a JSON-able near-duplicate report (see :mod:`govjax.documentation.duplicates`).
    **croissant_kwargs: passed to :func:`build_croissant` (``name``, ``description``, ``url``, ...).

  Returns:
    :class:`ManifestPaths`.

  Raises:
    ManifestError: the Croissant document fails :func:`validate_croissant` (all problems listed).
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  records_path = out / RECORDS_FILENAME
  with open(records_path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
  extra = list(croissant_kwargs.pop("extra_files", ()))
  duplicates_path = None
  if duplicates is not None:
    duplicates_path = out / DUPLICATES_FILENAME
    duplicates_path.write_text(json.dumps(duplicates, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    extra.append({"@type": "cr:FileObject", "@id": DUPLICATES_FILENAME, "name": DUPLICATES_FILENAME,
                  "description": "Near-duplicate report inside the documented set (same melody / near-copy).",
                  "contentUrl": DUPLICATES_FILENAME, "encodingFormat": "application/json",
                  "sha256": sha256_file(duplicates_path)})
  doc = build_croissant(records, records_sha256=sha256_file(records_path),
                        records_size=records_path.stat().st_size, extra_files=extra, **croissant_kwargs)
  problems = validate_croissant(doc)
  if problems:
    raise ManifestError("the Croissant document is invalid:\n  " + "\n  ".join(problems))
  croissant_path = out / CROISSANT_FILENAME
  croissant_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
  return ManifestPaths(croissant_path, records_path, duplicates_path)


def load_manifest(path: str | os.PathLike, *, verify: bool = True) -> Manifest:
  """Loads a manifest from its directory or its ``croissant.json``.

  Args:
    path: the manifest directory or Croissant file.
    verify: validate the Croissant document and check the records file's sha256.

  Returns:
    :class:`Manifest`.

  Raises:
    ManifestError: missing files, invalid Croissant, checksum mismatch, or a malformed record line.
  """
  path = pathlib.Path(path)
  croissant_path = path / CROISSANT_FILENAME if path.is_dir() else path
  if not croissant_path.is_file():
    raise ManifestError(f"no Croissant manifest at {croissant_path}")
  try:
    doc = json.loads(croissant_path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as error:
    raise ManifestError(f"{croissant_path}: not valid JSON ({error})") from error
  if verify:
    problems = validate_croissant(doc)
    if problems:
      raise ManifestError(f"{croissant_path}: invalid Croissant:\n  " + "\n  ".join(problems))
  entry = next((d for d in doc.get("distribution", []) if d.get("@id") == RECORDS_FILENAME), None)
  if entry is None:
    raise ManifestError(f"{croissant_path}: no '{RECORDS_FILENAME}' FileObject in 'distribution'")
  records_path = croissant_path.parent / entry["contentUrl"]
  if not records_path.is_file():
    raise ManifestError(f"{croissant_path}: records file {records_path} does not exist")
  if verify and sha256_file(records_path) != entry.get("sha256"):
    raise ManifestError(f"{records_path}: sha256 does not match the Croissant FileObject (file changed?)")
  records = []
  with open(records_path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise ManifestError(f"{records_path}:{line_number}: not valid JSON ({error})") from error
      for key in ("work_id", "modality", "tier1", "tier2", "tier3"):
        if key not in record:
          raise ManifestError(f"{records_path}:{line_number}: record {record.get('work_id')!r} lacks field "
                              f"{key!r}")
      records.append(record)
  configs = doc.get("govjax:fingerprints", {})
  return Manifest(doc, records, FingerprintConfig.from_dict(configs.get("music", {})),
                  TextFingerprintConfig.from_dict(configs.get("text", {})), croissant_path.parent)
