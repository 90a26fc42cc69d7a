"""95% intervals the way govjax's evidence protocol asks for them: bootstrap over works (a work's windows are
resampled together) and over seeds, paired differences, and a plain verdict.

- :func:`work_bootstrap`: a statistic of per-window values, its interval from resampling *works* with replacement.
- :func:`grouped_auc`: ROC AUC of member vs non-member scores with a work-level bootstrap interval.
- :func:`seed_work_bootstrap`: a metric measured per (seed, work): resample seeds, then works within each seed.
- :func:`paired_difference`: method A minus method B on the same seeds and works, resampled together.
- :func:`clopper_pearson`: exact binomial interval (counts, e.g. false positives).
- :func:`verdict`: "supported" / "contradicted" / "not resolved" from an interval and the claimed direction.

Every function takes an explicit ``seed`` and returns plain floats (JSON-able):
``{"mean": x, "ci95": [lo, hi], "n": ...}``.

Example:
  >>> import numpy as np
  >>> values = np.array([1.0, 1.2, 0.9, 3.0, 3.1, 2.0])
  >>> works = np.array(["a", "a", "a", "b", "b", "c"])
  >>> out = work_bootstrap(values, works, seed=0)
  >>> round(out["mean"], 3), out["n_works"], out["ci95"][0] <= out["mean"] <= out["ci95"][1]
  (1.867, 3, True)
  >>> verdict([0.1, 0.4], direction="greater")
  'supported'
  >>> verdict([-0.1, 0.4], direction="greater")
  'not resolved'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["auc", "clopper_pearson", "grouped_auc", "members_auc", "paired_difference", "seed_work_bootstrap",
           "verdict", "work_bootstrap"]

DEFAULT_RESAMPLES = 2000


def _group_index(groups: Sequence[Any]) -> tuple[np.ndarray, int]:
  _, index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
  return index.astype(np.int64), int(index.max()) + 1 if len(index) else 0


def _interval(samples: np.ndarray, level: float) -> list[float]:
  samples = samples[np.isfinite(samples)]
  if samples.size == 0:
    return [float("nan"), float("nan")]
  alpha = (1.0 - level) / 2.0
  return [float(np.quantile(samples, alpha)), float(np.quantile(samples, 1.0 - alpha))]


def work_bootstrap(values: Sequence[float], works: Sequence[Any], *, statistic: Callable[[np.ndarray], float] = np.mean,
                   resamples: int = DEFAULT_RESAMPLES, level: float = 0.95, seed: int = 0) -> dict:
  """A statistic of per-window ``values`` with a bootstrap interval over works.

  Args:
    values: one value per window.
    works: the work of each window (windows of one work are resampled together).
    statistic: reduces the resampled windows' values (default: the mean over windows).
    resamples: bootstrap resamples.
    level: interval coverage.
    seed: the resampling seed.

  Returns:
    ``{"mean": statistic(values), "ci95": [lo, hi], "n_works": W, "n": len(values)}``.

  Raises:
    ValueError: ``values`` and ``works`` differ in length, or there are no values.
  """
  values = np.asarray(values, np.float64)
  index, num_works = _group_index(works)
  if values.shape != index.shape:
    raise ValueError(f"values ({values.shape[0]}) and works ({index.shape[0]}) differ in length")
  if values.size == 0:
    raise ValueError("work_bootstrap needs at least one value")
  members = [np.flatnonzero(index == w) for w in range(num_works)]
  rng = np.random.default_rng(seed)
  draws = np.empty(resamples)
  for r in range(resamples):
    chosen = rng.integers(0, num_works, size=num_works)
    draws[r] = statistic(values[np.concatenate([members[w] for w in chosen])])
  return {"mean": float(statistic(values)), "ci95": _interval(draws, level), "n_works": num_works,
          "n": int(values.size)}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """ROC AUC of ``scores`` for boolean ``labels`` (rank form, ties counted half); NaN without both classes.

  Example:
    >>> auc(np.array([True, False, True]), np.array([0.9, 0.1, 0.5]))
    1.0
  """
  labels = np.asarray(labels, bool)
  positives, negatives = labels.sum(), (~labels).sum()
  if positives == 0 or negatives == 0:
    return float("nan")
  ranks = stats.rankdata(scores)
  return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def members_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
  """:func:`auc` of member scores against non-member scores (higher = member); NaN when either is empty."""
  members, nonmembers = np.asarray(members, np.float64).ravel(), np.asarray(nonmembers, np.float64).ravel()
  labels = np.concatenate([np.ones(members.size, bool), np.zeros(nonmembers.size, bool)])
  return auc(labels, np.concatenate([members, nonmembers]))


def grouped_auc(scores: Sequence[float], labels: Sequence[bool], groups: Sequence[Any], *,
                resamples: int = DEFAULT_RESAMPLES, level: float = 0.95, seed: int = 0,
                versus: Sequence[float] | None = None) -> dict:
  """ROC AUC (higher score = member) with a bootstrap interval that resamples groups (works), members and
  non-members separately, so the resampled sets keep their sizes in works.

  Args:
    scores: one score per item (window or work).
    labels: True for members.
    groups: the work of each item.
    resamples: bootstrap resamples.
    level: interval coverage.
    seed: the resampling seed.
    versus: other scores of the same items: the paired difference ``AUC(scores) - AUC(versus)`` is resampled
      with the same draws.

  Returns:
    ``{"mean": AUC, "ci95": [lo, hi], "n_member_works", "n_nonmember_works", "n"}``, with ``versus`` also
    ``"minus_versus": {"mean", "ci95"}``.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels, bool)
  index, num_groups = _group_index(groups)
  member_groups = np.unique(index[labels])
  other_groups = np.unique(index[~labels])
  members = {g: np.flatnonzero((index == g) & labels) for g in member_groups}
  others = {g: np.flatnonzero((index == g) & ~labels) for g in other_groups}
  rng = np.random.default_rng(seed)
  other = None if versus is None else np.asarray(versus, np.float64)
  draws, differences = np.empty(resamples), np.empty(resamples)
  for r in range(resamples):
    pick_m = rng.choice(member_groups, size=member_groups.size) if member_groups.size else member_groups
    pick_o = rng.choice(other_groups, size=other_groups.size) if other_groups.size else other_groups
    rows = np.concatenate([members[g] for g in pick_m] + [others[g] for g in pick_o]).astype(np.int64)
    draws[r] = auc(labels[rows], scores[rows])
    if other is not None:
      differences[r] = draws[r] - auc(labels[rows], other[rows])
  out = {"mean": auc(labels, scores), "ci95": _interval(draws, level), "n_member_works": int(member_groups.size),
         "n_nonmember_works": int(other_groups.size), "n": int(scores.size)}
  if other is not None:
    out["minus_versus"] = {"mean": out["mean"] - auc(labels, other), "ci95": _interval(differences, level)}
  return out


