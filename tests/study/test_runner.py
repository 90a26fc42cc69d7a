"""memorization_summary: the study's headline numbers from constructed audit results."""

from __future__ import annotations

import pytest

from govjax.study.runner import memorization_summary


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
