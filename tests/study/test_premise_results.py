"""The committed premise evidence: the fields issue #18 asks for, seeds and intervals everywhere, and the
replication of the restricted-share runs on fresh seeds."""

from __future__ import annotations

import json
import pathlib

import pytest

PREMISE = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "results" / "premise.json"
METRICS = ("rule_gain", "secret_exposure", "mia_auc_restricted", "val_nll")


@pytest.fixture(scope="module")
def premise() -> dict:
  return json.loads(PREMISE.read_text())


def _check_block(block: dict, seeds: list[int], where: str) -> None:
  for metric in METRICS:
    entry = block[metric]
    low, high = entry["ci95"]
    assert low <= entry["mean"] <= high, f"{where} {metric}"
    assert sorted(int(s) for s in entry["per_seed"]) == seeds, f"{where} {metric}"


def test_sweep_leakage_and_shares_have_every_metric_with_intervals_over_every_seed(premise):
  seeds = premise["seeds"]
  assert len(seeds) >= 3
  assert {"exclude", "full", "depth_1"} <= set(premise["treatments"])
  for name, block in premise["treatments"].items():
    _check_block(block, seeds, f"treatments/{name}")
  assert {"full", "depth_1"} <= set(premise["trunk_leakage"])
  for name, block in premise["trunk_leakage"].items():
    _check_block(block, seeds, f"trunk_leakage/{name}")
  assert set(premise["restricted_fraction"]) == {"0.2", "0.5", "0.8"}
  for share, blocks in premise["restricted_fraction"].items():
    assert {"exclude", "full", "depth_1"} <= set(blocks)
    for name, block in blocks.items():
      _check_block(block, seeds, f"restricted_fraction/{share}/{name}")


def test_replications_are_fresh_seeds_of_the_restricted_share_runs(premise):
  for replication in premise.get("replications", []):
    assert len(replication["seeds"]) >= 3
    for share, blocks in replication["restricted_fraction"].items():
      for name, block in blocks.items():
        _check_block(block, replication["seeds"], f"replication/{share}/{name}")
