"""Croissant 1.1 JSON-LD for a manifest: the document builder and the few checks govjax relies on.

The document uses the standard Croissant 1.1 ``@context`` (schema.org as ``https://schema.org/``) plus PROV-O
and govjax prefixes, and has ``@type sc:Dataset``, ``conformsTo`` ``http://mlcommons.org/croissant/1.1``,
``name``, ``description``, ``license``, ``url``, ``creator``, ``datePublished``, ``citeAs``; one
``cr:FileObject`` per source file (sha256, contentUrl, encodingFormat, PROV-O ``prov:wasAttributedTo``), one for
``records.jsonl`` (and ``duplicates.json`` when written), a ``works`` RecordSet whose fields read
``records.jsonl`` as a table (a top-level key as the column, a nested value by a JSONPath transform),
dataset-level PROV-O (``prov:wasDerivedFrom`` sources, ``prov:wasAttributedTo`` rights holders / creators,
``prov:wasGeneratedBy``), Croissant-RAI fields and the fingerprint parameters (``govjax:fingerprints``) that
lookups must reuse. ``mlcroissant`` (a development dependency, used by the tests) validates the document and
reads its records: ``mlcroissant validate --jsonld croissant.json``.

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

SCHEMA_ORG = "https://schema.org/"
CROISSANT_NS = "http://mlcommons.org/croissant/"

# The standard Croissant 1.1 context (as in the spec's examples and mlcroissant), plus the PROV-O and govjax
# prefixes. schema.org is ``https://schema.org/``: with ``http://`` the document does not extend
# https://schema.org/Dataset for Croissant tools.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": SCHEMA_ORG,
    "sc": SCHEMA_ORG,
    "cr": CROISSANT_NS,
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "govjax": "urn:govjax:vocab:",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
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
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._~:/-]+")



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


def _node_id(text: str) -> str:
  """An ``@id`` from free text: runs of whitespace and characters outside ``[A-Za-z0-9._~:/-]`` become ``-``
  (Croissant tools reject ids with whitespace, even URL-escaped)."""
  return _UNSAFE_ID.sub("-", text.strip())


def _file_id(record: Mapping[str, Any]) -> str:
  return _node_id(f"source/{record['work_id']}")


def _works_recordset() -> dict[str, Any]:
  def field(name: str, path: str, description: str, data_type: str = "sc:Text") -> dict[str, Any]:
    # JSON Lines are read as a table: the top-level key is the column, a nested value a JSONPath transform.
    column, _, rest = path.removeprefix("$.").partition(".")
    source: dict[str, Any] = {"fileObject": {"@id": RECORDS_FILENAME}, "extract": {"column": column}}
    if rest:
      source["transform"] = {"jsonPath": f"$.{rest}"}
    return {"@type": "cr:Field", "@id": f"works/{name}", "name": name, "description": description,
            "dataType": data_type, "source": source}

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
          field("fingerprint_full", "$.tier3.full", "Music, tier 3: MinHash signature (base64 of little-endian "
                "uint32) of all voices' melodic and harmonic shingles (an overall similarity estimate, reported "
                "by the duplicate report; the lookup's near-copy / partial-copy / same-tune answers come from "
                "aligning the per-voice interval sketches in records.jsonl tier3.voices)."),
          field("fingerprint_melody", "$.tier3.melody", "Music, tier 3: MinHash signature of the highest "
                "voice's melodic shingles (reported only; the lookup's same-tune answer aligns tier3.voices)."),
          field("fingerprint_text", "$.tier3.signature", "Text, tier 3: MinHash signature of word shingles."),
          field("fingerprint_phash", "$.tier3.phash", "Image, tier 3: 64-bit perceptual hash (hex)."),
          field("fingerprint_dhash", "$.tier3.dhash", "Image, tier 3: 64-bit difference hash (hex)."),
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
    cite_as: str | None = None,
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
    cite_as: how to cite the dataset (``citeAs``); default: its name, version and url.

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
    derived_from = [{"@id": _node_id(f"urn:govjax:collection:{c}"), "prov:label": c}
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
      "citeAs": cite_as or f"{name}, version {version} ({url}): training-set documentation written by govjax.",
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


def validate_croissant(doc: Mapping[str, Any]) -> list[str]:
  """The checks govjax relies on when it writes or loads a manifest, beyond what ``mlcroissant`` checks.

  Conformance to the Croissant 1.1 schema (``@context`` and ``@type`` extending https://schema.org/Dataset,
  FileObject checksums present, field data types, references of sources, ISO dates) is what ``mlcroissant``
  validates; the tests load every exported document with ``mlcroissant.Dataset(jsonld=...)``, which is not
  needed at run time. Checked here: ``conformsTo`` including ``http://mlcommons.org/croissant/1.1``; the dataset
  properties the spec requires but ``mlcroissant`` 1.1 accepts without (``name``, ``description``, ``license``,
  ``url``, ``creator``, ``datePublished``); a non-empty ``distribution`` with unique ``@id`` values whose
  FileObjects have a ``contentUrl`` and a 64-hex ``sha256`` (govjax verifies files against it); record-set
  ``key`` references.

  Returns:
    Problems, one readable line each (empty: valid).
  """
  if not isinstance(doc, Mapping):
    return [f"document: expected a JSON object, got {type(doc).__name__}"]
  problems: list[str] = []
  conforms = doc.get("conformsTo", doc.get("dct:conformsTo"))
  conforms = conforms if isinstance(conforms, list) else [conforms]
  if not any(c is not None for c in conforms):
    problems.append(f"dataset: missing required property 'conformsTo' (must include {CONFORMS_TO})")
  elif CONFORMS_TO not in conforms:
    problems.append(f"dataset: 'conformsTo' is {conforms}, must include {CONFORMS_TO}")
  for prop in ("name", "description", "license", "url", "creator", "datePublished"):
    if doc.get(prop) in (None, "", []):
      problems.append(f"dataset: missing required property '{prop}'")
  distribution = doc.get("distribution")
  if not isinstance(distribution, list) or not distribution:
    problems.append("dataset: missing required property 'distribution' (a non-empty list of "
                    "cr:FileObject / cr:FileSet)")
    distribution = []
  ids: set[str] = set()
  for i, node in enumerate(distribution):
    if not isinstance(node, Mapping):
      problems.append(f"distribution[{i}]: expected an object")
      continue
    node_id = node.get("@id")
    where = f"distribution[{i}]" + (f" ({node_id})" if node_id else "")
    if not node_id:
      problems.append(f"{where}: missing required property '@id'")
    elif node_id in ids:
      problems.append(f"{where}: duplicate '@id' {node_id!r}")
    else:
      ids.add(node_id)
    if "FileObject" not in str(node.get("@type")):
      continue
    for prop in ("contentUrl", "sha256"):
      if not node.get(prop):
        problems.append(f"{where}: missing required property '{prop}'")
    sha = node.get("sha256")
    if sha and not _SHA256.match(str(sha)):
      problems.append(f"{where}: 'sha256' must be 64 lowercase hex digits, got {sha!r}")
  record_sets = doc.get("recordSet", [])
  for i, rs in enumerate(record_sets if isinstance(record_sets, list) else [record_sets]):
    if not isinstance(rs, Mapping):
      problems.append(f"recordSet[{i}]: expected an object")
      continue
    fields = rs.get("field", [])
    field_ids = {f.get("@id") for f in (fields if isinstance(fields, list) else [fields]) if isinstance(f, Mapping)}
    keys = rs.get("key", [])
    for key in keys if isinstance(keys, list) else [keys]:
      if isinstance(key, Mapping) and key.get("@id") not in field_ids:
        problems.append(f"recordSet[{i}]: key {key.get('@id')!r} is not one of its fields")
  return problems
