"""The memorization-signal study: which per-example statistic tells memorization from learning, measured against
counterfactual labels, across model sizes and two kinds of data.

Design (per data kind and model size; ``experiments/memorization_signal.py`` sets the numbers):

* **Windows.** Works are ordered by the sha256 of their id and given roles by the study seed: ``pool`` works
  (two windows each) for the counterfactual labels, ``verbatim`` works (one window, listed ``copies`` times per
  epoch), ``varied`` works (one window, trained as ``copies`` variations: transposed chorales, diatonically
  shifted folk melodies; each variation once per epoch), and ``calib`` works (never trained: the held-out split
  that calibrates the adaptive depth, disjoint from every audited window).
* **Counterfactual labels.** ``K`` models, each trained on a complementary half of the pool works
  (:mod:`govjax.train.counterfactual`); every model also trains the verbatim and varied sets. Each pool window's
  memorization score is its mean loss in the models that did not train on it minus in those that did, computed
  without the model whose signal is scored (leave-one-out). A window is *memorized* when its score is in the top
  ``label_quantile`` of the scores among that model's trained windows (sensitivity: other quantiles).
* **Equal frequency.** Inside a model every pool window is trained exactly as often (epochs), so the AUCs among
  pool windows cannot come from frequency. The verbatim set against the pool windows is the frequency-
  manipulated, content-matched contrast (same distribution of works, ``copies`` times the exposure).
* **The seed's claim.** Verbatim repetition (memorization) against the same exposure spread over variations
  (learning), compared at matched loss: each verbatim window paired with the varied window of nearest loss.
* **Signals** of :mod:`govjax.probe.signals` at a quarter, half and all of training (fresh forward passes), and
  the probe's own step-time view (loss at first and last sighting). For each: the AUC (a score above 0.5 means
  *higher value = memorized*) with a 95% interval by bootstrap over works, and its increment over loss: the
  AUC of a cross-validated logistic regression on (loss, signal) minus that on loss alone, folds by work.

Command (see the config's docstring)::

  nice -n 15 python -m govjax.study.memorization_signal --config experiments/memorization_signal.py \\
      --out runs/memorization_signal --results experiments/results/memorization_signal.json \\
      --figure experiments/results/memorization_signal.png

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

import argparse
import dataclasses
import hashlib
import json
import pathlib
import platform
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from govjax.core.config import ModelSpec, ProbeSpec, TrainConfig, load_python_config
from govjax.core.intervals import auc, clopper_pearson, grouped_auc, verdict
from govjax.data.chorales import load_chorale_works
from govjax.data.folk import FOLK_VOCAB_SIZE, folk_works, transpose_diatonic
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.models.transformer import Transformer, count_params
from govjax.probe.monitor import direction_from_heldout, make_probe_plugin
from govjax.probe.stats import zlib_bits_per_token
from govjax.study.plotting import pyplot
from govjax.train.counterfactual import (
  Trainer,
  complementary_subsets,
  leave_one_out_scores,
  top_quantile_labels,
  train_and_measure,
  within_model_ranks,
)
from govjax.train.step import model_config

__all__ = ["SignalStudyConfig", "SizeSpec", "analyse_unit", "build_windows", "increment_over_loss", "main",
           "plot_results", "run_study"]


@dataclasses.dataclass(frozen=True)
class SizeSpec:
  """One model size: ``name``, ``num_layers``, ``width``, ``num_heads``, ``num_steps``, ``num_models`` (K)."""

  name: str
  num_layers: int
  width: int
  num_heads: int
  num_steps: int
  num_models: int


@dataclasses.dataclass(frozen=True)
class SignalStudyConfig:
  """The study's numbers (see the module docstring).

  Attributes:
    sizes: model sizes.
    kinds: data kinds (``chorales``, ``folk``).
    context: window length in tokens.
    batch_size: rows per step (divides the rows of an epoch).
    pool_works, windows_per_work: the counterfactual pool.
    set_works: works in each of the verbatim and varied sets.
    copies: exposures per epoch of a verbatim window (and variations of a varied one).
    calib_works: never-trained calibration works (one window each).
    learning_rate, warmup_steps: the optimizer.
    label_quantile: the top share of counterfactual scores labelled memorized.
    sensitivity_quantiles: other shares reported for the probe's signal and representation entropy.
    seed: roles of the works, subsets, inits.
    resamples: bootstrap resamples per interval.
    gap_calibrate_every: steps between the observing probe's calibrations on the ``calib`` windows (the
      memorization gap's reference point, :mod:`govjax.probe.gap`).
  """

  sizes: tuple[SizeSpec, ...]
  kinds: tuple[str, ...] = ("chorales", "folk")
  context: int = 64
  batch_size: int = 16
  pool_works: int = 64
  windows_per_work: int = 2
  set_works: int = 8
  copies: int = 4
  calib_works: int = 32
  learning_rate: float = 3e-3
  warmup_steps: int = 20
  label_quantile: float = 0.25
  sensitivity_quantiles: tuple[float, ...] = (0.1, 0.5)
  seed: int = 0
  resamples: int = 1000
  gap_calibrate_every: int = 6


# ------------------------------------------------------------------------------------------------ data


def _order(ids: list[str]) -> list[int]:
  return sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())


def _kind_works(kind: str, context: int) -> tuple[list[str], list[np.ndarray], int]:
  """``(work ids, token arrays, vocabulary size)`` of the works long enough for two windows."""
  if kind == "chorales":
    works = [w for w in load_chorale_works(None, "train") if w.length >= 3 * context]
    return [w.work_id for w in works], [np.asarray(w.tokens) for w in works], VOCAB_SIZE
  if kind == "folk":
    songs = folk_works(min_length=2 * context)
    return [s.work_id for s in songs], [s.tokens for s in songs], FOLK_VOCAB_SIZE
  raise ValueError(f"unknown data kind {kind!r}; expected 'chorales' or 'folk'")


def _vary(kind: str, window: np.ndarray, shift: int, vocab_size: int) -> np.ndarray:
  if kind == "chorales":
    return np.where(window >= 3, np.clip(window + shift, 3, vocab_size - 1), window).astype(np.int32)

  return transpose_diatonic(window, shift)


def _cut(tokens: np.ndarray, context: int, count: int, kind: str) -> list[np.ndarray]:
  align = 4 if kind == "chorales" else 1
  start = ((tokens.size - count * context) // 2) // align * align if kind == "chorales" else 0
  return [np.asarray(tokens[start + i * context:start + (i + 1) * context], np.int32) for i in range(count)]


def build_windows(kind: str, config: SignalStudyConfig) -> dict:
  """The windows of one data kind and their roles.

  Returns:
    ``{"windows": int32 [N, T], "work": [N] work ids, "role": [N] ("pool", "verbatim", "varied", "calib"),
    "pool_work": [N] index among the pool works (-1 elsewhere), "vocab_size", "pool_work_ids"}``.
  """
  ids, tokens, vocab = _kind_works(kind, config.context)
  order = _order(ids)
  need = config.pool_works + 2 * config.set_works + config.calib_works
  if len(order) < need:
    raise ValueError(f"{kind}: {len(order)} works are long enough, the study needs {need}")
  picked = [order[i] for i in np.random.default_rng(config.seed).permutation(len(order))[:need]]
  windows, work, role, pool_work = [], [], [], []
  shifts = [s for s in (-2, -1, 1, 2, -3, 3, -4, 4)][:config.copies]
  for rank, index in enumerate(picked):
    if rank < config.pool_works:
      for window in _cut(tokens[index], config.context, config.windows_per_work, kind):
        windows.append(window), work.append(ids[index]), role.append("pool"), pool_work.append(rank)
      continue
    window = _cut(tokens[index], config.context, 1, kind)[0]
    if rank < config.pool_works + config.set_works:
      rows, name = [window], "verbatim"
    elif rank < config.pool_works + 2 * config.set_works:
      rows, name = [_vary(kind, window, s, vocab) for s in shifts], "varied"
    else:
      rows, name = [window], "calib"
    for row in rows:
      windows.append(row), work.append(ids[index]), role.append(name), pool_work.append(-1)
  return {"windows": np.stack(windows), "work": np.array(work), "role": np.array(role),
          "pool_work": np.array(pool_work), "vocab_size": vocab,
          "pool_work_ids": [ids[i] for i in picked[:config.pool_works]]}


def epoch_rows(data: dict, member_works: np.ndarray, copies: int) -> np.ndarray:
  """Rows of one epoch: the pool windows of ``member_works``, verbatim windows ``copies`` times, each variation."""
  role, pool_work = data["role"], data["pool_work"]
  pool = np.flatnonzero((role == "pool") & np.isin(pool_work, np.flatnonzero(member_works)))
  verbatim = np.repeat(np.flatnonzero(role == "verbatim"), copies)
  varied = np.flatnonzero(role == "varied")
  return np.concatenate([pool, verbatim, varied])


# ------------------------------------------------------------------------------------------------ training


def _train_config(config: SignalStudyConfig, size: SizeSpec, seed: int) -> TrainConfig:
  return TrainConfig(model=ModelSpec(num_layers=size.num_layers, width=size.width, num_heads=size.num_heads,
                                     context=config.context), num_steps=size.num_steps,
                     batch_size=config.batch_size, learning_rate=config.learning_rate,
                     warmup_steps=config.warmup_steps, seed=seed)


def measure_steps(size: SizeSpec) -> tuple[int, ...]:
  """Steps at which the signals are measured: a quarter, half and all of training."""
  return tuple(sorted({max(size.num_steps // 4, 1), max(size.num_steps // 2, 1), size.num_steps}))


def gap_probe(config: SignalStudyConfig, size: SizeSpec):
  """The observing probe whose evidence is the memorization gap (calibrated on the ``calib`` windows)."""
  spec = ProbeSpec(enabled=True, signal="memorization_gap", direction="high", adaptive=False, ema=0.9,
                   calibrate_every=config.gap_calibrate_every)
  return make_probe_plugin(spec, size.num_layers + 2)


def run_unit(kind: str, size: SizeSpec, config: SignalStudyConfig, out: pathlib.Path, data: dict) -> list[dict]:
  """Trains (or loads from ``out``) the ``K`` half-subset models of one (kind, size); returns their records."""
  subsets = complementary_subsets(config.pool_works, size.num_models, seed=config.seed)
  trainer, records = None, []
  for k in range(size.num_models):
    path = out / f"{kind}-{size.name}-m{k}.npz"
    if path.exists():
      with np.load(path, allow_pickle=False) as f:
        records.append({key: f[key] for key in f.files})
      continue
    train_config = _train_config(config, size, seed=1000 * config.seed + k)
    if trainer is None:
      trainer = Trainer(train_config, data["vocab_size"], plugins=(gap_probe(config, size),))
    rows = epoch_rows(data, subsets[k], config.copies)
    result = train_and_measure(train_config, data["windows"], rows, vocab_size=data["vocab_size"],
                               measure_at=measure_steps(size), data_seed=1000 * config.seed + k, trainer=trainer,
                               heldout=data["windows"][data["role"] == "calib"])
    record = {"member_works": subsets[k], "first_loss": result["first_loss"], "last_loss": result["last_loss"],
              "memorization_gap": trainer.plugins[0].evidence(result["extras"]["probe"]),
              "step_ids": result["step_ids"], "step_loss": result["step_loss"],
              "train_s": np.float64(result["train_s"]), "measure_s": np.float64(result["measure_s"]),
              "steps": np.array(sorted(result["signals"]))}
    for step, values in result["signals"].items():
      for name, value in values.items():
        record[f"s{step}/{name}"] = value
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **record)
    tmp.rename(path)
    print(f"{kind} {size.name} model {k}: train {result['train_s']:.0f} s, measure {result['measure_s']:.0f} s",
          flush=True)
    records.append(record)
  return records


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


# ------------------------------------------------------------------------------------------------ driver


def run_study(config: SignalStudyConfig, out: str | pathlib.Path, *, analyse: bool = True) -> dict:
  """Trains every (kind, size) unit (cached per model under ``out``) and analyses the finished ones.

  Args:
    config: the study config.
    out: run directory (per-model ``.npz`` records; rerunning resumes).
    analyse: compute the AUCs (else only train).

  Returns:
    ``{"config", "units": {"<kind>/<size>": analysis}, "machine", "wall_s"}``.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  t0 = time.time()
  result = {"config": dataclasses.asdict(config), "units": {}, "machine": {
      "platform": platform.platform(), "processor": platform.machine(), "cpus": _cpus()}}
  datas = {kind: build_windows(kind, config) for kind in config.kinds}
  for size in config.sizes:
    for kind in config.kinds:
      records = run_unit(kind, size, config, out, datas[kind])
      if analyse:
        unit = analyse_unit(datas[kind], records, config)
        unit["size"] = dataclasses.asdict(size)
        unit["num_params"] = _num_params(size, config, datas[kind]["vocab_size"])
        unit["num_windows"] = {role: int(np.sum(datas[kind]["role"] == role))
                               for role in ("pool", "verbatim", "varied", "calib")}
        result["units"][f"{kind}/{size.name}"] = unit
  result["wall_s"] = time.time() - t0
  return result


