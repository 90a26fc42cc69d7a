"""The committed attribution evidence (experiments/results/attribution*.json) has the issue's schema and is
internally consistent: every interval contains its mean, the verdicts follow from the numbers."""

from __future__ import annotations

import json
import pathlib

import pytest

RESULTS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "results"


def load(name: str) -> dict:
  return json.loads((RESULTS / name).read_text())


@pytest.mark.parametrize("name", ["attribution.json", "attribution_routed.json"])
def test_schema_and_intervals(name):
  results = load(name)
  assert results["subsets"] >= 50 and results["queries"] >= 100
  assert {"tracin", "tracin_adam", "trak", "trak_exact"} <= set(results["lds"])
  assert {"ngram8", "kept_windows"} <= set(results["baselines"])
  for entry in [*results["lds"].values(), *results["baselines"].values(),
                results["removal"]["top_k_over_random_k"], results["removal"]["top_k_minus_random_k"]]:
    assert entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
  assert results["default_scorer"] == results["calibration"]["choice"]["default"] == results["removal"]["scorer"]
  lineages = results["removal"]["lineages"]
  assert lineages["shown_to_matter"] == sum(row["shown_to_matter"] for row in lineages["outputs"])
  assert len(lineages["outputs"]) == results["removal"]["outputs"]


def test_the_unrouted_verdicts_follow_from_the_numbers():
  results = load("attribution.json")
  default = results["default_scorer"]
  best, trak = results["lds"][default], results["lds"]["trak"]
  assert (results["verdicts"]["interval_above_trak_interval"] == "met") == (best["ci95"][0] > trak["ci95"][1])
  assert (results["verdicts"]["removal_ratio_at_least_3"] == "met") == (
      results["removal"]["top_k_over_random_k"]["ci95"][0] >= 3)
  assert results["datamodel_subsets"] >= 1 and len(results["removal"]["seeds"]) >= 3


def test_the_routed_run_compares_depth_aware_and_depth_blind_credit():
  results = load("attribution_routed.json")
  assert set(results["paired_depth_aware"]) == {"tracin_minus_tracin_unmasked",
                                                "tracin_adam_minus_tracin_adam_unmasked"}
  assert results["settings"]["train"]["governance"]["routing"] == "depth"
