"""The premise experiment on a toy size: runs, leakage, caching and the summary's shape."""

from __future__ import annotations

import dataclasses
import json

import pytest

from govjax.study.premise import PremiseSpec, leakage_groups, run_sweep, summarise, treatments

SPEC = PremiseSpec(num_layers=1, width=16, num_heads=2, region_width=8, steps=4, batch_size=8, num_train=4,
                   num_heldout=2, windows=4, num_references=8, leak_steps=2, seeds=(0, 1), shares=(0.5,))


def test_leakage_retrains_what_restricted_works_trained():
  table = treatments(SPEC)
  assert leakage_groups(table["depth_1"], 3) == [2]
  assert leakage_groups(table["input_1"], 3) == [0]
  assert leakage_groups(table["full"], 3) == [2]
  assert {"exclude", "exclude_trunk", "full", "depth_1", "depth_2", "input_1", "region"} <= set(table)


def test_sweep_is_cached_and_summarised(tmp_path):
  names = ["exclude", "exclude_trunk", "depth_1"]
  records = run_sweep(SPEC, tmp_path, names=names, log=lambda _: None)
  assert len(records) == 6 and len(list(tmp_path.glob("*.json"))) == 6
  trunk = [r for r in records if r["name"] == "exclude_trunk"][0]
  assert trunk["steps"] == 2  # half the windows are permitted: half the steps give the same trunk data
  again = run_sweep(SPEC, tmp_path, names=names, log=lambda _: None)
  assert [r["wall_s"] for r in again] == [r["wall_s"] for r in records]  # read back, not rerun
  summary = summarise(records, SPEC, resamples=50)
  block = summary["treatments"]["depth_1"]
  assert summary["seeds"] == [0, 1]
  assert set(block) >= {"rule_gain", "secret_exposure", "mia_auc_restricted", "val_nll", "val_nll_minus_exclude"}
  assert summary["treatments"]["exclude"]["rule_gain"]["mean"] == 0.0
  assert "depth_1" in summary["trunk_leakage"]
  json.dumps(summary)


def test_cached_records_of_other_sizes_are_refused(tmp_path):
  run_sweep(SPEC, tmp_path, names=["exclude"], log=lambda _: None)
  longer = dataclasses.replace(SPEC, steps=5)
  assert longer.run_key != SPEC.run_key
  assert dataclasses.replace(SPEC, seeds=(0, 1, 2)).run_key == SPEC.run_key  # which seeds run is not a size
  with pytest.raises(ValueError, match="run_key"):
    run_sweep(longer, tmp_path, names=["exclude"], log=lambda _: None)


def test_an_empty_treatment_list_runs_only_the_restricted_share_runs(tmp_path):
  spec = dataclasses.replace(SPEC, seeds=(0,), shares=(0.25, 0.5), share_treatments=("exclude",))
  records = run_sweep(spec, tmp_path, names=[], log=lambda _: None)
  assert [(r["name"], r["share"]) for r in records] == [("exclude", 0.25)]
