"""Manifest of a training run: every work's treatment as the run actually applied it, with tiers 1-3.

The treatments come from the run's training data (``govjax.train.data.build_training_data(config)``): the
training works (after exclusion) in ``work_index`` order with ``per_work_depth`` and ``per_work_region``, the
held-out works (never trained on), the rights records of all works, excluded ones included, and the policy's
decision (rule, reason) for every work considered for training (``treatments``). A considered work that is
not among the training works was excluded before batching; a work with a record that was not considered
(e.g. the test split) is ``not-trained``. Works outside the training works are fingerprinted when their
content is passed (``other_works``); otherwise their record has tier 1, the source sha256 of its rights
record and ``tier3 = {"unavailable": reason}``.

The functions take the training data's attributes (or any object with them), so they work without a trained
model or the data pipeline.

Example:
  >>> import numpy as np
  >>> from govjax.rights.records import parse_record
  >>> works = [{"work_id": "a", "tokens": [60, 56, 53, 41] * 4}]
  >>> records = {w: parse_record({"work_id": w, "licence": "CC0-1.0"}) for w in ("a", "b")}
  >>> t = run_treatments(works=works, records=records, per_work_depth=np.array([2]), num_groups=6,
  ...                    reasons={"b": {"rule": "opted-out", "reason": "TDM reservation"}})
  >>> t["a"]["status"], t["a"]["depth"], t["b"]["status"], t["b"]["reason"]
  ('included', 2, 'excluded', 'TDM reservation')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from govjax.documentation.dataset_manifest import dataset_work_inputs, write_documented_manifest
from govjax.documentation.tiers import ManifestError, build_records

REGION_NAME = "removable"
HELDOUT_REASON = "held out (validation split): never trained on"
OTHER_SPLIT_REASON = "not in the training split (e.g. the test split): never trained on"
EXCLUDED_REASON = "not among the run's training works: excluded before batching"


def _get(work: Any, name: str, default: Any = None) -> Any:
  return work.get(name, default) if isinstance(work, Mapping) else getattr(work, name, default)


def _record_field(record: Any, name: str, default: Any = None) -> Any:
  return _get(record, name, default) if record is not None else default


def run_treatments(*, works: Sequence[Any], records: Mapping[str, Any], per_work_depth: Sequence[int],
                   num_groups: int, per_work_region: Sequence[int] | None = None,
                   heldout_works: Sequence[Any] = (), reasons: Mapping[str, Mapping[str, Any]] | None = None,
                   considered: Collection[str] | None = None,
                   region_name: str = REGION_NAME) -> dict[str, dict[str, Any]]:
  """Each work's treatment in the run (inputs of :func:`~govjax.documentation.tiers.treatment_entry`).

  Args:
    works: the training works in ``work_index`` order (objects or dicts with ``work_id``).
    records: ``work_id -> rights record`` for all works, excluded ones included.
    per_work_depth: int ``[len(works)]``: top depth groups each training work reached (1..num_groups).
    num_groups: the model's depth groups ``L``.
    per_work_region: int ``[len(works)]``: 1 where the work was routed to the removable region.
    heldout_works: works never trained on (validation split).
    reasons: ``work_id -> {"rule", "reason", "region", "include"}`` (e.g. ``PolicyDecisions.rows()``), used
      for the rule / reason text and the region's name.
    considered: the works the policy considered for training (the train split); records outside it, the
      training works and the held-out works are ``not-trained``. None: every such record was excluded.
    region_name: region name when ``reasons`` does not give one.

  Returns:
    ``work_id -> {"status", "depth", "num_groups", "region", "rule", "reason"}``.

  Raises:
    ManifestError: arrays of the wrong length, a training work with depth outside ``1..num_groups``, a work
      that is both trained and held out, or a trained work the policy excludes (names the work).
  """
  reasons = reasons or {}
  depth = np.asarray(per_work_depth).reshape(-1)
  region = None if per_work_region is None else np.asarray(per_work_region).reshape(-1)
  if depth.shape[0] != len(works) or (region is not None and region.shape[0] != len(works)):
    raise ManifestError(f"per_work_depth ({depth.shape[0]}) / per_work_region "
                        f"({None if region is None else region.shape[0]}) must have one entry per training "
                        f"work ({len(works)})")
  treatments: dict[str, dict[str, Any]] = {}
  for i, work in enumerate(works):
    work_id = _get(work, "work_id")
    row = reasons.get(work_id, {})
    d = int(depth[i])
    if not 1 <= d <= num_groups:
      raise ManifestError(f"work {work_id!r}: field 'per_work_depth' is {d}, expected 1..{num_groups} for a "
                          "training work")
    if row and row.get("include") is False:
      raise ManifestError(f"work {work_id!r}: the policy excludes it ({row.get('reason')}) but it is among "
                          "the training works")
    routed = region is not None and int(region[i]) == 1
    reason = row.get("reason") or f"trained to depth {d}"
    if row.get("depth") is not None and int(row["depth"]) != d:
      reason += f" (the policy's depth {int(row['depth'])}; this run trained depth {d})"
    treatments[work_id] = {"status": "included", "depth": d, "num_groups": num_groups,
                           "region": (row.get("region") or region_name) if routed else None,
                           "rule": row.get("rule"), "reason": reason}
  for work in heldout_works:
    work_id = _get(work, "work_id")
    if work_id in treatments:
      raise ManifestError(f"work {work_id!r} is both a training and a held-out work")
    treatments[work_id] = {"status": "not-trained", "depth": 0, "num_groups": num_groups, "region": None,
                           "rule": reasons.get(work_id, {}).get("rule"), "reason": HELDOUT_REASON}
  for work_id, record in records.items():
    if work_id in treatments:
      continue
    if considered is not None and work_id not in considered:
      treatments[work_id] = {"status": "not-trained", "depth": 0, "num_groups": num_groups, "region": None,
                             "rule": None, "reason": OTHER_SPLIT_REASON}
      continue
    row = reasons.get(work_id, {})
    own = _record_field(record, "opt_out_reasons") or []
    reason = row.get("reason") or ("; ".join(own) if own else EXCLUDED_REASON)
    treatments[work_id] = {"status": "excluded", "depth": 0, "num_groups": num_groups, "region": None,
                           "rule": row.get("rule"), "reason": reason}
  return treatments


def _unavailable_input(work_id: str, record: Any, status: str) -> dict[str, Any]:
  source = str(_record_field(record, "source", "") or "")
  return {"work_id": work_id, "title": _record_field(record, "title", ""),
          "composer": ", ".join(_record_field(record, "creators", ()) or ()), "source_path": "",
          "sha256": _record_field(record, "sha256"), "split": "train" if status == "excluded" else None,
          "modality": "music", "collection": source,
          "unavailable": f"{status}: its content was not given to the manifest builder"}


def build_run_manifest(out_dir: str | os.PathLike, data: Any, *, other_works: Sequence[Any] = (),
                       reasons: Mapping[str, Mapping[str, Any]] | None = None, region_name: str = REGION_NAME,
                       fingerprint_from: str = "source", num_workers: int = 1, name: str = "govjax-run",
                       version: str = "1.0.0", url: str | None = None, date_published: str | None = None,
                       description: str | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
  """Writes the manifest of a run's works with the treatments the run applied.

  Args:
    out_dir: output directory (``<workdir>/manifest``).
    data: the run's training data (``TrainingData`` or any object with ``works``, ``heldout_works``,
      ``records``, ``per_work_depth``, ``per_work_region``, ``num_groups`` and optionally ``treatments``,
      the policy's decision per work considered for training).
    other_works: works (objects or dicts with tokens / source_path) of records that are neither training
      nor held-out works (excluded, test split), to fingerprint them; such records without one are
      documented without content.
    reasons: rule / reason per work (see :func:`run_treatments`); default ``data.treatments``.
    region_name: region name when ``reasons`` gives none.
    fingerprint_from: ``"source"`` or ``"tokens"`` (see
      :func:`~govjax.documentation.dataset_manifest.dataset_work_inputs`).
    num_workers: processes for parsing.
    name, version, url, date_published, description: Croissant dataset properties.
    progress: ``progress(done, total)`` callback.

  Returns:
    The summary of :func:`~govjax.documentation.dataset_manifest.write_documented_manifest` plus the
    fingerprint sources and the works without a rights record.

  Raises:
    ManifestError: inconsistent treatments (see :func:`run_treatments`) or works that cannot be fingerprinted.
  """
  records = dict(data.records)
  works, heldout = list(data.works), list(getattr(data, "heldout_works", None) or [])
  decided = dict(getattr(data, "treatments", None) or {})
  treatments = run_treatments(works=works, records=records, per_work_depth=data.per_work_depth,
                              num_groups=data.num_groups, per_work_region=getattr(data, "per_work_region", None),
                              heldout_works=heldout, reasons=reasons if reasons is not None else decided,
                              considered=set(decided) or None, region_name=region_name)
  present = {_get(w, "work_id") for w in works + heldout}
  others = [w for w in treatments if w not in present]
  given = {_get(w, "work_id"): w for w in other_works if _get(w, "work_id") in set(others)}
  excluded = [given[w] for w in others if w in given and treatments[w]["status"] == "excluded"]
  other_split = [given[w] for w in others if w in given and treatments[w]["status"] != "excluded"]
  inputs, sources = dataset_work_inputs({"train": works + excluded, "validation": heldout, "test": other_split},
                                        fingerprint_from=fingerprint_from)
  missing = [w for w in others if w not in given]
  inputs += [_unavailable_input(w, records.get(w), treatments[w]["status"]) for w in missing]
  sources["without_content"] = len(missing)
  unrecorded = sorted(i["work_id"] for i in inputs if i["work_id"] not in records)
  result = build_records(inputs, rights=records, treatments=treatments, num_groups=data.num_groups,
                         num_workers=num_workers, progress=progress)
  summary = write_documented_manifest(out_dir, result, name=name, version=version, url=url,
                                      date_published=date_published, description=description)
  return {**summary, "fingerprint_sources": sources, "works_without_rights_record": unrecorded}
