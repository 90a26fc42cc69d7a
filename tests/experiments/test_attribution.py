"""The attribution experiment on a toy size: the results' schema, the figure, and a second run that resumes from
the cache (retrains nothing, same numbers)."""

from __future__ import annotations

import json

import pytest

from experiments.attribution import AttributionConfig, plot, run
from govjax.core.config import ModelSpec, TrainConfig
from govjax.data import chorales


def toy_config() -> AttributionConfig:
  return AttributionConfig(
      train=TrainConfig(name="attribution-test", model=ModelSpec(num_layers=1, width=16, num_heads=2, context=32),
                        batch_size=8, num_steps=4, learning_rate=1e-2, warmup_steps=1, window_stride=32),
      train_works=5, calibration_works=2, queries_per_work=2, subsets=2, seeds_per_subset=1, models=1,
      checkpoints=2, k=32, dampings=(0.1,), ngrams=(8,), outputs=2, removal_k=1, random_draws=2,
      removal_seeds=(1,), resamples=50)


@pytest.mark.slow
def test_toy_run_writes_the_schema_and_resumes_from_its_cache(prepared_data_dir, tmp_path):
  works = {s: chorales.load_chorale_works(prepared_data_dir, s) for s in ("train", "validation", "test")}
  lines = []
  results = run(toy_config(), tmp_path / "work", works=works, log=lines.append)
  assert results["subsets"] == 2 and results["queries"] == 4
  assert set(results["lds"]) >= {"tracin", "tracin_adam", "trak"}
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
  assert sum("subset" in line for line in lines) == 2
  json.dumps(results)  # JSON-able
  plot(results, tmp_path / "figure.png")
  assert (tmp_path / "figure.png").stat().st_size > 0
  # A second run retrains nothing and gives the same numbers.
  again = []
  assert run(toy_config(), tmp_path / "work", works=works, log=again.append)["lds"] == results["lds"]
  assert not [line for line in again if line.startswith(("subset", "removal", "features"))]
