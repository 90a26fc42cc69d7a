"""Manifest of the prepared chorale dataset: work inputs, policy treatments, and the written manifest.

Works come from ``govjax.data`` (``Work`` objects or dicts with work_id, title, composer, collection,
source_path, sha256, tokens): :func:`choose_dataset_works` reads the prepared chorales (or parses music21's
corpus) of every split. Every work is fingerprinted, whatever its treatment (an opted-out work too, so that a
rights holder finds a copy of it), from its source file's Soprano/Alto/Tenor/Bass voices (what was trained on,
at full resolution; the file is found in music21's corpus) or, when the file is missing, from its tokens.
Treatments come from the rights records and the policy (:mod:`govjax.rights.policy`); works of other splits are
``not-trained``. :func:`document_dataset` does all of it for ``govjax manifest``. For the treatments of an
actual training run use :mod:`govjax.documentation.run_manifest`.

Example:
  >>> works = {"train": [{"work_id": "x/1", "title": "x", "composer": "c", "collection": "c",
  ...                     "source_path": "", "sha256": "0" * 64, "tokens": [60, 56, 53, 41] * 8}]}
  >>> inputs, counts = dataset_work_inputs(works)
  >>> counts
  {'from_source': 0, 'from_tokens': 1}
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import music21
import numpy as np

from govjax.core.config import ModelSpec
from govjax.data import chorales, corpus
from govjax.data.scenario import resolve_records
from govjax.data.structural import structural_works
from govjax.documentation.duplicates import find_duplicates
from govjax.documentation.manifest import build_records, has_fingerprint, write_manifest
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import load_policy

__all__ = ["CHORALE_RAI", "MUSIC21_CORPUS_URL", "build_dataset_manifest", "choose_dataset_works",
           "dataset_treatments", "dataset_work_inputs", "default_num_groups", "document_dataset",
           "music21_source_url", "training_duplicates", "write_documented_manifest"]

MUSIC21_CORPUS_URL = "https://github.com/cuthbertLab/music21/tree/master/music21/corpus"

CHORALE_RAI: dict[str, str] = {
    "rai:dataCollection": "Four-voice chorales by J. S. Bach taken from the corpus bundled with the "
                          "music21 Python package (MusicXML / Humdrum encodings by the corpus encoders); "
                          "kept when they parse to exactly the Soprano, Alto, Tenor and Bass voices.",
    "rai:dataUseCases": "Research on training governance of symbolic-music generative models (rights-aware "
                        "gradient routing, memorisation audits, provenance). Rights holders and auditors can "
                        "check whether a work was used and how (govjax lookup).",
    "rai:personalSensitiveInformation": "None: 18th-century compositions and their encodings; no personal "
                                        "data.",
    "rai:dataLimitations": "One composer, one genre, one period (Baroque chorale harmonisations). Some "
                           "chorales share a melody (re-harmonisations) or are near-copies of each other "
                           "(see duplicates.json). The encodings' own terms are set by music21's corpus "
                           "licence, not by the compositions' public-domain status.",
    "rai:dataBiases": "Western tonal four-part harmony only; not representative of music in general.",
}


def music21_source_url(source_path: str) -> str:
  """Upstream URL of a file of music21's bundled corpus, for the installed music21 release."""
  version = getattr(music21, "__version__", "master")
  return f"https://raw.githubusercontent.com/cuthbertLab/music21/v{version}/music21/corpus/{source_path}"


def _get(work: Any, name: str, default: Any = None) -> Any:
  return work.get(name, default) if isinstance(work, Mapping) else getattr(work, name, default)


