"""Memorization probe: step-time overhead, and whether its evidence finds counterfactual memorization among windows
that were all trained equally often (a test the probe can fail).

Protocol (``govjax bench probe --json [--quick]``):

1. ``probe_overhead``: one model (4 layers, width 128, context 128, batch 32; ``--quick``: 2 layers, width 64,
   context 64, batch 16), two jitted train steps from the same state: the plain step and the step with the
   probe plugin (statistics from the step's own forward pass, per-example state, adaptive depth). Both are
   compiled first, then timed alternately (``--overhead-steps`` each, blocking on the result); the figure is
   median(with probe) / median(without). Target <= 1.03.
2. ``probe_auc_equal_frequency``: ``--models`` small models (2 layers, width 64, context 64) are trained, each on a
   complementary half of ``--pool-works`` Essen folk melodies (music21's corpus, ABC text by character; two windows per
   song), by epochs: every trained window exactly as often as every other, ``--steps`` steps of batch 16. The probe
   rides along in each (observing: ``adaptive=False``) with its default signal, the memorization gap
   (:mod:`govjax.probe.gap`): each window's root-loss EMA (0.5, over its sightings; the mean of ``sqrt(token loss)``) as
   of the calibration at which the loss of 32 never-trained songs was lowest, averaged with its n-gram reference
   (:mod:`govjax.probe.reference`, order ``--reference-order``, 4: its surprisal under the model's other training
   songs; ``ProbeSpec`` leaves it off by default, as it helps on these melodies and hurts on chorales),
   minus the same EMA at the end, from the steps' own forward passes. Paired against it, same bootstrap draws:
   ``probe_auc_minus_gap_without_reference`` (the root gap alone, ``memorization_gap_root``) and
   ``probe_auc_minus_gap_in_nats`` (the gap in nats, the flagging scale). The probe calibrates every
   ``--calibrate-every`` steps on those 32 songs (never audited). ``--signal`` picks another statistic (e.g.
   ``representation_entropy --layer 0 --uncentred --direction high``). Labels are counterfactual (Zhang et al. 2021): a
   window's mean loss in the models that did not train on it minus in those that did, leaving out the model being
   scored; *memorized* = the top quarter of a model's trained windows (fixed before looking at any signal). The figure
   is the ROC AUC of the probe's evidence against these labels, pooled over models and ``--data-seeds`` data seeds
   (within-model ranks), with a 95% interval by bootstrap over songs. Data seeds 0-2 were used to design the gap (its
   reference point, ``reference_ema``, the root loss, the reference's order and weight); seeds 3-5 tested the root gap;
   the bench starts at seed 6. ``probe_flag_rate`` gives the share of memorized and of other windows whose final gap is
   above the probe's threshold (what adaptive depth would lower). The top quarter is a relative label: after 60 epochs
   every trained window is memorized by several nats per token, so ``probe_flags_by_counterfactual`` also compares the
   flags with the *absolute* leave-one-out counterfactual memorization at ``--flag-steps`` steps (during the phase where
   windows cross the margin): the flag rate among pairs above ``--margin`` nats per token (recall) and among pairs at or
   below it (false flags). ``auc_equal_frequency`` holds the same AUC for every statistic of :mod:`govjax.probe.signals`
   on the final models (representation entropy of every layer included), the model-free ``zlib_bits`` and
   ``ngram_reference``, oriented as *higher value = memorized* (below 0.5: lower value = memorized). Target >= 0.9.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from govjax.core.config import ModelSpec, TrainConfig
from govjax.core.intervals import clopper_pearson, grouped_auc
from govjax.data.folk import FOLK_VOCAB_SIZE, folk_works
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.probe.monitor import ProbeSpec, make_probe_plugin
from govjax.probe.stats import zlib_bits_per_token
from govjax.train.counterfactual import (
    Trainer,
    complementary_subsets,
    leave_one_out_scores,
    top_quantile_labels,
    train_and_measure,
    within_model_ranks,
)
from govjax.train.step import create_train_state, make_train_step, plain_loss


def measure_overhead(*, layers: int, width: int, context: int, batch: int, steps: int, seed: int,
                     signal: str = "loss", ema: float = 0.5, layer: int = -1, center: bool = True,
                     direction: str = "low") -> dict:
  """Median step time with the probe over without, same state and batches, timed alternately."""
  config = TrainConfig(model=ModelSpec(num_layers=layers, width=width, num_heads=4, context=context),
                       num_steps=1000, batch_size=batch, seed=seed)
  groups = layers + 2
  num_examples = 4096
  plugin = make_probe_plugin(ProbeSpec(enabled=True, signal=signal, ema=ema, layer=layer, center=center,
                                         direction=direction), groups)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=VOCAB_SIZE,
                                              extras={"probe": plugin.init(num_examples)})
  plain = make_train_step(graphdef, tx, plain_loss, donate=False)
  probed = make_train_step(graphdef, tx, functools.partial(plain_loss, return_hidden=True), plugins=(plugin,),
                           donate=False)
  plain_state = state._replace(extras={})
  rng = np.random.default_rng(seed)
  batches = [{"tokens": jnp.asarray(rng.integers(3, VOCAB_SIZE, (batch, context)), jnp.int32),
              "example_id": jnp.asarray(rng.integers(0, num_examples, batch), jnp.int32)} for _ in range(4)]
  mask = jnp.ones((batch, groups), jnp.float32)
  for b in batches[:2]:
    jax.block_until_ready(plain(plain_state, b, mask))
    jax.block_until_ready(probed(state, b, mask))
  times = {"plain": [], "probe": []}
  for i in range(steps):
    b = batches[i % len(batches)]
    order = (("plain", plain, plain_state), ("probe", probed, state))
    for name, fn, st in order if i % 2 == 0 else order[::-1]:
      t0 = time.perf_counter()
      jax.block_until_ready(fn(st, b, mask))
      times[name].append(time.perf_counter() - t0)
  plain_ms = statistics.median(times["plain"]) * 1e3
  probe_ms = statistics.median(times["probe"]) * 1e3
  return {"probe_overhead": probe_ms / plain_ms, "step_ms_plain": plain_ms, "step_ms_probe": probe_ms,
          "overhead_model": f"{layers} layers, width {width}, context {context}, batch {batch}",
          "overhead_timed_steps": steps}


def equal_frequency_data(*, pool_works: int, calib_works: int, context: int, seed: int) -> dict:
  """Folk-melody windows: two per pool song (for the labels), one per never-trained calibration song."""
  songs = folk_works(min_length=2 * context)
  picked = np.random.default_rng(seed).permutation(len(songs))[:pool_works + calib_works]
  windows, work, pool_work = [], [], []
  for rank, index in enumerate(picked):
    tokens = songs[index].tokens
    for part in range(2 if rank < pool_works else 1):
      windows.append(tokens[part * context:(part + 1) * context])
      work.append(songs[index].work_id)
      pool_work.append(rank if rank < pool_works else -1)
  return {"windows": np.stack(windows).astype(np.int32), "work": np.array(work), "pool_work": np.array(pool_work)}


def probe_evidence_values(plugin, state, ids: np.ndarray) -> np.ndarray:
  """The probe's memorization evidence of windows ``ids`` (higher = more memorized) from its final state."""
  return plugin.evidence(state)[ids]


