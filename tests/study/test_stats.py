"""The study's evidence: intervals that can fail, paired differences, resolvable rates, counterfactuals."""

from __future__ import annotations

import numpy as np
import pytest

from govjax.core.intervals import verdict
from govjax.study.stats import matched_utility, method_name, per_work_metrics, seed_group_statistic, study_evidence


def _panel(rng, *, member_shift: float, trained: bool, exact_members: bool, works: int = 12, heldout: int = 12,
           canaries: tuple = ()) -> dict:
  windows = []
  for w in range(works):
    for s in (0, 160):
      windows.append({"work_id": f"r{w}", "start": s, "split": "train", "member": trained,
                      "licence_class": "restrictive", "loss": float(1.0 - member_shift + 0.1 * rng.normal()),
                      "exact": bool(exact_members and s == 0), "edit_similarity": 0.8, "token_match": 0.8})
  for w in range(heldout):
    for s in (0, 160, 320):
      windows.append({"work_id": f"h{w}", "start": s, "split": "heldout", "member": False, "licence_class": "x",
                      "loss": float(1.0 + 0.1 * rng.normal()), "exact": False, "edit_similarity": 0.7,
                      "token_match": 0.7})
  return {"windows": windows, "canaries": list(canaries)}


def _runs(vanilla_shift: float, seeds=(0, 1, 2)) -> list[dict]:
  rng = np.random.default_rng(0)
  runs = []
  for s in seeds:
    canary = [{"canary": f"random/r4/{i}", "kind": "random", "repetitions": 4, "loss": 1.0, "exact": False,
               "exposure": 20.0 + i, "exposure_rank": 9.97} for i in range(3)]
    runs.append({"run": f"vanilla-s{s}", "seed": s, "val_nll": 1.0 + 0.01 * s,
                 "panel": _panel(rng, member_shift=vanilla_shift, trained=True, exact_members=True,
                                 canaries=canary)})
    runs.append({"run": f"exclude-s{s}", "seed": s, "val_nll": 1.1 + 0.01 * s,
                 "panel": _panel(rng, member_shift=0.0, trained=False, exact_members=False)})
    runs.append({"run": f"dpsgd-dp_noise1.0-s{s}", "seed": s, "val_nll": 1.3, "privacy": {"epsilon": 2.0},
                 "panel": _panel(rng, member_shift=0.0, trained=True, exact_members=False)})
  return runs


def test_a_real_gap_is_supported_and_no_gap_is_not():
  evidence = study_evidence(_runs(0.3), resamples=300)
  vanilla = evidence["methods"]["vanilla"]
  assert vanilla["mia_auc_works"]["mean"] > 0.95 and verdict(vanilla["mia_auc_works"]["ci95"], null=0.5) == "supported"
  assert vanilla["lira_auc_restricted_works"]["mean"] > 0.95
  dp = evidence["methods"]["dpsgd-dp_noise1.0"]
  assert verdict(dp["mia_auc_works"]["ci95"], null=0.5) == "not resolved"  # the same attack on no signal
  assert dp["epsilon"]["mean"] == 2.0
  # Counterfactual extraction: vanilla reproduces the first window of each restricted work, the reference none.
  assert vanilla["counterfactual_extraction_restricted"]["mean"] == pytest.approx(0.5)
  assert "counterfactual_extraction_restricted" not in evidence["methods"]["exclude"]
  paired = evidence["paired"]["dpsgd-dp_noise1.0-vs-vanilla"]
  assert verdict(paired["mia_auc_works"]["ci95"], direction="less") == "supported"
  assert verdict(paired["val_nll"]["ci95"]) == "supported"
  assert evidence["canary_levels"] == [4] and evidence["canaries_per_level"] == 3
  assert vanilla["exposure_random_r4"]["mean"] == pytest.approx(21.0)
  # Every method against the baseline and against the reference (the run that never saw restricted works).
  assert set(evidence["paired"]) == {"dpsgd-dp_noise1.0-vs-vanilla", "exclude-vs-vanilla",
                                     "dpsgd-dp_noise1.0-vs-exclude"}
  assert evidence["paired"]["dpsgd-dp_noise1.0-vs-exclude"]["val_nll"]["mean_diff"] == pytest.approx(0.19)


def test_without_a_gap_the_interval_covers_chance():
  evidence = study_evidence(_runs(0.0), resamples=300)
  auc = evidence["methods"]["vanilla"]["mia_auc_works"]
  assert auc["ci95"][0] < 0.5 < auc["ci95"][1]


def test_tpr_only_where_the_non_members_resolve_it():
  evidence = study_evidence(_runs(0.3), resamples=100)
  keys = [k for k in evidence["methods"]["vanilla"] if k.startswith("mia_tpr_at_") and k.endswith("_works")
          and "restricted" not in k]
  assert keys and all(float(k.split("_")[3]) >= 1 / 12 for k in keys)  # 12 held-out works: FPR >= 1/12 only


def test_per_work_metrics_without_reference_has_no_counterfactual():
  rng = np.random.default_rng(1)
  out = per_work_metrics(_panel(rng, member_shift=0.2, trained=True, exact_members=True))
  assert "counterfactual_extraction_restricted" not in out["per_work"]
  assert out["per_work"]["extraction_restricted"]["r0"] == 0.5
  assert set(out["auc"]["mia_auc_works"]["members"]) == {f"r{i}" for i in range(12)}


def test_seed_group_statistic_interval_widens_with_fewer_works():
  def inputs(n):
    grid = np.linspace(-1.0, 1.0, n)
    scores = {f"m{i}": grid[i] + 0.5 for i in range(n)} | {f"n{i}": grid[i] for i in range(n)}
    return {0: {"scores": scores, "members": [f"m{i}" for i in range(n)], "nonmembers": [f"n{i}" for i in range(n)]}}

  def auc(m, n):
    return float((m[:, None] > n[None, :]).mean())

  wide = seed_group_statistic(inputs(8), auc, resamples=300)
  narrow = seed_group_statistic(inputs(200), auc, resamples=300)
  assert (wide["ci95"][1] - wide["ci95"][0]) > 2 * (narrow["ci95"][1] - narrow["ci95"][0])


def test_matched_utility_reads_the_dp_curve():
  methods = {"dpsgd-a": {"val_nll": {"mean": 1.0}, "mia_auc_works": {"mean": 0.8}},
             "dpsgd-b": {"val_nll": {"mean": 2.0}, "mia_auc_works": {"mean": 0.6}},
             "depth": {"val_nll": {"mean": 1.5}, "mia_auc_works": {"mean": 0.55}},
             "vanilla": {"val_nll": {"mean": 0.9}, "mia_auc_works": {"mean": 0.9}}}
  out = matched_utility(methods)
  assert out["depth"]["dpsgd_at_same_val_nll"]["mia_auc_works"] == pytest.approx(0.7)
  assert out["vanilla"]["dpsgd_at_same_val_nll"]["mia_auc_works"] is None  # outside the curve
  assert method_name({"run": "dpsgd-dp_noise0.5-s2"}) == "dpsgd-dp_noise0.5"
