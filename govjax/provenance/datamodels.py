"""The linear datamodeling score (LDS) protocol and its trivial baselines, as plain functions of arrays.

Park et al. 2023: draw work-level subsets that keep a fraction ``alpha`` of the training works
(:func:`draw_subsets`), retrain on each, and for every held-out query correlate (Spearman, across subsets) an
attribution method's prediction ``sum_{n in S} tau(q, n)`` with the retrained model's negative loss on the query
(:func:`lds_per_query`); the LDS is the mean over queries, with a bootstrap interval over query works
(:func:`summarize`). Trivial baselines score with token n-gram overlap (:func:`ngram_overlap`) or the subset's
size. :func:`ratio_of_means` is the removal test's statistic (NLL rise after removing the top-k attributed works
over the rise after removing k random ones, bootstrap over outputs). The experiment that retrains is
``experiments/attribution.py``.

Datamodels (Ilyas et al. 2022) are the retraining-based scorer the LDS was built around: retrain on ``R`` random
work subsets *other than* the LDS subsets, and fit per query a ridge regression of the retrained models' negative
loss on the subset's work indicators (:func:`fit_datamodels`); a work's coefficient is its attribution, spread
evenly over its windows for the per-window score matrix (:func:`spread_to_examples`). They cost ``R`` retrains
and score a new query (a generated output) by evaluating it under the ``R`` retrained models.

Example:
  >>> subsets = draw_subsets(4, 3, 0.5, seed=0)
  >>> subsets.sum(axis=1).tolist()
  [2, 2, 2]
  >>> actual = np.array([[1.0], [2.0], [3.0]])
  >>> lds_per_query(np.array([[0.1], [0.5], [0.9]]), actual).tolist()
  [1.0]
  >>> kept = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
  >>> fit_datamodels(kept, kept @ np.array([[2.0], [-1.0]]) + 5.0, ridge=0.0).round(6).tolist()
  [[2.0, -1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

from govjax.core.intervals import work_bootstrap

__all__ = ["draw_subsets", "fit_datamodels", "lds_per_query", "ngram_overlap", "query_windows", "ratio_of_means",
           "spread_to_examples", "summarize"]


def query_windows(works: Sequence, context: int, per_work: int) -> tuple[np.ndarray, np.ndarray]:
  """Up to ``per_work`` evenly spaced non-overlapping full context windows of each work.

  Returns:
    ``(tokens int32 [Q, context], work index int [Q])`` (index into ``works``).
  """
  tokens, owner = [], []
  for w, work in enumerate(works):
    seq = np.asarray(work.tokens, np.int32)
    count = seq.size // context
    if count == 0:
      continue
    for start in np.unique(np.linspace(0, count - 1, min(per_work, count)).round().astype(int)):
      tokens.append(seq[start * context: (start + 1) * context])
      owner.append(w)
  if not tokens:
    raise ValueError(f"no work is as long as the context ({context} tokens): no query windows")
  return np.stack(tokens), np.asarray(owner, np.int64)


def ngram_overlap(queries: np.ndarray, windows: np.ndarray, n: int) -> np.ndarray:
  """``[Q, N]``: distinct token ``n``-grams of each query that occur in each training window."""
  def grams(row):
    return {row[i: i + n].tobytes() for i in range(len(row) - n + 1)}

  window_grams = [grams(np.asarray(w, np.int32)) for w in windows]
  out = np.zeros((len(queries), len(windows)), np.float64)
  for q, row in enumerate(queries):
    mine = grams(np.asarray(row, np.int32))
    out[q] = [len(mine & other) for other in window_grams]
  return out


def draw_subsets(num_works: int, count: int, fraction: float, seed: int) -> np.ndarray:
  """``[count, num_works]`` bool: each row keeps ``round(fraction * num_works)`` works drawn at random."""
  size = max(1, int(round(fraction * num_works)))
  rng = np.random.default_rng([seed, 7])
  out = np.zeros((count, num_works), bool)
  for s in range(count):
    out[s, rng.choice(num_works, size=size, replace=False)] = True
  return out


def fit_datamodels(kept: np.ndarray, margins: np.ndarray, *, ridge: float, prior: np.ndarray | None = None
                   ) -> np.ndarray:
  """Per-query linear datamodels: ridge regression of ``margins`` on the kept-work indicators (with intercept).

  With a ``prior`` (e.g. a gradient scorer's work scores) the coefficients are ``c_q * prior_q + delta_q``: the
  scale ``c_q`` is fitted by least squares, and the ridge shrinks the correction ``delta_q`` towards 0, so with few
  retrains the fit falls back on the prior instead of on 0.

  Args:
    kept: bool ``[R, W]``, the works each retrained model kept.
    margins: float ``[R, Q]``, each retrained model's output per query (e.g. negative mean NLL).
    ridge: ``>= 0`` penalty on the coefficients (the intercept is not penalised); 0 needs the centred indicators
      to have full column rank. When every subset keeps the same number of works (as :func:`draw_subsets`
      draws them), a common shift of all coefficients is absorbed by the intercept, and a ridge > 0 picks the
      centred solution; rankings of works and of equal-sized subsets do not depend on the shift.
    prior: float ``[Q, W]`` prior work scores, or None (shrink towards 0).

  Returns:
    float64 ``[Q, W]``: the coefficient of every work for every query.
  """
  x = np.asarray(kept, np.float64)
  y = np.asarray(margins, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
    raise ValueError(f"fit_datamodels: kept [R, W] and margins [R, Q] must share R, got {x.shape} and {y.shape}")
  if not ridge >= 0:
    raise ValueError(f"fit_datamodels: ridge must be >= 0, got {ridge!r}")
  xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
  scale, base = np.zeros(y.shape[1]), np.zeros((y.shape[1], x.shape[1]))
  if prior is not None:
    base = np.asarray(prior, np.float64)
    if base.shape != (y.shape[1], x.shape[1]):
      raise ValueError(f"fit_datamodels: prior must be [Q, W] = {(y.shape[1], x.shape[1])}, got {base.shape}")
    z = xc @ base.T  # [R, Q]: the prior's centred prediction for every retrain
    zz = np.sum(z * z, axis=0)
    scale = np.where(zz > 0, np.sum(z * yc, axis=0) / np.where(zz > 0, zz, 1.0), 0.0)
    yc = yc - z * scale
  delta = np.linalg.solve(xc.T @ xc + ridge * np.eye(x.shape[1]), xc.T @ yc).T
  return scale[:, None] * base + delta


def spread_to_examples(work_scores: np.ndarray, example_work: np.ndarray) -> np.ndarray:
  """``[Q, W]`` work scores -> ``[Q, N]`` window scores: each work's score split evenly over its windows, so a
  subset's summed window scores equal its summed work scores."""
  example_work = np.asarray(example_work, np.int64)
  counts = np.bincount(example_work, minlength=work_scores.shape[1]).astype(np.float64)
  return np.asarray(work_scores, np.float64)[:, example_work] / counts[example_work]


def lds_per_query(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
  """Spearman correlation across subsets, per query: ``[S, Q]`` x ``[S, Q]`` -> ``[Q]``.

  A prediction that is the same for every subset ranks nothing: 0 (e.g. an n-gram baseline whose query shares no
  n-gram with any training window); an actual that is constant gives NaN (dropped and counted).
  """
  out = np.full(predicted.shape[1], np.nan)
  for q in range(predicted.shape[1]):
    if np.ptp(actual[:, q]) == 0:
      continue
    out[q] = spearmanr(predicted[:, q], actual[:, q]).statistic if np.ptp(predicted[:, q]) > 0 else 0.0
  return out


def summarize(values: np.ndarray, works: np.ndarray, *, seed: int, resamples: int) -> dict:
  """Mean and 95% work-bootstrap interval of per-query values (NaNs dropped and counted)."""
  ok = np.isfinite(values)
  out = work_bootstrap(values[ok], works[ok], seed=seed, resamples=resamples)
  out["dropped"] = int((~ok).sum())
  return out


def ratio_of_means(top: np.ndarray, rand: np.ndarray, *, seed: int, resamples: int) -> dict:
  """``mean(top) / mean(rand)`` over outputs with a bootstrap interval over outputs (paired)."""
  top, rand = np.asarray(top, np.float64), np.asarray(rand, np.float64)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(top), size=(resamples, len(top)))
  with np.errstate(divide="ignore", invalid="ignore"):
    samples = top[idx].mean(axis=1) / rand[idx].mean(axis=1)
  finite = np.isfinite(samples)
  samples = samples[finite]
  return {"mean": float(top.mean() / rand.mean()) if rand.mean() != 0 else float("nan"),
          "ci95": [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))] if samples.size
          else [float("nan"), float("nan")], "n_outputs": int(len(top)),
          "dropped_resamples": int((~finite).sum())}  # resamples whose random-k mean is 0: no ratio
