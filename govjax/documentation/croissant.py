"""Croissant 1.1 JSON-LD for a manifest: the document builder and a validator of the spec's required fields.

The document has the required dataset properties (``@context``, ``@type sc:Dataset``, ``conformsTo``
``http://mlcommons.org/croissant/1.1``, ``name``, ``description``, ``license``, ``url``, ``creator``,
``datePublished``), one ``cr:FileObject`` per source file (sha256, contentUrl, encodingFormat, PROV-O
``prov:wasAttributedTo``), one for ``records.jsonl`` (and ``duplicates.json`` when written), a ``works``
RecordSet whose fields extract from ``records.jsonl`` by JSONPath, dataset-level PROV-O
(``prov:wasDerivedFrom`` sources, ``prov:wasAttributedTo`` rights holders / creators, ``prov:wasGeneratedBy``),
Croissant-RAI fields and the fingerprint parameters (``govjax:fingerprints``) that lookups must reuse.

Example:
  >>> from govjax.documentation.tiers import build_records
  >>> recs = build_records([{"work_id": "t/1", "modality": "text", "text": "a b c d e f g"}])
  >>> doc = build_croissant(recs, name="demo", description="d", url="urn:govjax:demo",
  ...                       records_sha256="0" * 64, date_published="2025-01-01")
  >>> validate_croissant(doc)
  []
  >>> del doc["license"]; validate_croissant(doc)
  ["dataset: missing required property 'license'"]
"""

from __future__ import annotations

import datetime
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from govjax.documentation import image_fingerprint
from govjax.documentation.music_fingerprint import FingerprintConfig
from govjax.documentation.text_fingerprint import TextFingerprintConfig

CROISSANT_FILENAME = "croissant.json"
RECORDS_FILENAME = "records.jsonl"
DUPLICATES_FILENAME = "duplicates.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
RECORDS_FORMAT = "govjax-manifest-records-v1"

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "http://schema.org/",
    "sc": "http://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "govjax": "urn:govjax:vocab:",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "value": "cr:value",
}

DEFAULT_RAI: dict[str, str] = {
    "rai:dataCollection": "Works gathered from the listed sources; each source file is identified by its "
                          "sha256.",
    "rai:dataUseCases": "Training and evaluating generative models under per-work rights treatments; "
                        "rights holders can check whether and how a work was used (govjax lookup).",
    "rai:personalSensitiveInformation": "None known: creative works and their rights metadata only.",
    "rai:dataLimitations": "Fingerprints identify copies and near-copies; they cannot prove that a work was "
                           "NOT used in another form (e.g. an arrangement with different notes).",
}