def seed_work_bootstrap(per_seed: Mapping[Any, Mapping[Any, float]], *, resamples: int = DEFAULT_RESAMPLES,
                        level: float = 0.95, seed: int = 0) -> dict:
  """The mean of a metric measured per (seed, work), with a two-level bootstrap: seeds, then works within each.

  Args:
    per_seed: ``{seed: {work: value}}`` (each seed's works may differ).
    resamples: bootstrap resamples.
    level: interval coverage.
    seed: the resampling seed.

  Returns:
    ``{"mean", "ci95", "n_seeds", "per_seed": {seed: mean over works}}``.
  """
  if not per_seed:
    raise ValueError("seed_work_bootstrap needs at least one seed")
  arrays = {s: np.asarray(list(v.values()), np.float64) for s, v in per_seed.items()}
  if any(a.size == 0 for a in arrays.values()):
    raise ValueError("every seed needs at least one work")
  seeds = list(arrays)
  rng = np.random.default_rng(seed)
  draws = np.empty(resamples)
  for r in range(resamples):
    chosen = rng.integers(0, len(seeds), size=len(seeds))
    draws[r] = np.mean([rng.choice(arrays[seeds[c]], size=arrays[seeds[c]].size).mean() for c in chosen])
  per_seed_mean = {str(s): float(a.mean()) for s, a in arrays.items()}
  return {"mean": float(np.mean(list(per_seed_mean.values()))), "ci95": _interval(draws, level),
          "n_seeds": len(seeds), "per_seed": per_seed_mean}


def paired_difference(a: Mapping[Any, Mapping[Any, float]], b: Mapping[Any, Mapping[Any, float]], *,
                      resamples: int = DEFAULT_RESAMPLES, level: float = 0.95, seed: int = 0) -> dict:
  """``A - B`` on the same seeds and works, resampled together (seeds, then works within a seed).

  Args:
    a: ``{seed: {work: value}}`` of method A.
    b: the same for method B; only the (seed, work) pairs present in both are compared.
    resamples: bootstrap resamples.
    level: interval coverage.
    seed: the resampling seed.

  Returns:
    ``{"mean_diff", "ci95", "n_seeds", "n_pairs"}``.

  Raises:
    ValueError: no (seed, work) pair in common.
  """
  diffs = {}
  for s in a:
    if s in b:
      common = sorted(set(a[s]) & set(b[s]), key=str)
      if common:
        diffs[s] = {w: float(a[s][w]) - float(b[s][w]) for w in common}
  if not diffs:
    raise ValueError("paired_difference: the two methods share no (seed, work) pair")
  out = seed_work_bootstrap(diffs, resamples=resamples, level=level, seed=seed)
  return {"mean_diff": out["mean"], "ci95": out["ci95"], "n_seeds": out["n_seeds"],
          "n_pairs": int(sum(len(v) for v in diffs.values()))}


def clopper_pearson(successes: int, trials: int, *, level: float = 0.95, one_sided: bool = False) -> list[float]:
  """Exact binomial interval for ``successes / trials`` (scipy's ``binomtest``).

  Args:
    successes: events counted.
    trials: trials.
    level: coverage.
    one_sided: an upper bound only (``[0, upper]``), as for a false-positive rate.

  Returns:
    ``[lo, hi]``.
  """
  if trials <= 0:
    raise ValueError(f"clopper_pearson needs trials > 0, got {trials}")
  if one_sided:
    return [0.0, float(stats.binomtest(successes, trials, alternative="less").proportion_ci(
        confidence_level=level, method="exact").high)]
  ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=level, method="exact")
  return [float(ci.low), float(ci.high)]


def verdict(ci95: Sequence[float], *, direction: str = "greater", null: float = 0.0) -> str:
  """A claim's verdict from its interval: the claim is that the quantity is ``direction`` than ``null``.

  Args:
    ci95: ``[lo, hi]``.
    direction: ``"greater"`` or ``"less"``.
    null: the value the claim must exclude.

  Returns:
    ``"supported"`` (interval entirely on the claimed side), ``"contradicted"`` (entirely on the other side) or
    ``"not resolved"`` (the interval contains ``null``, or is undefined).
  """
  lo, hi = float(ci95[0]), float(ci95[1])
  if not (np.isfinite(lo) and np.isfinite(hi)):
    return "not resolved"
  if direction not in ("greater", "less"):
    raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
  above, below = lo > null, hi < null
  if direction == "greater":
    return "supported" if above else "contradicted" if below else "not resolved"
  return "supported" if below else "contradicted" if above else "not resolved"
