"""Analysis of the memorization-signal study: AUCs against counterfactual labels, increments over loss, the
set contrasts, the adaptive-depth calibration and the summary across data seeds.

Example:
  >>> rng = np.random.default_rng(0)
  >>> labels = rng.random(200) < 0.3
  >>> works = np.arange(200) // 2
  >>> x = labels + rng.normal(0, 0.5, 200)
  >>> inc = increment_over_loss(labels, rng.normal(size=200), x, works, seed=0, resamples=50)
  >>> inc["mean"] > 0.2
  True
"""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from govjax.core.intervals import auc, clopper_pearson, grouped_auc, verdict
from govjax.probe.monitor import direction_from_heldout
from govjax.probe.stats import zlib_bits_per_token
from govjax.study.signal_units import SignalStudyConfig
from govjax.train.counterfactual import (
  leave_one_out_scores,
  top_quantile_labels,
  within_model_ranks,
)

__all__ = ["HISTORY_SIGNALS", "REPLICATED", "analyse_unit", "history_signals", "increment_over_loss",
           "replication_summary"]


# ------------------------------------------------------------------------------------------------ analysis


def increment_over_loss(labels, loss, signal, works, *, seed: int, resamples: int = 1000, folds: int = 5) -> dict:
  """Out-of-fold AUC of a logistic regression on (loss, signal) minus on loss alone; folds and bootstrap by work.

  Args:
    labels: bool ``[n]``.
    loss: ``[n]`` the loss.
    signal: ``[n]`` the other statistic.
    works: ``[n]`` groups (folds and bootstrap resample works).
    seed: bootstrap seed.
    resamples: bootstrap resamples of the AUC difference.
    folds: cross-validation folds.

  Returns:
    ``{"mean", "ci95", "auc_loss", "auc_both"}``.
  """
  labels = np.asarray(labels, bool)
  x1 = np.asarray(loss, np.float64)[:, None]
  x2 = np.column_stack([x1[:, 0], np.asarray(signal, np.float64)])
  works = np.asarray(works).astype(str)
  _, groups = np.unique(works, return_inverse=True)
  pred = {}
  for name, x in (("loss", x1), ("both", x2)):
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    out = np.zeros(labels.size)
    for train, test in GroupKFold(n_splits=min(folds, groups.max() + 1)).split(x, labels, groups):
      if labels[train].all() or not labels[train].any():
        out[test] = labels[train].mean()
        continue
      out[test] = LogisticRegression().fit(x[train], labels[train]).decision_function(x[test])
    pred[name] = out
  members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
  rng = np.random.default_rng(seed)
  draws = []
  for _ in range(resamples):
    rows = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
    if labels[rows].all() or not labels[rows].any():
      continue
    draws.append(auc(labels[rows], pred["both"][rows]) - auc(labels[rows], pred["loss"][rows]))
  auc_loss, auc_both = auc(labels, pred["loss"]), auc(labels, pred["both"])
  ci = [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))] if draws else [np.nan, np.nan]
  return {"mean": auc_both - auc_loss, "ci95": ci, "auc_loss": auc_loss, "auc_both": auc_both}


def _auc_entry(scores, labels, works, model, *, seed, resamples) -> dict:
  ranked = within_model_ranks(np.asarray(scores, np.float64), model)
  ok = np.isfinite(ranked)
  out = grouped_auc(ranked[ok], labels[ok], works[ok], resamples=resamples, seed=seed)
  return {"auc": out["mean"], "ci95": out["ci95"], "n": out["n"]}


REPLICATED = ("memorization_gap", "loss", "ema90_loss", "predictive_entropy", "zlib_bits", "rep_u0", "rep_c0",
              "rep_u1", "rep_c1")
HISTORY_SIGNALS = ("first_loss", "mid_loss", "last_loss", "ema50_loss", "ema90_loss", "loss_drop", "mid_drop",
                   "zlib_bits", "memorization_gap")