def equal_frequency_pairs(*, models: int, pool_works: int, steps: int, spec: ProbeSpec, seed: int, layers: int,
                          width: int, context: int, batch: int, quantile: float, calibrate_every: int,
                          flag_steps: tuple[int, ...] = ()) -> dict:
  """One data seed: trains ``models`` half-subset models with the observing probe; per (model, trained window)
  pair the counterfactual label, the song, the probe's evidence and every statistic of the final model, and at
  every step of ``flag_steps`` the window's leave-one-out counterfactual memorization (nats per token) and whether
  the probe flags it then."""
  data = equal_frequency_data(pool_works=pool_works, calib_works=32, context=context, seed=seed)
  windows, pool_work = data["windows"], data["pool_work"]
  pool, heldout = np.flatnonzero(pool_work >= 0), np.flatnonzero(pool_work < 0)
  config = TrainConfig(model=ModelSpec(num_layers=layers, width=width, num_heads=4, context=context),
                       num_steps=steps, batch_size=batch, learning_rate=3e-3, warmup_steps=20, seed=seed)
  plugin = make_probe_plugin(dataclasses.replace(spec, calibrate_every=calibrate_every), layers + 2)
  trainer = Trainer(config, FOLK_VOCAB_SIZE, plugins=(plugin,))
  subsets = complementary_subsets(pool_works, models, seed=seed)
  losses, evidence, gap_nats, gap_root, reference, flags, finals, train_s = [], [], [], [], [], [], [], 0.0
  loss_at = {s: [] for s in flag_steps}
  flags_at = {s: [] for s in flag_steps}
  for k in range(models):
    rows = pool[subsets[k][pool_work[pool]]]
    result = train_and_measure(dataclasses.replace(config, seed=seed * 1000 + k), windows, rows,
                               vocab_size=FOLK_VOCAB_SIZE, measure_at=tuple(sorted({*flag_steps, steps})),
                               data_seed=seed * 1000 + k, trainer=trainer, heldout=windows[heldout],
                               works=data["work"])
    finals.append(result["signals"][steps])
    losses.append(result["signals"][steps]["loss"][pool])
    evidence.append(probe_evidence_values(plugin, result["extras"]["probe"], pool))
    if plugin.gap:
      probe_state = result["extras"]["probe"]
      gap_nats.append(np.asarray(plugin.gap_nats(probe_state), np.float64)[pool])
      gap_root.append(plugin.evidence(probe_state._replace(difficulty=None))[pool])
      reference.append(np.asarray(probe_state.difficulty, np.float64)[pool])
    flags.append(plugin.flagged(result["extras"]["probe"])[pool])
    for s in flag_steps:
      loss_at[s].append(result["signals"][s]["loss"][pool])
      flags_at[s].append(plugin.flagged(result["extras_at"][s]["probe"])[pool])
    train_s += result["train_s"]
  member = subsets[:, pool_work[pool]]
  loo = leave_one_out_scores(np.stack(losses), member)
  loo_at = {s: leave_one_out_scores(np.stack(loss_at[s]), member) for s in flag_steps}
  gap_names = ["memorization_gap_nats", "memorization_gap_root", "ngram_reference"] if gap_nats else []
  names = list(finals[0]) + ["zlib_bits"] + gap_names
  zlib_bits = zlib_bits_per_token(windows[pool])
  out = {"model": [], "work": [], "label": [], "flag": [], "values": {name: [] for name in ["probe", *names]},
         "memorization_at": {s: [] for s in flag_steps}, "flag_at": {s: [] for s in flag_steps}}
  for k in range(models):
    trained = member[k]
    for s in flag_steps:
      out["memorization_at"][s].append(loo_at[s][k, trained])
      out["flag_at"][s].append(flags_at[s][k][trained])
    out["model"].append(np.full(trained.sum(), seed * 1000 + k))
    out["work"].append(data["work"][pool][trained])
    out["label"].append(top_quantile_labels(loo[k, trained], quantile))
    out["values"]["probe"].append(evidence[k][trained])
    out["flag"].append(flags[k][trained])
    for name in names:
      by_gap = {"memorization_gap_nats": gap_nats, "memorization_gap_root": gap_root, "ngram_reference": reference}
      source = (zlib_bits if name == "zlib_bits" else by_gap[name][k] if name in by_gap else finals[k][name][pool])
      out["values"][name].append(source[trained])
  return {"model": np.concatenate(out["model"]), "work": np.concatenate(out["work"]),
          "label": np.concatenate(out["label"]), "flag": np.concatenate(out["flag"]), "train_s": train_s,
          "values": {name: np.concatenate(v) for name, v in out["values"].items()},
          "memorization_at": {s: np.concatenate(v) for s, v in out["memorization_at"].items()},
          "flag_at": {s: np.concatenate(v) for s, v in out["flag_at"].items()}}