def dataset_work_inputs(works_by_split: Mapping[str, Sequence[Any]], *,
                        corpus_root: str | os.PathLike | None = None,
                        fingerprint_from: str = "source") -> tuple[list[dict[str, Any]], dict[str, int]]:
  """Work inputs for :func:`build_records` from the dataset's works (``govjax.data`` works or dicts).

  Args:
    works_by_split: ``split -> works`` (each with work_id, title, composer, collection, source_path, sha256,
      tokens).
    corpus_root: directory that ``source_path`` is relative to (default: music21's corpus).
    fingerprint_from: ``"source"``: fingerprint the source file's SATB voices (what was trained on, at full
      resolution), falling back to the tokens when the file is missing; ``"tokens"``: the tokens.

  Returns:
    ``(inputs, counts)`` with counts of works fingerprinted from sources / tokens.
  """
  if fingerprint_from not in ("source", "tokens"):
    raise ValueError(f"fingerprint_from must be 'source' or 'tokens', got {fingerprint_from!r}")
  if corpus_root is None:
    corpus_root = music21.common.getCorpusFilePath()
  root = pathlib.Path(corpus_root)
  inputs, counts = [], {"from_source": 0, "from_tokens": 0}
  for split, works in works_by_split.items():
    for work in works:
      source_path = str(_get(work, "source_path", "") or "")
      path = root / source_path if source_path else None
      entry = {"work_id": _get(work, "work_id"), "title": _get(work, "title", ""),
               "composer": _get(work, "composer", ""), "collection": _get(work, "collection", ""),
               "source_path": source_path, "sha256": _get(work, "sha256"), "split": split,
               "modality": "music"}
      if fingerprint_from == "source" and path is not None and path.is_file():
        entry.update(path=str(path), select_satb=True, source_url=music21_source_url(source_path))
        counts["from_source"] += 1
      else:
        entry.update(tokens=np.asarray(_get(work, "tokens")),
                     steps_per_quarter=_get(work, "steps_per_quarter", 4))
        counts["from_tokens"] += 1
      inputs.append(entry)
  return inputs, counts


def dataset_treatments(works_by_split: Mapping[str, Sequence[Any]], rights: Sequence[Any], *,
                       policy: Any = "default", num_groups: int,
                       train_split: str = "train") -> dict[str, dict[str, Any]]:
  """Tier-1 treatments: the policy's decision for training works; ``not-trained`` for the other splits.

  Args:
    works_by_split: ``split -> works``.
    rights: the rights records (``govjax.rights.records.RightsRecord``).
    policy: a policy spec for ``govjax.rights.policy.load_policy`` (or a ``Policy``).
    num_groups: the model's depth groups ``L``.
    train_split: the split used for training.

  Returns:
    ``work_id -> treatment`` (inputs of :func:`treatment_entry`).
  """

  work_ids = [_get(w, "work_id") for works in works_by_split.values() for w in works]
  decisions = apply_policy(rights, load_policy(policy), num_groups, work_ids=work_ids)
  rows = {row["work_id"]: row for row in decisions.rows()}
  treatments = {}
  for split, works in works_by_split.items():
    for work in works:
      row = dict(rows[_get(work, "work_id")], num_groups=num_groups)
      if split != train_split:
        decided = "excluded" if not row["include"] else f"depth {row['depth']}/{num_groups}"
        row = {"status": "not-trained", "rule": row["rule"], "num_groups": num_groups,
               "reason": f"{split} split: used for evaluation, not training (policy would give: {decided})"}
      treatments[_get(work, "work_id")] = row
  return treatments


def training_duplicates(records: Sequence[Mapping[str, Any]]) -> Any:
  """Near-duplicate report inside the training set: the records with treatment status ``included`` (all
  fingerprinted records when none has a known treatment), as a ``DuplicateReport`` with ``scope`` set."""

  fingerprinted = [r for r in records if has_fingerprint(r)]
  included = [r for r in fingerprinted if r["tier1"]["treatment"]["status"] == "included"]
  known = any(r["tier1"]["treatment"]["status"] != "unknown" for r in records)
  report = find_duplicates(included if known else fingerprinted)
  report.scope = "training set (works with treatment status 'included')" if known else "all documented works"
  return report