def history_signals(record: dict, windows: np.ndarray) -> dict[str, np.ndarray]:
  """Signals the probe sees inside the train step, from each row's losses at its sightings (no extra pass).

  ``first_loss`` / ``mid_loss`` / ``last_loss``: the loss at the first sighting, at the sighting nearest the middle
  of training, at the last one; ``ema50_loss`` / ``ema90_loss``: exponential moving averages over sightings
  (weight 0.5 / 0.9 on the old value); ``loss_drop`` = first - last; ``mid_drop`` = mid - last. ``zlib_bits`` is
  the model-free baseline: the window's zlib size in bits per token. ``memorization_gap``: the observing probe's
  evidence (:mod:`govjax.probe.gap`; NaN in records from before it). NaN for rows never trained.
  """
  ids, losses = np.asarray(record["step_ids"]), np.asarray(record["step_loss"], np.float64)
  num = windows.shape[0]
  out = {name: np.full(num, np.nan) for name in HISTORY_SIGNALS}
  middle = ids.shape[0] // 2
  best = np.full(num, np.inf)
  for step in range(ids.shape[0]):
    for row, loss in zip(ids[step], losses[step], strict=True):
      if np.isnan(out["first_loss"][row]):
        out["first_loss"][row] = out["ema50_loss"][row] = out["ema90_loss"][row] = loss
      else:
        out["ema50_loss"][row] = 0.5 * out["ema50_loss"][row] + 0.5 * loss
        out["ema90_loss"][row] = 0.9 * out["ema90_loss"][row] + 0.1 * loss
      if abs(step - middle) < best[row]:
        best[row], out["mid_loss"][row] = abs(step - middle), loss
      out["last_loss"][row] = loss
  out["loss_drop"] = out["first_loss"] - out["last_loss"]
  out["mid_drop"] = out["mid_loss"] - out["last_loss"]
  out["zlib_bits"] = zlib_bits_per_token(windows)
  if "memorization_gap" in record:
    out["memorization_gap"] = np.asarray(record["memorization_gap"], np.float64)
  return out


def _pairs(data: dict, records: list[dict], step: int, names: list[str], quantile: float) -> dict:
  """(model, trained pool window) pairs: signals of that model, label from the other models."""
  pool = np.flatnonzero(data["role"] == "pool")
  member = np.stack([np.asarray(r["member_works"], bool)[data["pool_work"][pool]] for r in records])
  final = max(int(s) for s in records[0]["steps"])
  losses = np.stack([np.asarray(r[f"s{final}/loss"])[pool] for r in records])
  loo = leave_one_out_scores(losses, member)
  rows = {"model": [], "work": [], "score": [], "label": []}
  values = {name: [] for name in names}
  for k, record in enumerate(records):
    trained = member[k]
    score = loo[k, trained]
    rows["model"].append(np.full(trained.sum(), k))
    rows["work"].append(data["work"][pool][trained])
    rows["score"].append(score)
    rows["label"].append(top_quantile_labels(score, quantile))
    for name in names:
      if name in HISTORY_SIGNALS:
        values[name].append(record["history"][name][pool][trained])
      else:
        values[name].append(np.asarray(record[f"s{step}/{name}"])[pool][trained])
  out = {key: np.concatenate(value) for key, value in rows.items()}
  out["values"] = {name: np.concatenate(value) for name, value in values.items()}
  return out


def _signal_names(records: list[dict], step: int) -> list[str]:
  prefix = f"s{step}/"
  return [key[len(prefix):] for key in records[0] if key.startswith(prefix)]