_ENCODING_FORMATS = {
    ".mxl": "application/vnd.recordare.musicxml",
    ".musicxml": "application/vnd.recordare.musicxml+xml",
    ".xml": "application/vnd.recordare.musicxml+xml",
    ".mid": "audio/midi",
    ".midi": "audio/midi",
    ".abc": "text/vnd.abc",
    ".krn": "https://www.humdrum.org/rep/kern/",
    ".mei": "application/mei+xml",
    ".rntxt": "https://web.mit.edu/music21/doc/moduleReference/moduleRomanText.html",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".webp": "image/webp",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".jsonl": "application/jsonlines",
    ".json": "application/json",
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")



# ------------------------------------------------------------------------------------------- Croissant


def encoding_format(path: str) -> str:
  """MIME type (or format URL, as Croissant allows for unregistered formats) from a file suffix."""
  return _ENCODING_FORMATS.get(pathlib.PurePosixPath(path).suffix.lower(), "application/octet-stream")


def _licence_value(licence: str) -> Any:
  if licence.startswith("LicenseRef-") or licence.lower() in ("unknown", "noassertion", "none", ""):
    return {"@type": "sc:CreativeWork", "name": licence or "unknown"}
  return f"https://spdx.org/licenses/{licence}.html"


def _agents(names: Iterable[str]) -> list[dict[str, str]]:
  return [{"@type": "prov:Agent", "prov:label": name} for name in sorted({n for n in names if n})]


def _attributed_to(record: Mapping[str, Any]) -> list[str]:
  rights = record["tier1"]["rights"] or {}
  holder = rights.get("rightsholder")
  if holder:
    return [holder]
  creators = list(rights.get("creators") or [])
  return creators or ([record["composer"]] if record.get("composer") else [])


def _file_id(record: Mapping[str, Any]) -> str:
  return f"source/{record['work_id']}"


def _works_recordset() -> dict[str, Any]:
  def field(name: str, path: str, description: str, data_type: str = "sc:Text") -> dict[str, Any]:
    return {"@type": "cr:Field", "@id": f"works/{name}", "name": name, "description": description,
            "dataType": data_type,
            "source": {"fileObject": {"@id": RECORDS_FILENAME}, "extract": {"jsonPath": path}}}

  return {
      "@type": "cr:RecordSet",
      "@id": "works",
      "name": "works",
      "description": "One record per documented work: tier 1 (rights, treatment), tier 2 (hashes), tier 3 "
                     "(fingerprints).",
      "key": {"@id": "works/work_id"},
      "field": [
          field("work_id", "$.work_id", "Stable work identifier."),
          field("modality", "$.modality", "music, text or image."),
          field("title", "$.title", "Title of the work."),
          field("composer", "$.composer", "Composer / author."),
          field("split", "$.split", "Dataset split (train / validation / test)."),
          field("licence", "$.tier1.rights.licence", "SPDX licence id (or LicenseRef-/unknown) of the work."),
          field("attribution_text", "$.tier1.rights.attribution_text", "Credit line required for the work."),
          field("opted_out", "$.tier1.rights.opted_out", "Whether the rights holder opted out of training.",
                "sc:Boolean"),
          field("treatment_status", "$.tier1.treatment.status",
                "included / excluded / not-trained / unknown."),
          field("treatment_depth", "$.tier1.treatment.depth",
                "Top depth groups the work's gradient could reach (0 when excluded).", "sc:Integer"),
          field("treatment_reason", "$.tier1.treatment.reason", "Why the treatment applies."),
          field("source_sha256", "$.tier2.source_sha256", "sha256 of the source file bytes (tier 2a)."),
          field("content_sha256", "$.tier2.content_sha256",
                "sha256 of the canonical content (tier 2b; invariant to transposition, tempo, encoding)."),
          field("fingerprint", "$.tier3", "Robust fingerprints (tier 3): MinHash signatures as base64 "
                "uint32, or perceptual hashes."),
      ],
  }


def build_croissant(
    records: Sequence[Mapping[str, Any]],
    *,
    name: str,
    description: str,
    url: str,
    records_sha256: str,
    records_size: int | None = None,
    version: str = "1.0.0",
    date_published: str | None = None,
    creators: Sequence[Mapping[str, Any]] = ({"@type": "sc:Organization", "name": "govjax"},),
    license: Any = None,  # noqa: A002 (the Croissant property name)
    derived_from: Sequence[Mapping[str, Any]] = (),
    rai: Mapping[str, Any] | None = None,
    extra_files: Sequence[Mapping[str, Any]] = (),
    music_config: FingerprintConfig | None = None,
    text_config: TextFingerprintConfig | None = None,
) -> dict[str, Any]:
  """The Croissant 1.1 JSON-LD document describing ``records``.

  Args:
    records: the manifest records.
    name, description, url, version: dataset properties (``url`` may be a URN when there is no web page).
    records_sha256: sha256 of ``records.jsonl`` (its FileObject checksum).
    records_size: its size in bytes.
    date_published: ISO date; default today (UTC).
    creators: schema.org Person / Organization objects.
    license: the dataset ``license``; default: the distinct licences of the records (SPDX URLs; LicenseRef /
      unknown licences as named ``sc:CreativeWork``), or a CreativeWork saying that licences are per record.
    derived_from: PROV-O ``prov:wasDerivedFrom`` sources (``{"@id": url, "prov:label": ...}``).
    rai: Croissant-RAI properties (``rai:...``); default :data:`DEFAULT_RAI`.
    extra_files: additional ``cr:FileObject`` entries (e.g. the duplicates report).
    music_config, text_config: fingerprint parameters (stored so lookups use the same ones).

  Returns:
    The JSON-LD document (a dict).
  """
  if license is None:
    licences = sorted({(r["tier1"]["rights"] or {}).get("licence") or "unknown" for r in records})
    license = [_licence_value(lic) for lic in licences if lic != "unknown"]
    if not license or len(license) < len(licences):
      license.append({"@type": "sc:CreativeWork", "name": "Per-work licences (see each record's "
                      "tier1.rights.licence); some works' licences are unknown and not asserted here."})
  sources = []
  for record in records:
    if not record.get("source_path") or not record["tier2"].get("source_sha256"):
      continue
    entry = {
        "@type": "cr:FileObject",
        "@id": _file_id(record),
        "name": pathlib.PurePosixPath(record["source_path"]).name,
        "description": f"Source of work {record['work_id']}.",
        "contentUrl": record.get("source_url") or record["source_path"],
        "encodingFormat": encoding_format(record["source_path"]),
        "sha256": record["tier2"]["source_sha256"],
    }
    agents = _agents(_attributed_to(record))
    if agents:
      entry["prov:wasAttributedTo"] = agents
    sources.append(entry)
  records_file = {
      "@type": "cr:FileObject",
      "@id": RECORDS_FILENAME,
      "name": RECORDS_FILENAME,
      "description": f"Per-work records ({RECORDS_FORMAT}): tier 1 rights + treatment, tier 2 hashes, tier 3 "
                     "fingerprints.",
      "contentUrl": RECORDS_FILENAME,
      "encodingFormat": "application/jsonlines",
      "sha256": records_sha256,
  }
  if records_size is not None:
    records_file["contentSize"] = f"{records_size} B"
  if not derived_from:
    derived_from = [{"@id": f"urn:govjax:collection:{c}", "prov:label": c}
                    for c in sorted({r.get("collection") for r in records if r.get("collection")})]
  attributed = _agents(name for r in records for name in _attributed_to(r))
  now = datetime.datetime.now(datetime.UTC)
  doc = {
      "@context": dict(CONTEXT),
      "@type": "sc:Dataset",
      "conformsTo": CONFORMS_TO,
      "name": name,
      "description": description,
      "license": license,
      "url": url,
      "creator": list(creators),
      "datePublished": date_published or now.date().isoformat(),
      "version": version,
      "keywords": ["training data documentation", "provenance", "rights", "fingerprints"],
      "prov:wasDerivedFrom": list(derived_from),
      "prov:wasAttributedTo": attributed,
      "prov:wasGeneratedBy": {"@type": "prov:Activity", "prov:label": "govjax manifest",
                              "prov:endedAtTime": now.isoformat(timespec="seconds")},
      **dict(DEFAULT_RAI if rai is None else rai),
      "govjax:recordsFormat": RECORDS_FORMAT,
      "govjax:fingerprints": {"music": (music_config or FingerprintConfig()).to_dict(),
                              "text": (text_config or TextFingerprintConfig()).to_dict(),
                              "image": {"scheme": image_fingerprint.SCHEME_NAME}},
      "govjax:numRecords": len(records),
      "distribution": [records_file, *extra_files, *sources],
      "recordSet": [_works_recordset()],
  }
  return doc


def _has_type(node: Mapping[str, Any], *names: str) -> bool:
  types = node.get("@type")
  types = types if isinstance(types, list) else [types]
  return any(t in names for t in types)


def validate_croissant(doc: Mapping[str, Any]) -> list[str]:
  """Checks a Croissant document against the 1.1 spec's required properties and internal references.

  Checked: ``@context`` (with the ``cr`` namespace, and the ``prov`` / ``rai`` prefixes when such properties
  are used), ``@type`` schema.org Dataset, ``conformsTo`` including ``http://mlcommons.org/croissant/1.1``,
  ``name``, ``description``, ``license``, ``url``, ``creator``, ``datePublished`` (ISO date), a non-empty
  ``distribution`` of ``cr:FileObject`` (``@id``, ``name``, ``contentUrl``, ``encodingFormat``, 64-hex
  ``sha256``) / ``cr:FileSet`` (``@id``, ``encodingFormat``, ``includes``) with unique ids; every
  ``cr:RecordSet`` (``@id``, fields) and ``cr:Field`` (``@id``, ``dataType``, a source naming an existing
  FileObject / FileSet / RecordSet or field); ``key`` references.

  Returns:
    Problems, one readable line each (empty: valid).
  """
  problems: list[str] = []
  if not isinstance(doc, Mapping):
    return [f"document: expected a JSON object, got {type(doc).__name__}"]
  context = doc.get("@context")
  if not isinstance(context, Mapping):
    problems.append("dataset: missing required property '@context' (a JSON-LD context object)")
    context = {}
  elif context.get("cr") not in ("http://mlcommons.org/croissant/", "https://mlcommons.org/croissant/"):
    problems.append("dataset: '@context' must define the 'cr' prefix as http://mlcommons.org/croissant/")
  for prefix in ("prov", "rai"):
    if any(str(k).startswith(prefix + ":") for k in doc) and prefix not in context:
      problems.append(f"dataset: '{prefix}:' properties are used but '@context' does not define '{prefix}'")
  if not _has_type(doc, "sc:Dataset", "Dataset", "http://schema.org/Dataset", "https://schema.org/Dataset"):
    problems.append("dataset: '@type' must be sc:Dataset")
  conforms = doc.get("conformsTo", doc.get("dct:conformsTo"))
  conforms = conforms if isinstance(conforms, list) else [conforms]
  if not any(c is not None for c in conforms):
    problems.append(f"dataset: missing required property 'conformsTo' (must include {CONFORMS_TO})")
  elif CONFORMS_TO not in conforms:
    problems.append(f"dataset: 'conformsTo' is {conforms}, must include {CONFORMS_TO}")
  for prop in ("name", "description", "license", "url", "creator", "datePublished"):
    value = doc.get(prop)
    if value is None or value == "" or value == []:
      problems.append(f"dataset: missing required property '{prop}'")
  published = doc.get("datePublished")
  if isinstance(published, str) and published:
    try:
      datetime.datetime.fromisoformat(published)
    except ValueError:
      problems.append(f"dataset: 'datePublished' {published!r} is not an ISO 8601 date")
  distribution = doc.get("distribution")
  ids: set[str] = set()
  if not isinstance(distribution, list) or not distribution:
    problems.append("dataset: missing required property 'distribution' (a non-empty list of "
                    "cr:FileObject / cr:FileSet)")
    distribution = []
  for i, node in enumerate(distribution):
    node_id = node.get("@id") if isinstance(node, Mapping) else None
    where = f"distribution[{i}]" + (f" ({node_id})" if node_id else "")
    if not isinstance(node, Mapping):
      problems.append(f"{where}: expected an object")
      continue
    if not node_id:
      problems.append(f"{where}: missing required property '@id'")
    elif node_id in ids:
      problems.append(f"{where}: duplicate '@id' {node_id!r}")
    else:
      ids.add(node_id)
    if _has_type(node, "cr:FileObject", "FileObject"):
      required = ("name", "contentUrl", "encodingFormat", "sha256")
    elif _has_type(node, "cr:FileSet", "FileSet"):
      required = ("encodingFormat", "includes")
    else:
      problems.append(f"{where}: '@type' must be cr:FileObject or cr:FileSet")
      continue
    for prop in required:
      if not node.get(prop):
        problems.append(f"{where}: missing required property '{prop}'")
    sha = node.get("sha256")
    if sha and not _SHA256.match(str(sha)):
      problems.append(f"{where}: 'sha256' must be 64 lowercase hex digits, got {sha!r}")
  record_sets = doc.get("recordSet", [])
  record_sets = record_sets if isinstance(record_sets, list) else [record_sets]
  field_ids: set[str] = set()
  set_ids = {rs.get("@id") for rs in record_sets if isinstance(rs, Mapping)}
  for i, rs in enumerate(record_sets):
    where = f"recordSet[{i}]" + (f" ({rs.get('@id')})" if isinstance(rs, Mapping) and rs.get("@id") else "")
    if not isinstance(rs, Mapping) or not _has_type(rs, "cr:RecordSet", "RecordSet"):
      problems.append(f"{where}: '@type' must be cr:RecordSet")
      continue
    if not rs.get("@id"):
      problems.append(f"{where}: missing required property '@id'")
    fields = rs.get("field", [])
    fields = fields if isinstance(fields, list) else [fields]
    if not fields and not rs.get("data"):
      problems.append(f"{where}: has no 'field'")
    for j, fld in enumerate(fields):
      fwhere = f"{where}.field[{j}]" + (f" ({fld.get('@id')})" if fld.get("@id") else "")
      if not _has_type(fld, "cr:Field", "Field"):
        problems.append(f"{fwhere}: '@type' must be cr:Field")
      if not fld.get("@id"):
        problems.append(f"{fwhere}: missing required property '@id'")
      else:
        field_ids.add(fld["@id"])
      if not fld.get("dataType"):
        problems.append(f"{fwhere}: missing required property 'dataType'")
      source = fld.get("source")
      if source is None:
        if "value" not in fld and not rs.get("data"):
          problems.append(f"{fwhere}: missing 'source' (or 'value')")
        continue
      target = None
      for kind in ("fileObject", "fileSet", "recordSet"):
        if isinstance(source.get(kind), Mapping):
          target = source[kind].get("@id")
          if target not in (ids if kind != "recordSet" else set_ids):
            problems.append(f"{fwhere}: source {kind} {target!r} is not defined")
      if target is None and "@id" in source:
        target = source["@id"]  # a reference to another field, checked below
      if target is None:
        problems.append(f"{fwhere}: 'source' names no fileObject / fileSet / recordSet")
  for i, rs in enumerate(record_sets):
    if not isinstance(rs, Mapping):
      continue
    keys = rs.get("key", [])
    for key in keys if isinstance(keys, list) else [keys]:
      if isinstance(key, Mapping) and key.get("@id") not in field_ids:
        problems.append(f"recordSet[{i}]: key {key.get('@id')!r} is not one of its fields")
    for fld in rs.get("field", []) or []:
      source = fld.get("source") or {}
      if "@id" in source and source["@id"] not in field_ids:
        problems.append(f"recordSet[{i}]: field {fld.get('@id')!r} references undefined field "
                        f"{source['@id']!r}")
  return problems
