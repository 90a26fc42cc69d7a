"""What a training run says about a work: its audit row and how often it appears in output provenance.

Read from a run directory, when the files exist (each part is None otherwise):

- ``audit/per_work.jsonl`` (written by ``govjax audit``): one JSON object per work with ``work_id`` and e.g.
  ``treatment``, ``depth``, ``extraction_rate``, ``token_match``, ``mean_loss``;
- ``provenance/lineage/*.json`` (written by ``govjax trace``): one file per generated output, each with a
  ``"works": [{"work_id", "score", "depth", "licence", "attribution", ...}]`` list. A work's *appearances*
  are the number of those files that list it.

Example:
  >>> import json, pathlib, tempfile
  >>> run = pathlib.Path(tempfile.mkdtemp())
  >>> (run / "provenance" / "lineage").mkdir(parents=True)
  >>> for i, works in enumerate([["a", "b"], ["a"]]):
  ...   _ = (run / "provenance" / "lineage" / f"out{i}.json").write_text(
  ...       json.dumps({"works": [{"work_id": w, "score": 1.0} for w in works]}))
  >>> outputs = load_run_outputs(run)
  >>> outputs.audit is None, outputs.appearances, outputs.num_lineage_files
  (True, {'a': 2, 'b': 1}, 2)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

NOT_AVAILABLE = "not available"
AUDIT_FILE = "audit/per_work.jsonl"
LINEAGE_DIR = "provenance/lineage"


@dataclasses.dataclass(frozen=True)
class RunOutputs:
  """Audit rows and provenance appearances of one run.

  Attributes:
    workdir: the run directory (None: no run given).
    audit: ``work_id -> audit row``, or None when there is no audit file.
    appearances: ``work_id -> number of lineage files listing the work``, or None when there are no lineage
      files.
    num_lineage_files: lineage files read.
  """

  workdir: str | None = None
  audit: dict[str, dict[str, Any]] | None = None
  appearances: dict[str, int] | None = None
  num_lineage_files: int = 0

  def audit_row(self, work_id: str) -> Any:
    """The work's audit row, ``"no audit row for this work"``, or :data:`NOT_AVAILABLE`."""
    if self.audit is None:
      return NOT_AVAILABLE
    return self.audit.get(work_id, "no audit row for this work")

  def appearance_count(self, work_id: str) -> Any:
    """Lineage files listing the work (0 when none does), or :data:`NOT_AVAILABLE`."""
    if self.appearances is None:
      return NOT_AVAILABLE
    return int(self.appearances.get(work_id, 0))

  def describe(self) -> dict[str, Any]:
    """What was available, for reports."""
    return {"workdir": self.workdir,
            "audit": NOT_AVAILABLE if self.audit is None else f"{len(self.audit)} works audited",
            "provenance": NOT_AVAILABLE if self.appearances is None
            else f"{self.num_lineage_files} lineage files of generated outputs"}


def _read_audit(path: pathlib.Path) -> dict[str, dict[str, Any]]:
  audit: dict[str, dict[str, Any]] = {}
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path}:{number}: not valid JSON ({error})") from error
    if not isinstance(row, Mapping) or "work_id" not in row:
      raise ValueError(f"{path}:{number}: row lacks field 'work_id'")
    audit[str(row["work_id"])] = dict(row)
  return audit


def _read_lineage(directory: pathlib.Path) -> tuple[dict[str, int], int]:
  counts: dict[str, int] = {}
  files = sorted(directory.glob("*.json"))
  for path in files:
    try:
      data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
      raise ValueError(f"{path}: not valid JSON ({error})") from error
    works = data.get("works") if isinstance(data, Mapping) else None
    if not isinstance(works, list):
      raise ValueError(f"{path}: field 'works' must be a list of {{'work_id', ...}} objects")
    listed = set()
    for i, entry in enumerate(works):
      if not isinstance(entry, Mapping) or "work_id" not in entry:
        raise ValueError(f"{path}: works[{i}] lacks field 'work_id'")
      listed.add(str(entry["work_id"]))
    for work_id in listed:
      counts[work_id] = counts.get(work_id, 0) + 1
  return dict(sorted(counts.items())), len(files)


def load_run_outputs(workdir: str | os.PathLike | None) -> RunOutputs:
  """Reads a run's audit rows and lineage files, when they exist.

  Args:
    workdir: the run directory, or None.

  Returns:
    :class:`RunOutputs` (parts that do not exist are None).

  Raises:
    ValueError: a file exists but is malformed (names the file, line or field).
  """
  if workdir is None:
    return RunOutputs()
  root = pathlib.Path(workdir)
  audit_path = root / AUDIT_FILE
  audit = _read_audit(audit_path) if audit_path.is_file() else None
  lineage_dir = root / LINEAGE_DIR
  appearances, num_files = None, 0
  if lineage_dir.is_dir() and any(lineage_dir.glob("*.json")):
    appearances, num_files = _read_lineage(lineage_dir)
  return RunOutputs(str(root), audit, appearances, num_files)
