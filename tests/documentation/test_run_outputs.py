"""Run outputs for lookups: audit rows and lineage appearance counts, malformed files named."""

from __future__ import annotations

import json

import pytest

from govjax.documentation import run_outputs


def test_missing_files_are_not_available(tmp_path):
  outputs = run_outputs.load_run_outputs(tmp_path)
  assert outputs.audit is None and outputs.appearances is None
  assert outputs.audit_row("a") == outputs.appearance_count("a") == run_outputs.NOT_AVAILABLE
  assert run_outputs.load_run_outputs(None) == run_outputs.RunOutputs()


def test_lineage_counts_files_not_entries(tmp_path):
  lineage = tmp_path / "provenance" / "lineage"
  lineage.mkdir(parents=True)
  (lineage / "x.json").write_text(json.dumps({"works": [{"work_id": "a"}, {"work_id": "a"}, {"work_id": "b"}]}))
  (lineage / "y.json").write_text(json.dumps({"works": [{"work_id": "a", "score": 0.1}]}))
  outputs = run_outputs.load_run_outputs(tmp_path)
  assert outputs.appearances == {"a": 2, "b": 1} and outputs.num_lineage_files == 2
  assert outputs.appearance_count("c") == 0
  (lineage / "z.json").write_text(json.dumps({"works": [{"score": 1}]}))
  with pytest.raises(ValueError, match=r"z.json: works\[0\] lacks field 'work_id'"):
    run_outputs.load_run_outputs(tmp_path)
  (lineage / "z.json").write_text("{")
  with pytest.raises(ValueError, match="z.json: not valid JSON"):
    run_outputs.load_run_outputs(tmp_path)
