"""Audits a run directory: extraction per work and split, membership inference, canary exposure.

:func:`audit_model` takes a model and a ``govjax.train.data.TrainingData`` (its ``catalogue`` of works,
depths, records and windows, and its planted ``canaries``), so it runs on constructed data; :func:`audit_run`
restores a run directory's model (``govjax.train.loop.restore_model``) and rebuilds its data
(``govjax.train.data.build_training_data``).

Training works are audited on their training windows (the loader's window table, prompted at the window start as
in training); held-out works on windows cut the same way: they are the baseline, what the model continues on
music it never saw. Per work: ``extraction_rate`` (exact k-prefix matches / audited windows), ``token_match``,
``mean_loss``; the summary aggregates per split, per licence class, licence and treatment (window-weighted), and
adds the loss-based membership inference (train windows vs held-out windows), overall and per group of training
works (``membership_by_class``: licence classes, canaries, structural material, and ``works``: every training
work that is neither a canary nor structural material, the like-for-like comparison with held-out works).

:func:`write_audit` writes ``workdir/audit/per_work.jsonl``, ``per_work.csv`` and ``summary.json``.

Example::

    result = audit_run("runs/demo", k=32, m=32)
    paths = write_audit("runs/demo", result)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from govjax.audit.exposure import canary_exposure
from govjax.audit.extraction import ExtractionResult, extraction_audit
from govjax.audit.membership import membership_inference
from govjax.core.ids import work_kind
from govjax.data.loader import PAD, build_window_table
from govjax.train import data as training_data
from govjax.train.loop import restore_model

COLUMNS = ("work_id", "split", "licence", "licence_class", "treatment", "depth", "region", "num_windows",
           "num_audited", "num_skipped", "num_extractable", "extraction_rate", "token_match", "mean_loss")


@dataclasses.dataclass
class AuditResult:
  """The audit of one model.

  Attributes:
    rows: one dict per work (keys :data:`COLUMNS`), training works first.
    summary: JSON-able summary.
  """

  rows: list[dict]
  summary: dict


def cut_windows(works: Sequence, work_index: np.ndarray, start: np.ndarray, context: int) -> np.ndarray:
  """int32 ``[N, context]`` windows (PAD past the end of a work)."""
  out = np.full((len(work_index), context), PAD, np.int32)
  for row, (w, s) in enumerate(zip(work_index, start, strict=True)):
    piece = np.asarray(works[int(w)].tokens)[int(s):int(s) + context]
    out[row, :piece.size] = piece
  return out


def _subsample(work_index: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
  """Row indices keeping at most ``limit`` windows per work (a seeded choice), sorted."""
  rows = np.arange(work_index.size)
  if limit is None:
    return rows
  rng = np.random.default_rng(seed)
  keep = []
  for w in np.unique(work_index):
    mine = rows[work_index == w]
    keep.append(mine if mine.size <= limit else np.sort(rng.choice(mine, limit, replace=False)))
  return np.sort(np.concatenate(keep)) if keep else rows[:0]


def _clean(value):
  if isinstance(value, float) and math.isnan(value):
    return None
  return value


def _licence(records: dict, work_id: str) -> tuple[str, str]:
  record = records.get(work_id) if records else None
  if record is None:
    return "<no record>", "unknown"
  return record.licence, record.licence_class


def _group(rows: list[dict], row_windows: list[np.ndarray], results: dict[str, ExtractionResult],
           key: str) -> dict:
  """Window-weighted aggregates by ``row[key]`` then split (``row_windows[i]``: the windows of ``rows[i]``)."""
  groups: dict[str, dict[str, list]] = {}
  for row, windows in zip(rows, row_windows, strict=True):
    groups.setdefault(str(row[key]), {}).setdefault(row["split"], []).extend(windows.tolist())
  return {name: {split: _clean_dict(results[split].summary(np.asarray(idx, np.int64)))
                 for split, idx in sorted(splits.items())}
          for name, splits in sorted(groups.items())}


def member_class(work_id: str, licence_class: str) -> str:
  """The membership-inference group of a training work: ``canary``, ``structural`` or its licence class."""
  kind = work_kind(work_id)
  return licence_class if kind == "work" else kind


def _membership_by_class(rows: list[dict], row_windows: list[np.ndarray],
                         results: dict[str, ExtractionResult]) -> dict:
  """Membership inference per group of training works against all held-out windows.

  Groups: every :func:`member_class`, plus ``works`` (all training works that are neither canaries nor generated
  structural material: the like-for-like comparison with the held-out works, which are works too).
  """
  groups: dict[str, list[int]] = {}
  for row, windows in zip(rows, row_windows, strict=True):
    if row["split"] != "train":
      continue
    name = member_class(row["work_id"], row["licence_class"])
    groups.setdefault(name, []).extend(windows.tolist())
    if name not in ("canary", "structural"):
      groups.setdefault("works", []).extend(windows.tolist())
  train_loss = np.asarray(results["train"].loss)
  heldout_loss = results["heldout"].loss
  return {name: _clean_dict(membership_inference(train_loss[np.asarray(idx, np.int64)], heldout_loss))
          for name, idx in sorted(groups.items())}


def _clean_dict(d: dict) -> dict:
  return {k: _clean(v) for k, v in d.items()}


def audit_model(model, data, *, k: int = 32, m: int = 32, batch_size: int = 64,
                max_windows_per_work: int | None = None, seed: int = 0, num_references: int = 1000) -> AuditResult:
  """Audits ``model`` on ``data``'s training and held-out works.

  Args:
    model: a Transformer.
    data: a ``govjax.train.data.TrainingData`` (its ``catalogue`` and ``canaries``).
    k: prompt length.
    m: continuation length (``k + m <= data.catalogue.context``).
    batch_size: rows decoded at once.
    max_windows_per_work: audit at most this many windows per work (seeded choice); all when None.
    seed: seed of that choice and of the canary references.
    num_references: references per canary exposure.

  Returns:
    An :class:`AuditResult`.
  """
  catalogue = data.catalogue
  if k + m > catalogue.context:
    raise ValueError(f"audit: k ({k}) + m ({m}) exceeds the training context {catalogue.context}")
  table = catalogue.window_table
  splits = {"train": (list(catalogue.works), np.asarray(table.work_index), np.asarray(table.start))}
  heldout = list(catalogue.heldout_works)
  if heldout:
    held_table = build_window_table(heldout, context=catalogue.context, stride=table.stride)
    splits["heldout"] = (heldout, np.asarray(held_table.work_index), np.asarray(held_table.start))

  records = catalogue.records
  depth = np.asarray(catalogue.per_work_depth)
  region = np.zeros_like(depth) if catalogue.per_work_region is None else np.asarray(catalogue.per_work_region)
  results: dict[str, ExtractionResult] = {}
  rows: list[dict] = []
  row_windows: list[np.ndarray] = []
  for split, (works, work_index, start) in splits.items():
    keep = _subsample(work_index, max_windows_per_work, seed)
    work_index, start = work_index[keep], start[keep]
    windows = cut_windows(works, work_index, start, catalogue.context)
    results[split] = extraction_audit(model, windows, k=k, m=m, batch_size=batch_size)
    for w, work in enumerate(works):
      mine = np.flatnonzero(work_index == w)
      licence, licence_class = _licence(records, work.work_id)
      if split == "train":
        d, r = int(depth[w]), int(region[w])
        treatment = f"{'region ' if r else ''}depth {d}/{catalogue.num_groups}"
      else:
        d, r, treatment = None, None, "heldout"
      row = {"work_id": work.work_id, "split": split, "licence": licence, "licence_class": licence_class,
             "treatment": treatment, "depth": d, "region": r}
      row.update(_clean_dict(results[split].summary(mine)))
      rows.append(row)
      row_windows.append(mine)

  summary = {
      "k": k, "m": m,
      "max_windows_per_work": max_windows_per_work,
      "num_works": {split: int(sum(r["split"] == split for r in rows)) for split in splits},
      "works_without_record": sorted(r["work_id"] for r in rows if r["licence"] == "<no record>"),
      "splits": {split: _clean_dict(res.summary()) for split, res in results.items()},
  }
  for key, name in (("licence_class", "by_licence_class"), ("licence", "by_licence"),
                    ("treatment", "by_treatment")):
    summary[name] = _group(rows, row_windows, results, key)
  if "heldout" in results:
    summary["membership"] = _clean_dict(membership_inference(results["train"].loss, results["heldout"].loss))
    summary["membership_by_class"] = _membership_by_class(rows, row_windows, results)
  else:
    summary["membership"] = None
    summary["membership_by_class"] = None
  canaries = data.canaries
  if canaries is not None and len(canaries.tokens):
    summary["exposure"] = canary_exposure(model, canaries.tokens, num_references=num_references, seed=seed + 1,
                                          repetitions=canaries.repetitions, references=canaries.references,
                                          batch_size=batch_size)
  else:
    summary["exposure"] = None
  return AuditResult(rows=rows, summary=summary)


def audit_run(workdir: str | pathlib.Path, *, k: int = 32, m: int = 32, step: int | None = None, data=None,
              batch_size: int = 64, max_windows_per_work: int | None = None, seed: int = 0) -> AuditResult:
  """Audits the checkpoint of a run directory.

  Args:
    workdir: a directory written by ``govjax train``.
    k, m: prompt and continuation lengths.
    step: checkpoint step (the latest when None).
    data: the run's training data; rebuilt from its config when None.
    batch_size, max_windows_per_work, seed: see :func:`audit_model`.

  Returns:
    An :class:`AuditResult` whose summary also names the workdir, step and config hash.
  """

  model, config, meta = restore_model(workdir, step=step)
  if data is None:

    data = training_data.build_training_data(config)
  result = audit_model(model, data, k=k, m=m, batch_size=batch_size, max_windows_per_work=max_windows_per_work,
                       seed=seed)
  result.summary.update({"workdir": str(workdir), "step": meta.get("step"), "config_hash": meta.get("config_hash")})
  return result


def write_audit(workdir: str | pathlib.Path, result: AuditResult) -> dict[str, str]:
  """Writes ``workdir/audit/{per_work.jsonl, per_work.csv, summary.json}``; returns their paths."""
  out = pathlib.Path(workdir) / "audit"
  out.mkdir(parents=True, exist_ok=True)
  paths = {"per_work_jsonl": out / "per_work.jsonl", "per_work_csv": out / "per_work.csv",
           "summary": out / "summary.json"}
  with open(paths["per_work_jsonl"], "w") as f:
    for row in result.rows:
      f.write(json.dumps(row) + "\n")
  with open(paths["per_work_csv"], "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
    writer.writeheader()
    for row in result.rows:
      writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in COLUMNS})
  paths["summary"].write_text(json.dumps(result.summary, indent=2, sort_keys=True))
  return {k: str(v) for k, v in paths.items()}
