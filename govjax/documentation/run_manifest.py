"""Manifest of a training run: every work's treatment as the run actually applied it, with tiers 1-3.

The treatments come from the run's training data (``govjax.train.data.build_training_data(config)``): the
training works (after exclusion) in ``work_index`` order with ``per_work_depth`` and ``per_work_region``, the
held-out works (never trained on), the rights records of all works, excluded ones included, and the policy's
decision (rule, reason) for every work considered for training (``treatments``). A considered work that is
not among the training works was excluded before batching; a work with a record that was not considered
(e.g. the test split) is ``not-trained``.

Every documented work is fingerprinted, opted-out and other excluded works included: a rights holder must find
a transposed or re-encoded copy of a work whatever its treatment. The training data hold the content of the
training and held-out works only, so the content of the others comes from the run's dataset
(``other_works``; :func:`document_run` takes the dataset's works by split and adds the run's canaries). A work
whose content is not given is an error unless ``allow_missing_content=True``; then its record has tier 1, the
source sha256 of its rights record and ``tier3 = {"unavailable": reason}`` (only the original file matches).

:func:`document_run` is what ``govjax manifest --workdir`` and ``govjax study`` call; the other functions take
the training data's attributes (or any object with them), so they work without a trained model or the data
pipeline.

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

from govjax.core import config as core_config
from govjax.core.rundir import RunDir
from govjax.data.canaries import canary_works
from govjax.documentation.dataset_manifest import dataset_work_inputs, write_documented_manifest
from govjax.documentation.tiers import ManifestError, build_records
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import PolicyError, load_policy

__all__ = ["EXCLUDED_REASON", "HELDOUT_REASON", "OTHER_SPLIT_REASON", "REGION_NAME", "build_run_manifest",
           "document_run", "load_run_config", "policy_reasons", "run_treatments"]

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
                       description: str | None = None, allow_missing_content: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
  """Writes the manifest of a run's works with the treatments the run applied.

  Args:
    out_dir: output directory (``<workdir>/manifest``).
    data: the run's works (``govjax.train.data.WorkCatalogue`` or any object with ``works``, ``heldout_works``,
      ``records``, ``per_work_depth``, ``per_work_region``, ``num_groups`` and optionally ``treatments``,
      the policy's decision per work considered for training).
    other_works: works (objects or dicts with tokens / source_path) of the records that are neither training
      nor held-out works (excluded, test split), to fingerprint them; any other works are ignored, so the
      whole dataset may be passed.
    reasons: rule / reason per work (see :func:`run_treatments`); default ``data.treatments``.
    region_name: region name when ``reasons`` gives none.
    fingerprint_from: ``"source"`` or ``"tokens"`` (see
      :func:`~govjax.documentation.dataset_manifest.dataset_work_inputs`).
    num_workers: processes for parsing.
    name, version, url, date_published, description: Croissant dataset properties.
    allow_missing_content: document a record whose work is not given from its rights record only (tier 1 and
      the source sha256; no fingerprints) instead of raising.
    progress: ``progress(done, total)`` callback.

  Returns:
    The summary of :func:`~govjax.documentation.dataset_manifest.write_documented_manifest` plus the
    fingerprint sources and the works without a rights record.

  Raises:
    ManifestError: inconsistent treatments (see :func:`run_treatments`), works that cannot be fingerprinted,
      or (without ``allow_missing_content``) records whose work's content was not given.
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
  wanted = set(others)
  given = {_get(w, "work_id"): w for w in other_works if _get(w, "work_id") in wanted}
  excluded = [given[w] for w in others if w in given and treatments[w]["status"] == "excluded"]
  other_split = [given[w] for w in others if w in given and treatments[w]["status"] != "excluded"]
  inputs, sources = dataset_work_inputs({"train": works + excluded, "validation": heldout, "test": other_split},
                                        fingerprint_from=fingerprint_from)
  missing = [w for w in others if w not in given]
  if missing and not allow_missing_content:
    raise ManifestError(f"{len(missing)} documented work(s) have no content to fingerprint (e.g. "
                        f"{', '.join(repr(w) for w in missing[:5])}, {treatments[missing[0]]['status']}): pass "
                        "the run's dataset works as 'other_works' so that every work, an opted-out one too, can be "
                        "found by a lookup")
  inputs += [_unavailable_input(w, records.get(w), treatments[w]["status"]) for w in missing]
  sources["without_content"] = len(missing)
  unrecorded = sorted(i["work_id"] for i in inputs if i["work_id"] not in records)
  result = build_records(inputs, rights=records, treatments=treatments, num_groups=data.num_groups,
                         num_workers=num_workers, progress=progress)
  summary = write_documented_manifest(out_dir, result, name=name, version=version, url=url,
                                      date_published=date_published, description=description)
  return {**summary, "fingerprint_sources": sources, "works_without_rights_record": unrecorded}


