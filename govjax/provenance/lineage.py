"""Output lineage: which training works influenced a generated output, and which duties follow.

A lineage is a JSON document written next to the output (``<output>.lineage.json``) and under
``workdir/provenance/lineage/``. It is modelled on a C2PA manifest assertion (a labelled ``data`` object bound to
the asset by its sha256), with CAWG-style vocabulary: the ``works`` list names every influential training work
with its influence ``score`` and ``share`` of the positive influence, the ``depth`` (number of top depth groups)
it was learned at, its ``licence`` and DPI terms (use, attribution, share-alike) and the ``attribution`` text the
output should carry; ``duties`` collects the credits and share-alike obligations over the listed works, and
``method`` records how the scores were computed (TracIn-CP over which checkpoints, projection seed, k, index
sha256), so the lineage can be reproduced.

A lineage is only built from finite scores: NaN or infinite example or work scores raise
:class:`~govjax.provenance.query.NonFiniteScoresError` and nothing is written. Duties are those of the *listed*
works (the ``top`` proponents) with positive influence; ``duties["basis"]`` says on what the verdict rests, so
"no attribution required" is never an accident of missing or broken scores.

Example:
  >>> entry = work_entry({"work_id": "bach/bwv1.6", "title": "Wie schoen", "creators": ["J. S. Bach"]},
  ...                    depth=6, licence="CC-BY-4.0")
  >>> entry["attribution"], entry["attribution_required"]
  ('"Wie schoen" by J. S. Bach (CC-BY-4.0)', 'yes')
"""

from __future__ import annotations

import datetime
import hashlib
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from govjax.provenance.query import NonFiniteScoresError, TraceInputError
from govjax.rights.licences import licence_terms

LABEL = "org.govjax.training_lineage"
VERSION = 1


def _field(item: Any, name: str, default: Any = None) -> Any:
  if isinstance(item, Mapping):
    return item.get(name, default)
  return getattr(item, name, default)


def work_entry(work: Any, *, depth: int | None, record: Any = None, licence: str | None = None,
               region: int | None = None) -> dict:
  """The JSON description of one training work as an index stores it.

  Args:
    work: a :class:`govjax.data.loader.Work` or a dict with ``work_id`` (``title``, ``composer`` optional).
    depth: number of top depth groups the work trained.
    record: its :class:`govjax.rights.records.RightsRecord`, or None.
    licence: the licence when there is no record (default: the work's ``extra["licence"]`` or ``unknown``).
    region: 1 if the work was routed to a removable region.

  Returns:
    ``{"work_id", "title", "creators", "depth", "licence", "use", "attribution_required", "share_alike",
    "attribution", ...}``.
  """
  work_id = _field(work, "work_id")
  if not work_id:
    raise ValueError(f"training work {work!r} has no field 'work_id'")
  title = _field(record, "title") or _field(work, "title") or ""
  creators = list(_field(record, "creators") or _field(work, "creators") or ())
  if not creators and _field(work, "composer"):
    creators = [_field(work, "composer")]
  if record is not None:
    licence = record.licence
    terms = record.terms if hasattr(record, "terms") else licence_terms(licence)
    text = record.attribution_text
    rightsholder = record.rightsholder
    simulated = bool(record.simulated)
  else:
    extra = _field(work, "extra") or {}
    licence = licence or extra.get("licence") or _field(work, "licence") or "unknown"
    terms = licence_terms(licence)
    text, rightsholder, simulated = "", "", False
  if not text:
    name = f'"{title}"' if title else work_id
    by = f" by {', '.join(creators)}" if creators else ""
    text = f"{name}{by} ({licence})"
  entry = {
      "work_id": str(work_id),
      "title": title,
      "creators": creators,
      "depth": None if depth is None else int(depth),
      "licence": licence,
      "use": terms.use,
      "attribution_required": terms.attribution,
      "share_alike": terms.share_alike,
      "attribution": text,
      "rightsholder": rightsholder,
      "simulated_rights": simulated,
  }
  if region is not None:
    entry["region"] = int(region)
  return entry


def work_entries(data: Any) -> list[dict]:
  """:func:`work_entry` for every training work of a ``WorkCatalogue`` (``records``, ``per_work_depth`` and
  ``per_work_region`` are used when the data has them)."""
  records = getattr(data, "records", None) or {}
  depth = getattr(data, "per_work_depth", None)
  region = getattr(data, "per_work_region", None)
  out = []
  for i, work in enumerate(data.works):
    out.append(work_entry(work, depth=None if depth is None else int(depth[i]),
                          record=records.get(_field(work, "work_id")),
                          region=None if region is None else int(region[i])))
  return out