def analyse_unit(data: dict, records: list[dict], config: SignalStudyConfig, *, probe_signal: str = "loss_drop"
                 ) -> dict:
  """AUCs (with intervals) and increments over loss of every signal of one (kind, size), at every measured step.

  Args:
    data: :func:`build_windows`'s output.
    records: the models' records (:func:`run_unit`).
    config: the study config.
    probe_signal: the signal whose label-threshold sensitivity is also reported.

  Returns:
    A JSON-able dict (see ``experiments/results/memorization_signal.json``).
  """
  seed, resamples = config.seed, config.resamples
  steps = [int(s) for s in records[0]["steps"]]
  final = max(steps)
  names = _signal_names(records, final)
  out = {"num_models": len(records), "steps": steps, "equal_frequency": {}, "increment_over_loss": {},
         "during_training": {}, "sensitivity": {}}
  for record in records:
    record.setdefault("history", history_signals(record, data["windows"]))
  pairs = _pairs(data, records, final, names + list(HISTORY_SIGNALS), config.label_quantile)
  labels, works, model = pairs["label"], pairs["work"], pairs["model"]
  out["num_pairs"], out["num_memorized"] = int(labels.size), int(labels.sum())
  out["counterfactual_score"] = {"mean": float(np.mean(pairs["score"])),
                                 "memorized_mean": float(np.mean(pairs["score"][labels])),
                                 "other_mean": float(np.mean(pairs["score"][~labels]))}
  for name, value in pairs["values"].items():
    out["equal_frequency"][name] = _auc_entry(value, labels, works, model, seed=seed, resamples=resamples)
  loss_ranked = within_model_ranks(pairs["values"]["loss"], model)
  for name, value in pairs["values"].items():
    if name == "loss":
      continue
    inc = increment_over_loss(labels, loss_ranked, within_model_ranks(value, model), works, seed=seed,
                              resamples=max(resamples // 4, 100))
    inc["verdict"] = verdict(inc["ci95"], direction="greater")
    out["increment_over_loss"][name] = inc
  for step in steps[:-1]:
    early = _pairs(data, records, step, names, config.label_quantile)
    out["during_training"][str(step)] = {
        name: _auc_entry(early["values"][name], early["label"], early["work"], early["model"], seed=seed,
                         resamples=max(resamples // 4, 100)) for name in names}
  for quantile in config.sensitivity_quantiles:
    other = _pairs(data, records, final, names + list(HISTORY_SIGNALS), quantile)
    keep = [probe_signal, "loss", "memorization_gap"] + [n for n in names if n.startswith("rep_")]
    out["sensitivity"][str(quantile)] = {
        name: _auc_entry(other["values"][name], other["label"], other["work"], other["model"], seed=seed,
                         resamples=max(resamples // 4, 100))["auc"] for name in keep}
  out["frequency_manipulated"] = _set_contrast(data, records, final, names, "verbatim", "pool", seed, resamples)
  out["verbatim_vs_varied"] = _set_contrast(data, records, final, names, "verbatim", "varied", seed, resamples)
  out["verbatim_vs_varied_matched_loss"] = _set_contrast(data, records, final, names, "verbatim", "varied", seed,
                                                         resamples, match_loss=True)
  out["calibration"] = _calibration_summary(data, records, final, names)
  out["adaptive_depth"] = _adaptive_depth(data, records, final, names, config.label_quantile)
  out["train_s"] = float(sum(float(r["train_s"]) for r in records))
  out["measure_s"] = float(sum(float(r["measure_s"]) for r in records))
  return out


def _set_contrast(data, records, step, names, positive, negative, seed, resamples, *, match_loss=False) -> dict:
  """AUC of each signal for ``positive``-role windows (label 1) against trained ``negative``-role windows."""
  role, pool = data["role"], np.flatnonzero(data["role"] == "pool")
  rows = {"model": [], "work": [], "label": []}
  values = {name: [] for name in names}
  for k, record in enumerate(records):
    pos = np.flatnonzero(role == positive)
    if negative == "pool":
      member = np.asarray(record["member_works"], bool)[data["pool_work"][pool]]
      neg = pool[member]
    else:
      neg = np.flatnonzero(role == negative)
    loss = np.asarray(record[f"s{step}/loss"])
    if match_loss:  # each positive paired with the nearest-loss negative not yet used
      free, chosen = list(neg), []
      for p in pos[np.argsort(loss[pos])]:
        best = min(free, key=lambda n: abs(loss[n] - loss[p]))
        chosen.append(best)
        free.remove(best)
      neg = np.array(chosen)
    both = np.concatenate([pos, neg])
    rows["model"].append(np.full(both.size, k))
    rows["work"].append(data["work"][both])
    rows["label"].append(np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)])
    for name in names:
      values[name].append(np.asarray(record[f"s{step}/{name}"])[both])
  labels, works, model = (np.concatenate(rows[k]) for k in ("label", "work", "model"))
  out = {"n_positive": int(labels.sum()), "n_negative": int((~labels).sum()),
         "mean_loss_positive": float(np.mean(np.concatenate(values["loss"])[labels])),
         "mean_loss_negative": float(np.mean(np.concatenate(values["loss"])[~labels])), "auc": {}}
  for name in names:
    out["auc"][name] = _auc_entry(np.concatenate(values[name]), labels, works, model, seed=seed,
                                  resamples=max(resamples // 4, 100))
  return out


ADAPTIVE_SIGNALS = ("ema90_loss", "loss", "predictive_entropy", "rep_c0", "rep_u0", "rep_c_last", "rep_u_last")


def _adaptive_depth(data, records, step, names, quantile, *, percentile: float = 5.0) -> dict:
  """What adaptive depth would do with each in-step signal, calibrated on a split disjoint from its audit.

  The pool works are halved by the sha256 of their id. On the *calibration* half, the side of the held-out
  distribution (the never-trained ``calib`` windows under the same model) that memorized windows fall into is
  chosen (:func:`govjax.probe.monitor.direction_from_heldout`). On the *audit* half, windows beyond that side's
  ``percentile``-th held-out percentile are flagged (lowered), and the flag rates of memorized and other windows
  are reported with exact intervals. A signal that separates nothing flags both at about the same rate.
  """
  role, pool = data["role"], np.flatnonzero(data["role"] == "pool")
  calib = np.flatnonzero(role == "calib")
  half = np.array([int(hashlib.sha256(str(w).encode()).hexdigest(), 16) % 2 for w in data["work"][pool]], bool)
  last = max(int(n[len("rep_c"):]) for n in names if n.startswith("rep_c"))
  alias = {"rep_c_last": f"rep_c{last}", "rep_u_last": f"rep_u{last}"}
  member = [np.asarray(r["member_works"], bool)[data["pool_work"][pool]] for r in records]
  loo = leave_one_out_scores(np.stack([np.asarray(r[f"s{step}/loss"])[pool] for r in records]), np.stack(member))
  labels = np.zeros((len(records), pool.size), bool)
  for k in range(len(records)):
    labels[k, member[k]] = top_quantile_labels(loo[k, member[k]], quantile)
  out = {}
  for signal in ADAPTIVE_SIGNALS:
    name = alias.get(signal, signal)
    reference = "loss" if name in HISTORY_SIGNALS else name
    values, held = [], []
    for record in records:
      source = record["history"][name] if name in HISTORY_SIGNALS else np.asarray(record[f"s{step}/{name}"])
      values.append(source[pool])
      held.append(np.asarray(record[f"s{step}/{reference}"])[calib])
    cal_mem = np.concatenate([values[k][member[k] & labels[k] & ~half] for k in range(len(records))])
    chosen = direction_from_heldout(cal_mem, np.concatenate(held), percentile=percentile)
    direction = chosen["direction"]
    counts = {"memorized": [0, 0], "other": [0, 0]}
    for k in range(len(records)):
      lo, hi = np.percentile(held[k], [percentile, 100.0 - percentile])
      v = values[k]
      flag = {"low": v < lo, "high": v > hi, "both": (v < lo) | (v > hi), "none": np.zeros(v.shape, bool)}[direction]
      audit = member[k] & half
      for group, rows in (("memorized", audit & labels[k]), ("other", audit & ~labels[k])):
        counts[group][0] += int(np.sum(flag & rows))
        counts[group][1] += int(np.sum(rows))
    out[signal] = {"measured": name, "direction": direction, "calibration_share_low": chosen["share_low"],
                   "calibration_share_high": chosen["share_high"]}
    for group, (flagged, total) in counts.items():
      out[signal][f"flag_rate_{group}"] = flagged / max(total, 1)
      out[signal][f"flag_rate_{group}_ci95"] = clopper_pearson(flagged, total) if total else [np.nan, np.nan]
      out[signal][f"n_{group}"] = total
  return out


def _calibration_summary(data, records, step, names) -> dict:
  """Median of each signal on the never-trained calibration windows and on trained pool windows (final model)."""
  calib = np.flatnonzero(data["role"] == "calib")
  pool = np.flatnonzero(data["role"] == "pool")
  out = {}
  for name in names:
    held = np.concatenate([np.asarray(r[f"s{step}/{name}"])[calib] for r in records])
    trained = np.concatenate([np.asarray(r[f"s{step}/{name}"])[pool][np.asarray(r["member_works"], bool)[
        data["pool_work"][pool]]] for r in records])
    out[name] = {"heldout_median": float(np.median(held)), "trained_median": float(np.median(trained))}
  return out


def replication_summary(results: list[dict], names: tuple[str, ...] = REPLICATED) -> dict:
  """Equal-frequency AUCs of ``names`` per data seed and unit, and their mean and range across seeds.

  Args:
    results: :func:`run_study` outputs of different data seeds (the first is the main one).
    names: the statistics summarised.

  Returns:
    ``{"seeds": [...], "units": {unit: {name: {"per_seed": {seed: auc}, "mean", "min", "max", "seeds"}}}}``
    (a unit is listed when at least two seeds ran it).
  """
  seeds = [int(r["config"]["seed"]) for r in results]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"replications need distinct data seeds, got {seeds}")
  units = {}
  for unit in results[0]["units"]:
    runs = [(seed, r["units"][unit]) for seed, r in zip(seeds, results, strict=True) if unit in r["units"]]
    if len(runs) < 2:
      continue
    units[unit] = {}
    for name in names:
      per_seed = {str(seed): u["equal_frequency"][name]["auc"] for seed, u in runs if name in u["equal_frequency"]}
      if per_seed:
        values = list(per_seed.values())
        units[unit][name] = {"per_seed": per_seed, "mean": float(np.mean(values)), "min": float(min(values)),
                             "max": float(max(values)), "seeds": len(values)}
  return {"seeds": seeds, "units": units}