def flags_against_counterfactual(memorization: np.ndarray, flag: np.ndarray, margin: float) -> dict:
  """How the probe's flags match counterfactual memorization above ``margin`` (nats per token).

  Args:
    memorization: float ``[n]`` each (model, trained window) pair's leave-one-out counterfactual memorization.
    flag: bool ``[n]`` whether the probe flags the pair's window in that model.
    margin: the probe's ``memorization_margin``.

  Returns:
    ``share_above_margin``, ``flagged_above`` / ``flagged_below`` (the flag rate among pairs above / at or below
    the margin; None without such pairs) with Clopper-Pearson intervals, and the pair counts.

  Example:
    >>> out = flags_against_counterfactual(np.array([0.2, 0.9, 1.5]), np.array([False, True, True]), 0.5)
    >>> out["share_above_margin"], out["flagged_above"], out["flagged_below"]
    (0.6666666666666666, 1.0, 0.0)
  """
  memorization, flag = np.asarray(memorization, np.float64), np.asarray(flag, bool)
  ok = np.isfinite(memorization)
  above, below = ok & (memorization > margin), ok & (memorization <= margin)
  out = {"share_above_margin": float(above.sum() / max(ok.sum(), 1)), "pairs_above": int(above.sum()),
         "pairs_below": int(below.sum())}
  for name, rows in (("flagged_above", above), ("flagged_below", below)):
    out[name] = float(flag[rows].mean()) if rows.any() else None
    out[f"{name}_ci95"] = list(clopper_pearson(int(flag[rows].sum()), int(rows.sum()))) if rows.any() else None
  return out