def sha256_bytes(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def build_lineage(
    attribution: Any,
    works: Sequence[Mapping[str, Any]],
    *,
    top: int = 10,
    output: Mapping[str, Any] | None = None,
    method: Mapping[str, Any] | None = None,
) -> dict:
  """The lineage document of one output.

  Args:
    attribution: a :class:`govjax.provenance.query.Attribution`.
    works: the index's work entries (:func:`work_entry`), by work index.
    top: number of proponent works listed (opponents: the same number).
    output: description of the output (``file``, ``sha256``, ``num_tokens``...).
    method: how the scores were computed.

  Returns:
    A JSON-able dict (see the module docstring).

  Raises:
    NonFiniteScoresError: an example score, or the score of a listed work, is NaN or infinite.
    TraceInputError: ``top < 1``.
  """
  if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
    raise TraceInputError(f"top must be an integer >= 1, got {top!r}")
  scores = np.asarray(attribution.work_scores, np.float64)
  examples = np.asarray(getattr(attribution, "example_scores", ()), np.float64)
  if not np.isfinite(examples).all():
    raise NonFiniteScoresError(f"{int(np.sum(~np.isfinite(examples)))} of {examples.size} example influence scores "
                               "are NaN or infinite; no lineage is built from them")
  shown = np.concatenate([np.asarray(attribution.proponents, np.int64)[:top],
                          np.asarray(attribution.opponents, np.int64)[:top]])
  if not np.isfinite(scores[shown]).all():
    raise NonFiniteScoresError(f"listed works have NaN or infinite influence scores "
                               f"({scores[shown][~np.isfinite(scores[shown])][:3].tolist()}); no lineage is built "
                               "from them")
  positive = float(np.sum(np.clip(scores[np.isfinite(scores)], 0.0, None)))

  def listed(indices: np.ndarray, rank_sign: int) -> list[dict]:
    rows = []
    for rank, w in enumerate(indices[:top], 1):
      score = float(scores[w])
      row = {"rank": rank, **dict(works[int(w)]), "work_index": int(w), "score": score}
      if rank_sign > 0:
        row["share"] = score / positive if positive > 0 and score > 0 else 0.0
      rows.append(row)
    return rows

  proponents = listed(np.asarray(attribution.proponents), 1)
  credits = [w["attribution"] for w in proponents if w.get("attribution_required") != "no" and w["score"] > 0]
  share_alike = sorted({w["licence"] for w in proponents if w.get("share_alike") == "yes" and w["score"] > 0})
  restricted = sorted({w["licence"] for w in proponents
                       if w.get("use") not in ("all", None) and w["score"] > 0})
  influential = sum(1 for w in proponents if w["score"] > 0)
  if credits:
    basis = f"{len(credits)} of the {influential} listed work(s) with positive influence require attribution"
  elif influential:
    basis = f"none of the {influential} listed work(s) with positive influence requires attribution"
  else:
    basis = "no training work has positive influence on this output"
  return {
      "label": LABEL,
      "version": VERSION,
      "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "output": dict(output or {}),
      "method": {"name": "TracIn-CP", "aggregation": attribution.aggregation, **dict(method or {})},
      "works": proponents,
      "opponents": listed(np.asarray(attribution.opponents), -1),
      "duties": {
          "attribution": credits,
          "share_alike_licences": share_alike,
          "restricted_use_licences": restricted,
          "attribution_text": "; ".join(credits),
          "attribution_required": bool(credits),
          "basis": basis,
      },
      "cawg_assertion": {
          "label": "cawg.training-mining",
          "note": "influence attribution of a generated output (not a permission statement)",
      },
  }


def write_lineage(lineage: Mapping[str, Any], *, output_file: str | pathlib.Path | None,
                  workdir: str | pathlib.Path | None, name: str) -> list[pathlib.Path]:
  """Writes the lineage as ``<output_file>.lineage.json`` and ``workdir/provenance/lineage/<name>.json``.

  Args:
    lineage: the document.
    output_file: the generated file (its sidecar is written next to it), or None.
    workdir: the run directory, or None.
    name: file stem under ``workdir/provenance/lineage``.

  Returns:
    The paths written.

  Raises:
    NonFiniteScoresError: the document holds a NaN or infinite number (nothing is written).
  """
  try:
    text = json.dumps(lineage, indent=1, sort_keys=False, allow_nan=False)
  except ValueError as error:
    if "out of range float" not in str(error).lower():
      raise
    raise NonFiniteScoresError(f"lineage {name!r} holds a NaN or infinite number ({error}); nothing written") from None
  paths = []
  if output_file is not None:
    output_file = pathlib.Path(output_file)
    paths.append(output_file.with_name(output_file.name + ".lineage.json"))
  if workdir is not None:
    paths.append(pathlib.Path(workdir) / "provenance" / "lineage" / f"{name}.json")
  for path in paths:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
  return paths