def _cpus() -> int:
  import os  # noqa: PLC0415 (only for the machine record)

  return os.cpu_count() or 0


def _num_params(size: SizeSpec, config: SignalStudyConfig, vocab_size: int) -> int:
  from flax import nnx  # noqa: PLC0415 (only for the parameter count)


  shape = model_config(_train_config(config, size, 0), vocab_size)
  return count_params(nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0))))


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


def plot_results(result: dict, path: str | pathlib.Path) -> pathlib.Path:
  """The figure of the committed JSON: per unit, AUC with interval of every statistic at equal frequency.

  Args:
    result: :func:`run_study`'s output (or the committed JSON, loaded).
    path: the ``.png`` to write.

  Returns:
    The path.
  """
  plt = pyplot()
  units = list(result["units"])
  every = sorted({n for u in units for n in result["units"][u]["equal_frequency"]},
                 key=lambda n: (n.startswith(("rep_", "attn")), n))
  fig, axes = plt.subplots(1, len(units), figsize=(3.2 * len(units), 6.5), sharey=True, squeeze=False)
  y = np.arange(len(every))
  for ax, unit in zip(axes[0], units, strict=True):
    entries = result["units"][unit]["equal_frequency"]
    nan = {"auc": np.nan, "ci95": [np.nan, np.nan]}
    auc = np.array([entries.get(n, nan)["auc"] for n in every], np.float64)
    lo = np.array([entries.get(n, nan)["ci95"][0] for n in every], np.float64)
    hi = np.array([entries.get(n, nan)["ci95"][1] for n in every], np.float64)
    colors = ["tab:red" if n.startswith("rep_") else "tab:blue" if n.startswith("attn") else "k" for n in every]
    ax.errorbar(auc, y, xerr=[auc - lo, hi - auc], fmt="none", ecolor=colors, elinewidth=1)
    ax.scatter(auc, y, c=colors, s=12, zorder=3)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    size = result["units"][unit]
    ax.set_title(f"{unit}\n{size['num_params'] / 1e6:.2f}M params, K={size['num_models']}", fontsize=8)
    ax.set_xlabel("AUC (higher value = memorized)", fontsize=7)
  axes[0][0].set_yticks(y, every, fontsize=7)
  fig.suptitle("Counterfactual memorization among equally trained windows (95% intervals over works)", fontsize=9)
  fig.tight_layout()
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main(argv: list[str] | None = None) -> None:
  """``python -m govjax.study.memorization_signal --config CONFIG --out DIR [--results JSON] [--train-only]``."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--results", default=None, help="write the analysis JSON here")
  parser.add_argument("--train-only", action="store_true")
  parser.add_argument("--figure", default=None, help="write the figure (from the results) here")
  parser.add_argument("--seed", type=int, default=None, help="override the config's data seed")
  parser.add_argument("--sizes", default=None, help="comma-separated size names to run (default: all)")
  parser.add_argument("--replications", nargs="*", default=(),
                      help="results JSONs of other data seeds, summarised under 'replications'")
  args = parser.parse_args(argv)
  config = load_python_config(args.config, "get_config", SignalStudyConfig)
  if args.seed is not None:
    config = dataclasses.replace(config, seed=args.seed)
  if args.sizes:
    wanted = args.sizes.split(",")
    unknown = sorted(set(wanted) - {size.name for size in config.sizes})
    if unknown:
      raise SystemExit(f"--sizes: unknown size(s) {unknown}; the config has {[s.name for s in config.sizes]}")
    config = dataclasses.replace(config, sizes=tuple(s for s in config.sizes if s.name in wanted))
  result = run_study(config, args.out, analyse=not args.train_only)
  if args.replications:
    others = [json.loads(pathlib.Path(path).read_text()) for path in args.replications]
    result["replications"] = replication_summary([result, *others])
  if args.results:
    path = pathlib.Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=True, default=float) + "\n")
  if args.figure and result["units"]:
    plot_results(json.loads(json.dumps(result, default=float)), args.figure)
  print(json.dumps({"units": list(result["units"]), "wall_s": result["wall_s"]}))


if __name__ == "__main__":
  from govjax.study import memorization_signal  # noqa: PLC0415 (the config file's classes are the module's, not __main__'s)

  memorization_signal.main()
