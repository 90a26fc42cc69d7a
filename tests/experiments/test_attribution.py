"""The attribution experiment on a toy size: the results' schema, the figure, and a second run that resumes from
the cache (retrains nothing, same numbers)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from experiments.attribution import AttributionConfig, plot, run
from experiments.attribution_retrains import select_works, selected_work_index, with_fixed_scenario
from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig
from govjax.data import chorales
from govjax.provenance.record import read_training_record
from govjax.train.data import build_training_data


def toy_config() -> AttributionConfig:
  return AttributionConfig(
      train=TrainConfig(name="attribution-test", model=ModelSpec(num_layers=1, width=16, num_heads=2, context=32),
                        batch_size=8, num_steps=4, learning_rate=1e-2, warmup_steps=1, window_stride=32,
                        governance=GovernanceSpec(routing="depth", scenario="default")),
      train_works=5, calibration_works=2, queries_per_work=2, subsets=2, seeds_per_subset=1, models=1,
      checkpoints=2, k=32, dampings=(0.1,), ngrams=(8,), outputs=2, removal_k=1, random_draws=2,
      removal_seeds=(1,), resamples=50, datamodel_subsets=3, ridges=(1.0, 10.0))


@pytest.mark.slow
def test_toy_run_writes_the_schema_and_resumes_from_its_cache(prepared_data_dir, tmp_path):
  works = {s: chorales.load_chorale_works(prepared_data_dir, s) for s in ("train", "validation", "test")}
  lines = []
  results = run(toy_config(), tmp_path / "work", works=works, log=lines.append)
  assert results["subsets"] == 2 and results["queries"] == 4
  assert set(results["lds"]) >= {"tracin", "tracin_adam", "trak", "trak_exact_final", "trak_exact", "datamodels",
                                  "datamodels_trak_exact_prior",
                                  "tracin_unmasked", "tracin_adam_unmasked"}  # routed: depth-blind variants too
  assert set(results["paired_depth_aware"]) == {"tracin_minus_tracin_unmasked",
                                                "tracin_adam_minus_tracin_adam_unmasked"}
  assert results["datamodel_subsets"] == 3 and set(results["calibration"]["choice"]["dampings"]) == {
      "trak", "trak_exact_final", "trak_exact"}
  assert results["default_scorer"] == results["calibration"]["choice"]["default"]
  assert set(results["baselines"]) == {"ngram8", "kept_windows"}
  for entry in [*results["lds"].values(), *results["baselines"].values()]:
    assert entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
  assert results["removal"]["scorer"] == results["default_scorer"]
  removal = results["removal"]
  assert set(removal["top_k_over_random_k"]) >= {"mean", "ci95"}
  assert removal["seeds"] == [1] and len(removal["random_k_rise"]) == 2 and set(removal["reference_nll"]) == {"1"}
  # Rises are taken against the same seed's retrain on every work, never against the model that sampled.
  assert removal["top_k_minus_random_k"]["mean"] == pytest.approx(
      sum(a - b for a, b in zip(removal["per_scorer"][removal["scorer"]]["top_k_rise"], removal["random_k_rise"],
                                strict=True)) / 2)
  features = np.load(tmp_path / "work" / "features-0.npz")
  masks = read_training_record(tmp_path / "work" / "full-0", num_examples=len(features["example_work"])).masks
  below = (masks == 0).any(axis=(0, 2))
  assert 0 < below.sum() < len(below)  # some examples trained below the full depth, and only some
  assert not np.allclose(features["raw"], features["raw_unmasked"])
  lineages = removal["lineages"]
  assert len(lineages["outputs"]) == 2 and lineages["shown_to_matter"] == sum(
      row["top_k_rise"] > row["random_k_rise_max"] for row in lineages["outputs"])
  for row, removed in zip(lineages["outputs"], removal["per_scorer"][removal["scorer"]]["top_k_rise"], strict=True):
    assert row["top_k_rise"] == pytest.approx(removed) and len(row["works"]) == 1 and "basis" in row["duties"]
  assert sum(line.startswith("subset") for line in lines) == 2
  assert sum(line.startswith("datamodel subset") for line in lines) == 3
  json.dumps(results)  # JSON-able
  plot(results, tmp_path / "figure.png")
  assert (tmp_path / "figure.png").stat().st_size > 0
  # A second run retrains nothing and gives the same numbers.
  again = []
  assert run(toy_config(), tmp_path / "work", works=works, log=again.append)["lds"] == results["lds"]
  assert not [line for line in again if line.startswith(("subset", "removal", "features", "datamodel", "gradient"))]


def test_examples_of_a_routed_run_index_the_selected_works_not_the_kept_ones():
  selected = [SimpleNamespace(work_id=name) for name in ("a", "b", "c", "d")]
  kept = [selected[0], selected[2], selected[3]]  # the policy excluded "b"
  np.testing.assert_array_equal(selected_work_index(np.array([0, 0, 1, 2]), kept, selected), [0, 0, 2, 3])
  with pytest.raises(ValueError, match="not among the selected"):
    selected_work_index(np.array([0]), [SimpleNamespace(work_id="z")], selected)


def test_a_simulated_scenario_is_fixed_once_for_every_retrain_seed_and_subset(prepared_data_dir, tmp_path):
  works = {s: chorales.load_chorale_works(prepared_data_dir, s) for s in ("train", "validation", "test")}
  config = toy_config()
  selected = select_works(works, config)["train"]
  fixed = with_fixed_scenario(config, selected, tmp_path)
  assert fixed.train.governance.scenario == str((tmp_path / "rights_scenario.jsonl").resolve())
  assert with_fixed_scenario(fixed, selected, tmp_path) == fixed  # already a file: unchanged

  def treatment(cfg, seed, kept):
    data = build_training_data(dataclasses.replace(cfg.train, seed=seed),
                               works={"train": kept, "validation": [], "test": []})
    return {w.work_id: int(d) for w, d in zip(data.catalogue.works, data.catalogue.per_work_depth, strict=True)}

  every = treatment(fixed, 0, selected)
  assert treatment(fixed, 1, selected) == every
  assert treatment(fixed, 2, selected[1:]) == {k: v for k, v in every.items() if k != selected[0].work_id}
  # Without fixing it, the seed redraws the rights (some seed among a few gives another assignment).
  assert any(treatment(config, seed, selected) != treatment(config, 0, selected) for seed in (1, 2, 3))
