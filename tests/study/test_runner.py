"""The study runner: headline numbers from audits, and a study that resumes without redoing finished work."""

from __future__ import annotations

import dataclasses
import json

import pytest
from flax import nnx

from govjax.core.config import TrainConfig, config_hash
from govjax.study import runner
from govjax.study.methods import RunSpec
from govjax.study.runner import cached_config_matches, memorization_summary, panel_memorization, run_study
from govjax.train import data as training_data
from govjax.train.loop import evaluate_nll, restore_model
from govjax.train.step import make_eval_step
from tests.study.test_pipeline import tiny_study


def _row(work_id, split, licence_class, extraction, audited):
  return {"work_id": work_id, "split": split, "licence_class": licence_class, "extraction_rate": extraction,
          "token_match": 0.5, "mean_loss": 1.0, "num_audited": audited}


def test_memorization_summary_groups_and_membership():
  rows = [
      _row("a", "train", "restrictive", 1.0, 3),
      _row("b", "train", "unknown", 0.0, 1),
      _row("c", "train", "permissive", 0.5, 2),
      _row("canary/r1/0", "train", "restrictive", 1.0, 5),
      _row("h", "heldout", "permissive", 0.25, 4),
  ]
  summary = {
      "membership": {"auc": 0.9, "tpr_at_1pct_fpr": 0.2, "tpr_at_0.1pct_fpr": 0.1},
      "membership_by_class": {"restrictive": {"auc": 0.8, "num_members": 3},
                              "unknown": {"auc": 0.4, "num_members": 1},
                              "canary": {"auc": 1.0, "num_members": 5},
                              "works": {"auc": 0.6, "num_members": 6}},
      "exposure": None,
  }
  out = memorization_summary(summary, rows)
  assert out["extraction_restricted"] == pytest.approx(0.75)  # window-weighted, canaries left out
  assert out["works_restricted"] == 2 and out["extraction_canary"] == 1.0
  assert out["extraction_permissive"] == 0.5 and out["extraction_heldout"] == 0.25
  assert out["mia_auc"] == 0.9 and out["mia_auc_works"] == 0.6
  assert out["mia_auc_restricted"] == pytest.approx((0.8 * 3 + 0.4 * 1) / 4)


def test_memorization_summary_without_membership_by_class():
  out = memorization_summary({"membership": None, "exposure": None}, [_row("h", "heldout", "permissive", 0.0, 1)])
  assert out["mia_auc"] is None and out["mia_auc_works"] is None and out["mia_auc_restricted"] is None
  assert out["extraction_restricted"] is None


def test_panel_memorization_counts_members_only():
  panel = {"windows": [
      {"work_id": "a", "start": 0, "split": "train", "member": True, "licence_class": "restrictive", "loss": 0.1,
       "exact": True, "token_match": 1.0, "edit_similarity": 1.0},
      {"work_id": "b", "start": 0, "split": "train", "member": False, "licence_class": "restrictive", "loss": 0.1,
       "exact": True, "token_match": 1.0, "edit_similarity": 1.0},
      {"work_id": "h", "start": 0, "split": "heldout", "member": False, "licence_class": "permissive", "loss": 1.0,
       "exact": False, "token_match": 0.5, "edit_similarity": None}],
      "canaries": [{"canary": "random/r4/0", "kind": "random", "repetitions": 4, "exact": False, "exposure": 12.5}]}
  out = panel_memorization(panel)
  assert out["works_restricted"] == 1 and out["extraction_restricted"] == 1.0 and out["extraction_heldout"] == 0.0
  assert out["edit_similarity_heldout"] is None and out["mia_auc_works"] == 1.0
  assert out["exposure"] == {"by_repetitions": {"random x4": 12.5}}


def test_an_interrupted_study_resumes_without_redoing_runs_or_audits(prepared_data_dir, tmp_path, monkeypatch):
  study = tiny_study(prepared_data_dir, runs=(RunSpec("vanilla"),))
  study = type(study)(**{**study.__dict__, "curve_steps": (), "trace_methods": (), "num_samples": 0})
  first = run_study(study, tmp_path, progress=None)
  entry = tmp_path / "runs" / "vanilla-s0" / "study_entry.json"
  metrics = (tmp_path / "runs" / "vanilla-s0" / "metrics.jsonl").read_text()

  def refuse(*args, **kwargs):
    raise AssertionError("redone")

  monkeypatch.setattr(runner, "train", refuse)
  monkeypatch.setattr(runner, "audit_panel", refuse)
  second = run_study(study, tmp_path, progress=None)  # finished run: read back, nothing trained or audited
  assert second["runs"][0]["panel"] == first["runs"][0]["panel"]
  entry.unlink()  # a run whose entry was never written (interrupted after its audit): training resumes at its
  monkeypatch.undo()  # last checkpoint (no step left), the audit is read back
  monkeypatch.setattr(runner, "audit_panel", refuse)
  third = run_study(study, tmp_path, progress=None)
  assert third["runs"][0]["panel"] == first["runs"][0]["panel"]
  assert (tmp_path / "runs" / "vanilla-s0" / "metrics.jsonl").read_text() == metrics
  assert json.loads(entry.read_text())["val_nll"] == first["runs"][0]["val_nll"]


def test_a_run_recorded_before_a_config_field_existed_is_reused_and_another_config_is_not(tmp_path):
  config = TrainConfig(name="old", num_steps=7)
  recorded = config.to_dict()
  del recorded["governance"]["surface"]  # a field added after the run, whose default keeps the old behaviour
  old_hash = "0123456789abcdef"
  (tmp_path / "config.json").write_text(json.dumps({"config": recorded, "config_hash": old_hash}))
  entry = {"config_hash": old_hash}
  assert cached_config_matches(entry, tmp_path, config)
  assert not cached_config_matches(entry, tmp_path, dataclasses.replace(config, num_steps=8))
  assert not cached_config_matches({"config_hash": "another"}, tmp_path, config)  # entry of another record
  assert cached_config_matches({"config_hash": config_hash(config)}, tmp_path / "absent", config)


@pytest.mark.slow
def test_a_sink_run_reports_the_nll_of_the_deployed_model(prepared_data_dir, tmp_path):
  study = tiny_study(prepared_data_dir, runs=(RunSpec("sink"),))
  study = type(study)(**{**study.__dict__, "curve_steps": (), "trace_methods": (), "num_samples": 0})
  entry = run_study(study, tmp_path, progress=None)["runs"][0]
  workdir = tmp_path / "runs" / "sink-s0"
  model, config, _ = restore_model(workdir, keep_region=True)
  graphdef, params = nnx.split(model)
  data = training_data.build_training_data(config, works=runner.study_works(study, config))
  with_region = evaluate_nll(make_eval_step(graphdef), params, data.batches.validation(config.eval_max_batches))
  assert entry["val_nll_with_region"] == pytest.approx(with_region, rel=1e-6)  # what training reported
  assert entry["val_nll"] == pytest.approx(runner.deployed_val_nll(workdir, data, config.eval_max_batches))
  assert entry["val_nll"] != pytest.approx(with_region, rel=1e-6)  # the region is really dropped
