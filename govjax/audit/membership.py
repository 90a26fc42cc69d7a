"""Loss-based membership inference: can a threshold on the loss tell training windows from held-out ones?

The attack scores each window by minus its loss (training members should have lower loss) and sweeps the
threshold (``sklearn.metrics.roc_curve``). Reported: the ROC AUC and, as Carlini et al. (2022, LiRA) recommend,
the true-positive rate at low false-positive rates (0.1% and 1%): the largest TPR over thresholds whose FPR does
not exceed the target. With fewer than ``1 / fpr`` non-members the only reachable FPR below the target is 0, so
``min_resolvable_fpr = 1 / num_nonmembers`` is reported as well.

Example:
  >>> result = membership_inference([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
  >>> result["auc"], result["tpr_at_1pct_fpr"]
  (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

FPR_TARGETS = {"tpr_at_0.1pct_fpr": 0.001, "tpr_at_1pct_fpr": 0.01}


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
  """Largest TPR on the ROC curve with FPR <= ``target``."""
  ok = np.asarray(fpr) <= target + 1e-12
  return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def membership_inference(member_losses: Sequence[float], nonmember_losses: Sequence[float]) -> dict:
  """The loss-threshold attack's ROC summary.

  Args:
    member_losses: losses of training windows.
    nonmember_losses: losses of held-out windows.

  Returns:
    ``{"auc", "tpr_at_0.1pct_fpr", "tpr_at_1pct_fpr", "num_members", "num_nonmembers",
    "min_resolvable_fpr"}``; the rates are NaN when either side is empty. NaN losses are skipped and counted
    in ``num_skipped``.
  """
  members = np.asarray(member_losses, np.float64).ravel()
  nonmembers = np.asarray(nonmember_losses, np.float64).ravel()
  skipped = int(np.isnan(members).sum() + np.isnan(nonmembers).sum())
  members, nonmembers = members[~np.isnan(members)], nonmembers[~np.isnan(nonmembers)]
  result = {"num_members": int(members.size), "num_nonmembers": int(nonmembers.size), "num_skipped": skipped,
            "min_resolvable_fpr": float(1.0 / nonmembers.size) if nonmembers.size else float("nan")}
  if not members.size or not nonmembers.size:
    result.update({"auc": float("nan"), **{k: float("nan") for k in FPR_TARGETS}})
    return result
  labels = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
  scores = -np.concatenate([members, nonmembers])
  fpr, tpr, _ = roc_curve(labels, scores)
  result["auc"] = float(roc_auc_score(labels, scores))
  for key, target in FPR_TARGETS.items():
    result[key] = tpr_at_fpr(fpr, tpr, target)
  return result