def load_run_config(workdir: str | os.PathLike) -> tuple[Any, str]:
  """``(config, config_hash)`` of a training run, from its record (:class:`govjax.core.rundir.RunDir`).

  Raises:
    govjax.core.rundir.NotARunError: no ``config.json`` (not a run directory).
    govjax.core.rundir.RunFileError: a malformed one.
  """
  record = RunDir(workdir).read_record()
  config = core_config.from_dict(record["config"])
  return config, record.get("config_hash") or core_config.config_hash(config)


def policy_reasons(config: Any, data: Any) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
  """Rule and reason of every work from the run's policy, for training data without ``treatments``.

  Returns:
    ``(work_id -> PolicyDecisions row, None)``, or ``(None, why)`` when the policy cannot be applied.
  """
  try:
    decisions = apply_policy(list(data.records.values()), load_policy(config.governance.policy), data.num_groups)
  except (PolicyError, ValueError, FileNotFoundError) as error:
    return None, f"treatment reasons not available ({error})"
  return {row["work_id"]: row for row in decisions.rows()}, None


def document_run(out_dir: str | os.PathLike, config: Any, data: Any, works_by_split: Mapping[str, Sequence[Any]],
                 *, config_hash: str | None = None, fingerprint_from: str = "source", num_workers: int = 1,
                 name: str = "govjax", version: str = "1.0.0", url: str | None = None,
                 date_published: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
  """The manifest of a training run, every work fingerprinted (``govjax manifest --workdir``, ``govjax study``).

  Args:
    out_dir: output directory (``<workdir>/manifest``).
    config: the run's ``TrainConfig`` (:func:`load_run_config`).
    data: its works (``govjax.train.data.build_training_data(config).catalogue``).
    works_by_split: the dataset's works by split (``govjax.train.data.load_works(config)``): the content of
      the works that are neither trained nor held out; the run's canaries are added from ``config.canaries``.
    config_hash: the run's config hash (default: computed from ``config``).
    fingerprint_from: ``"source"`` or ``"tokens"``.
    num_workers: parsing processes.
    name: dataset name prefix (the manifest is ``{name}-run-{config_hash}``).
    version, url, date_published: Croissant dataset properties (``url`` default ``urn:govjax:run:HASH``).
    progress: ``progress(done, total)`` callback.

  Returns:
    The summary of :func:`build_run_manifest`, plus ``notes`` (lines worth showing, e.g. reasons that the
    policy could not give).

  Raises:
    ManifestError: see :func:`build_run_manifest` (every work must be found in ``works_by_split``).
  """
  chash = config_hash or core_config.config_hash(config)
  notes: list[str] = []
  reasons = None
  if not getattr(data, "treatments", None):
    reasons, note = policy_reasons(config, data)
    notes += [note] if note else []
  others = [w for split in works_by_split.values() for w in split]
  if config.canaries.count:
    others += canary_works(config.canaries)
  summary = build_run_manifest(out_dir, data, other_works=others, reasons=reasons, fingerprint_from=fingerprint_from,
                               num_workers=num_workers, name=f"{name}-run-{chash}", version=version,
                               url=url or f"urn:govjax:run:{chash}", date_published=date_published,
                               progress=progress)
  return {**summary, "notes": notes}