def write_documented_manifest(out_dir: str | os.PathLike, records: Sequence[Mapping[str, Any]], *, name: str,
                              version: str = "1.0.0", url: str | None = None, date_published: str | None = None,
                              description: str | None = None, rai: Mapping[str, str] | None = None,
                              derived_from: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
  """Writes the manifest of ``records`` with its training-set duplicate report, and summarises it.

  Args:
    out_dir: output directory.
    records: the records (:func:`~govjax.documentation.tiers.build_records`).
    name, version, url, date_published, description: Croissant dataset properties.
    rai: Croissant-RAI fields (default :data:`CHORALE_RAI`).
    derived_from: PROV-O sources (default: music21's corpus).

  Returns:
    A JSON-able summary: paths, counts by split / treatment status, duplicate counts and groups, bytes per
    work, works documented without content.
  """
  duplicates = training_duplicates(records)
  description = description or (
      f"Training-set documentation of {len(records)} works (tier 1: rights records and training treatment; "
      "tier 2: sha256 of source bytes and of canonical content; tier 3: transposition- and tempo-invariant "
      "MinHash fingerprints). Lookup needs only this manifest, not the training data.")
  if derived_from is None:
    derived_from = [{"@id": MUSIC21_CORPUS_URL, "prov:label": "music21 bundled corpus"}]
  paths = write_manifest(
      out_dir, records, duplicates=duplicates.to_json(), name=name, description=description,
      url=url or f"urn:govjax:dataset:{name}:{version}", version=version, date_published=date_published,
      rai=CHORALE_RAI if rai is None else rai, derived_from=derived_from)
  statuses: dict[str, int] = {}
  splits: dict[str, int] = {}
  for record in records:
    status = record["tier1"]["treatment"]["status"]
    statuses[status] = statuses.get(status, 0) + 1
    splits[str(record.get("split"))] = splits.get(str(record.get("split")), 0) + 1
  return {"croissant": str(paths.croissant), "records": str(paths.records),
          "duplicates": str(paths.duplicates), "num_works": len(records), "by_split": splits,
          "by_treatment_status": statuses,
          "without_content": sorted(r["work_id"] for r in records if not has_fingerprint(r)),
          "duplicates_scope": duplicates.scope, "duplicate_pairs": duplicates.counts(),
          "near_copy_groups": duplicates.groups(),
          "bytes_per_work": paths.total_bytes() / max(1, len(records))}


def build_dataset_manifest(out_dir: str | os.PathLike, works_by_split: Mapping[str, Sequence[Any]], *,
                           rights: Sequence[Any] | None, policy: Any = "default", num_groups: int,
                           fingerprint_from: str = "source", num_workers: int = 1,
                           name: str = "govjax-chorales", version: str = "1.0.0", url: str | None = None,
                           date_published: str | None = None, description: str | None = None,
                           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
  """Builds and writes the manifest (with duplicates report) of the dataset's works.

  Args:
    out_dir: output directory.
    works_by_split: ``split -> works`` (``govjax.data`` works or dicts).
    rights: rights records for those works (None: tier-1 rights null and treatment unknown).
    policy: policy spec deciding the treatments.
    num_groups: the model's depth groups ``L``.
    fingerprint_from: ``"source"`` or ``"tokens"`` (see :func:`dataset_work_inputs`).
    num_workers: processes for parsing.
    name, version, url, date_published, description: Croissant dataset properties.
    progress: ``progress(done, total)`` callback.

  Returns:
    The summary of :func:`write_documented_manifest` plus the fingerprint sources.
  """
  inputs, sources = dataset_work_inputs(works_by_split, fingerprint_from=fingerprint_from)
  treatments = None
  rights_by_id = None
  if rights is not None:
    rights_by_id = {r.work_id if hasattr(r, "work_id") else r["work_id"]: r for r in rights}
    treatments = dataset_treatments(works_by_split, rights, policy=policy, num_groups=num_groups)
  records = build_records(inputs, rights=rights_by_id, treatments=treatments, num_groups=num_groups,
                          num_workers=num_workers, progress=progress)
  summary = write_documented_manifest(out_dir, records, name=name, version=version, url=url,
                                      date_published=date_published, description=description)
  return {**summary, "fingerprint_sources": sources}


def default_num_groups() -> int:
  """Depth groups ``L = num_layers + 2`` of the default model (``govjax.core.config.ModelSpec``)."""
  return ModelSpec().num_layers + 2


def choose_dataset_works(*, data_dir: str | os.PathLike | None = None, from_corpus: bool = False,
                         max_works: int | None = None, include_structural: bool = False, num_workers: int = 1,
                         progress: bool = False) -> tuple[dict[str, list], Any]:
  """The works to document, by split: the prepared chorales, or music21's corpus parsed directly.

  Args:
    data_dir: the prepared data directory (``govjax prepare chorales``; default: govjax.data's default).
    from_corpus: parse music21's corpus instead of reading the prepared data.
    max_works: with ``from_corpus``: at most this many works.
    include_structural: add the generated structural works to the train split.
    num_workers: parsing processes (``from_corpus``).
    progress: show a progress bar while parsing.

  Returns:
    ``(works_by_split, skip_report)``; the corpus :class:`~govjax.data.corpus.SkipReport` with
    ``from_corpus``, else None.

  Raises:
    govjax.data.chorales.DataNotPreparedError: the prepared data are missing (a ``FileNotFoundError``).
  """
  report = None
  if from_corpus:
    parsed, report = corpus.collect_works(max_works=max_works, num_workers=num_workers, progress=progress)
    by_split: dict[str, list] = {}
    for item in parsed:
      by_split.setdefault(item.split, []).append(item.work)
  else:
    by_split = {split: chorales.load_chorale_works(data_dir, split) for split in ("train", "validation", "test")}
  if include_structural:
    by_split.setdefault("train", []).extend(structural_works())
  return by_split, report


def document_dataset(out_dir: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                     from_corpus: bool = False, max_works: int | None = None, include_structural: bool = False,
                     records: Any = "real", seed: int = 0, policy: Any = "default", num_groups: int | None = None,
                     fingerprint_from: str = "source", num_workers: int = 1, name: str = "govjax-chorales",
                     version: str = "1.0.0", url: str | None = None, date_published: str | None = None,
                     progress: bool = False) -> dict[str, Any]:
  """The manifest of the dataset alone (``govjax manifest`` without a run): works, rights, treatments.

  Args:
    out_dir: output directory.
    data_dir, from_corpus, max_works, include_structural: which works (:func:`choose_dataset_works`).
    records: rights records: ``"real"``, ``"default"`` (the simulated scenario), a JSON Lines / CSV file
      (``govjax.data.scenario.resolve_records``) or a list of records.
    seed: seed of the simulated scenario.
    policy: the policy deciding each training work's treatment.
    num_groups: the model's depth groups (default :func:`default_num_groups`).
    fingerprint_from: ``"source"`` or ``"tokens"`` (:func:`dataset_work_inputs`).
    num_workers: parsing processes.
    name, version, url, date_published: Croissant dataset properties.
    progress: show progress bars.

  Returns:
    The summary of :func:`build_dataset_manifest`, plus ``corpus`` (kept works and skips by reason) with
    ``from_corpus``.
  """
  works_by_split, report = choose_dataset_works(data_dir=data_dir, from_corpus=from_corpus, max_works=max_works,
                                                include_structural=include_structural, num_workers=num_workers,
                                                progress=progress)
  works = [w for split in works_by_split.values() for w in split]
  rights = resolve_records(records, works, seed=seed) if isinstance(records, str | os.PathLike) else records
  summary = build_dataset_manifest(
      out_dir, works_by_split, rights=rights, policy=policy,
      num_groups=default_num_groups() if num_groups is None else num_groups, fingerprint_from=fingerprint_from,
      num_workers=num_workers, name=name, version=version, url=url, date_published=date_published)
  if report is not None:
    summary["corpus"] = {"kept": report.kept, "skipped": report.counts_by_reason()}
  return summary
