"""Loss-based membership inference: can a threshold on the loss tell training windows from held-out ones?

The attack scores each window by minus its loss (training members should have lower loss) and sweeps the
threshold (``sklearn.metrics.roc_curve``). Reported: the ROC AUC and, as Carlini et al. (2022, LiRA) recommend,
the true-positive rate at low false-positive rates (0.1% and 1%): the largest TPR over thresholds whose FPR does
not exceed the target. With fewer than ``1 / fpr`` non-members the only reachable FPR below the target is 0, so
``min_resolvable_fpr = 1 / num_nonmembers`` is reported as well.

Three further pieces make the attack mean something at a small scale:

- :func:`resolvable_tpr`: TPR only at false-positive rates the non-members can resolve (``fpr >= 1 / n``).
- :func:`per_work_scores`: a work's score is the mean over its windows (membership of a *work*, not a window).
- :func:`reference_scores`: the offline LiRA idea (Carlini et al. 2022): calibrate each item's loss against a
  reference model that never trained on it (score = reference loss - target loss), so items that are merely easy
  (low loss for every model) no longer look like members.

Example:
  >>> result = membership_inference([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
  >>> result["auc"], result["tpr_at_1pct_fpr"]
  (1.0, 1.0)
  >>> resolvable_tpr([3.0, 2.0, 0.1], [1.0, 0.0, -1.0, 0.2], fprs=(0.01, 0.25, 0.5))
  {'0.25': 0.6667, '0.5': 1.0}
  >>> per_work_scores([1.0, 3.0, 5.0], ["a", "a", "b"])
  {'a': 2.0, 'b': 5.0}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["FPR_TARGETS", "RESOLVABLE_FPRS", "membership_inference", "per_work_scores", "reference_scores",
           "resolvable_tpr", "tpr_at_fpr"]

FPR_TARGETS = {"tpr_at_0.1pct_fpr": 0.001, "tpr_at_1pct_fpr": 0.01}
RESOLVABLE_FPRS = (0.001, 0.01, 0.05, 0.1, 0.25)


def resolvable_tpr(member_scores: Sequence[float], nonmember_scores: Sequence[float], *,
                   fprs: Sequence[float] = RESOLVABLE_FPRS) -> dict[str, float]:
  """TPR at each target FPR the sample resolves (``fpr >= 1 / num_nonmembers``); higher score = member.

  The threshold is the smallest score that keeps at most ``floor(fpr * n)`` non-members above or at it.

  Args:
    member_scores: scores of members.
    nonmember_scores: scores of non-members.
    fprs: target false-positive rates.

  Returns:
    ``{str(fpr): tpr}`` (rounded to 4 places) for the resolvable targets only.
  """
  members = np.asarray(member_scores, np.float64)
  nonmembers = np.sort(np.asarray(nonmember_scores, np.float64))[::-1]
  n = nonmembers.size
  out = {}
  for fpr in fprs:
    allowed = int(np.floor(fpr * n + 1e-9))
    if n == 0 or allowed < 1:
      continue
    threshold = nonmembers[allowed] if allowed < n else -np.inf  # members must score above it
    out[str(fpr)] = round(float(np.mean(members > threshold)), 4) if members.size else float("nan")
  return out


def per_work_scores(scores: Sequence[float], works: Sequence) -> dict[str, float]:
  """Mean score of each work over its windows: ``{work: mean}`` (NaN scores skipped)."""
  scores = np.asarray(scores, np.float64)
  works = np.asarray([str(w) for w in works])
  out = {}
  for work in dict.fromkeys(works.tolist()):
    values = scores[works == work]
    values = values[np.isfinite(values)]
    if values.size:
      out[work] = float(values.mean())
  return out


def reference_scores(target_losses: Sequence[float], reference_losses: Sequence[float]) -> np.ndarray:
  """Reference-calibrated membership scores: ``reference loss - target loss`` (higher = member).

  Args:
    target_losses: losses under the audited model.
    reference_losses: losses of the same items under a model that never trained on them.

  Returns:
    float ``[N]``.
  """
  target = np.asarray(target_losses, np.float64)
  reference = np.asarray(reference_losses, np.float64)
  if target.shape != reference.shape:
    raise ValueError(f"target ({target.shape}) and reference ({reference.shape}) losses differ in shape")
  return reference - target


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
