"""The study job end to end on the tiny prepared dataset: runs, audits, traces, manifest, lookup, report."""

import json

import pytest

from govjax.core.config import CanarySpec, GovernanceSpec, ModelSpec, TrainConfig
from govjax.study.methods import METHODS, RunSpec, StudyConfig, method_config
from govjax.study.pipeline import run_pipeline


def tiny_study(data_dir, runs=None, seeds=()):
  base = TrainConfig(
      name="study-test", data_dir=str(data_dir), max_works=12,
      model=ModelSpec(num_layers=1, width=16, num_heads=2, context=32),
      governance=GovernanceSpec(scenario="default"), canaries=CanarySpec(count=1, repeats=(2,), frames=8),
      batch_size=4, num_steps=4, learning_rate=1e-2, warmup_steps=1, window_stride=32, eval_every=4,
      eval_max_batches=1, checkpoint_every=2, seed=0)
  runs = runs or (RunSpec("vanilla"), RunSpec("depth"))
  return StudyConfig(name="test", base=base, runs=runs, seeds=seeds, audit_k=8, audit_m=8,
                     audit_max_windows_per_work=1, curve_steps=None, trace_methods=("depth",), trace_outputs=3,
                     trace_k=16, num_samples=1, lookup_works=2)


def test_every_method_builds_a_valid_config():
  base = TrainConfig()
  for name in METHODS:
    config = method_config(base, name, seed=2)
    assert config.seed == 2 and config.name.endswith(name)
  with pytest.raises(ValueError, match="unknown study method"):
    method_config(base, "nope")


def test_pipeline_writes_results_figures_report(prepared_data_dir, tmp_path):
  report = run_pipeline(tiny_study(prepared_data_dir, seeds=(0, 1)), tmp_path / "study")
  out = tmp_path / "study"
  results = json.loads((out / "results.json").read_text())
  assert [r["run"] for r in results["runs"]] == ["vanilla-s0", "depth-s0", "vanilla-s1", "depth-s1"]
  for run in results["runs"]:
    assert run["val_nll"] > 0 and run["curve"] and [c["step"] for c in run["curve"]] == [2, 4]
    assert (out / run["workdir"] / "audit" / "panel.json").is_file()
    assert run["memorization"]["works_canary"] == 1  # one distinct canary (planted twice)
    heldout = [w for w in run["panel"]["windows"] if w["split"] == "heldout"]
    assert heldout and not any(w["member"] for w in heldout)
  evidence = json.loads((out / "study.json").read_text())
  assert evidence["seeds"] == [0, 1] and set(evidence["methods"]) == {"vanilla", "depth"}
  nll = evidence["methods"]["vanilla"]["val_nll"]
  assert nll["n_seeds"] == 2 and nll["ci95"][0] <= nll["mean"] <= nll["ci95"][1]
  assert "val_nll" in evidence["paired"]["depth-vs-vanilla"]
  assert evidence["raw"]["depth-s1"]["seed"] == 1
  depth = results["runs"][1]
  assert depth["provenance"]["recall_at_1"] is not None
  assert (out / "manifest").is_dir() and (out / "lookup.json").is_file()
  lookup = json.loads((out / "lookup.json").read_text())
  assert lookup["by_transformation"]["musicxml"] == 1.0
  assert (out / "figures" / "extraction_over_training.png").is_file()
  html = report.read_text()
  assert "Utility vs memorization" in html and "vanilla" in html
  assert "Evidence" in html and (out / "figures" / "evidence_intervals.png").is_file()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_end_to_end(prepared_data_dir, tmp_path, method):
  import math

  from govjax.train.data import build_training_data
  from govjax.train.loop import train

  study = tiny_study(prepared_data_dir)
  config = method_config(study.base, method, knob=("num_steps=2", "checkpoint_every=2", "eval_every=2"))
  data = build_training_data(config)
  result = train(config, tmp_path / method, data=data, progress=False)
  assert int(result.state.step) == 2 and math.isfinite(result.val_nll)
  rows = [json.loads(x) for x in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
  assert all(math.isfinite(r["loss"]) for r in rows)
  if method == "depth_probe":
    assert any(k.startswith("probe/") for k in rows[-1])
  if method == "dedup":
    assert data.catalogue.report["deduplication"]["num_works"] >= len(data.catalogue.works)