def measure_equal_frequency(*, models: int, pool_works: int, steps: int, signal: str, ema: float,
                            seeds: tuple[int, ...], direction: str = "high", layer: int = 0, center: bool = False,
                            layers: int = 2, width: int = 64, context: int = 64, batch: int = 16,
                            quantile: float = 0.25, resamples: int = 1000, calibrate_every: int = 8,
                            margin: float = 0.5, flag_steps: tuple[int, ...] = (), reference_order: int = 4) -> dict:
  """Half-subset models for every data seed in ``seeds``; AUCs against counterfactual labels, pooled over seeds.

  Pairs of all seeds are pooled with within-model ranks; the interval resamples songs (a song drawn by two seeds
  is one cluster). At every step of ``flag_steps`` the probe's flags (with ``memorization_margin=margin``) are
  compared with the pairs' counterfactual memorization above the margin (:func:`flags_against_counterfactual`).
  """
  if models < 4 or models % 2:
    raise ValueError(f"the counterfactual labels need an even number of at least 4 models, got {models}")
  if not seeds:
    raise ValueError("measure_equal_frequency needs at least one data seed")
  spec = ProbeSpec(enabled=True, signal=signal, adaptive=False, ema=ema, direction=direction, layer=layer,
                   center=center, memorization_margin=margin, reference_order=reference_order)
  parts = [equal_frequency_pairs(models=models, pool_works=pool_works, steps=steps, spec=spec, seed=seed,
                                 layers=layers, width=width, context=context, batch=batch, quantile=quantile,
                                 calibrate_every=calibrate_every, flag_steps=flag_steps) for seed in seeds]
  model_of, work_of, labels = (np.concatenate([p[key] for p in parts]) for key in ("model", "work", "label"))

  def auc(values, n=resamples, versus=None):
    ranked = within_model_ranks(values, model_of)
    ok = np.isfinite(ranked)
    other = None
    if versus is not None:
      other = within_model_ranks(versus, model_of)
      ok &= np.isfinite(other)
      other = other[ok]
    return grouped_auc(ranked[ok], labels[ok], work_of[ok], resamples=n, seed=seeds[0], versus=other)

  def versus(name):
    values = [p["values"][name] for p in parts if name in p["values"]]
    return np.concatenate(values) if len(values) == len(parts) else None

  probe_values = np.concatenate([p["values"]["probe"] for p in parts])
  probe = auc(probe_values, versus=versus("memorization_gap_nats"))
  without_reference = (auc(probe_values, versus=versus("memorization_gap_root"))
                       if versus("memorization_gap_root") is not None else {})
  per_seed = {}
  for seed, part in zip(seeds, parts, strict=True):
    ranked = within_model_ranks(part["values"]["probe"], part["model"])
    ok = np.isfinite(ranked)
    per_seed[str(seed)] = grouped_auc(ranked[ok], part["label"][ok], part["work"][ok], resamples=0,
                                      seed=seed)["mean"]
  names = [name for name in parts[0]["values"] if name != "probe"]
  flag = np.concatenate([p["flag"] for p in parts])
  flag_rate = {"memorized": float(flag[labels].mean()), "other": float(flag[~labels].mean()),
               "memorized_ci95": list(clopper_pearson(int(flag[labels].sum()), int(labels.sum()))),
               "other_ci95": list(clopper_pearson(int(flag[~labels].sum()), int((~labels).sum())))}
  return {
      "probe_auc_equal_frequency": probe["mean"],
      "probe_auc_equal_frequency_ci95": probe["ci95"],
      "probe_auc_equal_frequency_per_seed": per_seed,
      "probe_auc_minus_gap_in_nats": probe.get("minus_versus"),
      "probe_auc_minus_gap_without_reference": without_reference.get("minus_versus"),
      "probe_reference_order": reference_order,
      "probe_signal": signal,
      "probe_ema": ema,
      "probe_direction": direction,
      "probe_layer": layer,
      "probe_centred": center,
      "probe_calibrate_every": calibrate_every,
      "probe_flag_rate": flag_rate,
      "probe_margin": margin,
      "probe_flags_by_counterfactual": {
          str(s): flags_against_counterfactual(np.concatenate([p["memorization_at"][s] for p in parts]),
                                               np.concatenate([p["flag_at"][s] for p in parts]), margin)
          for s in flag_steps},
      "auc_equal_frequency": {name: auc(np.concatenate([p["values"][name] for p in parts]), 0)["mean"]
                              for name in names},
      "equal_frequency_seeds": list(seeds),
      "equal_frequency_models": models,
      "equal_frequency_pool_works": pool_works,
      "equal_frequency_pairs": int(labels.size),
      "equal_frequency_label": f"top {quantile:.0%} of leave-one-out counterfactual memorization per model",
      "equal_frequency_steps": steps,
      "equal_frequency_epochs": steps * batch / (pool_works // 2 * 2),
      "equal_frequency_train_s": sum(p["train_s"] for p in parts),
  }


def run(args: argparse.Namespace) -> dict:
  if args.quick:
    overhead = measure_overhead(layers=2, width=64, context=64, batch=16, steps=args.overhead_steps, seed=args.seed,
                                signal=args.signal, ema=args.ema, layer=args.layer, center=not args.uncentred,
                                direction=args.direction)
    models, steps, seeds = min(args.models, 4), min(args.steps, 160), (args.seed,)
  else:
    overhead = measure_overhead(layers=4, width=128, context=128, batch=32, steps=args.overhead_steps,
                                seed=args.seed, signal=args.signal, ema=args.ema, layer=args.layer,
                                center=not args.uncentred, direction=args.direction)
    models, steps = args.models, args.steps
    seeds = tuple(args.seed + i for i in range(args.data_seeds))
  auc = measure_equal_frequency(models=models, pool_works=args.pool_works, steps=steps, signal=args.signal,
                                ema=args.ema, direction=args.direction, layer=args.layer, center=not args.uncentred,
                                seeds=seeds, calibrate_every=args.calibrate_every, margin=args.margin,
                                flag_steps=tuple(s for s in args.flag_steps if s <= steps),
                                reference_order=args.reference_order)
  result = {**overhead, **auc, "quick": bool(args.quick), "backend": jax.default_backend()}
  result["targets_met"] = bool(result["probe_overhead"] <= 1.03 and result["probe_auc_equal_frequency"] >= 0.9)
  return result
