"""Attribution validated by retraining: LDS of TracIn / TracIn-Adam / TRAK, trivial baselines, removal test.

Protocol (Park et al. 2023, the linear datamodeling score):

1. ``models`` full models (seeds ``0..models-1``) train on ``train_works`` chorales; every one is featurized
   (sparse projection, ``k`` dims) at each of its checkpoints, raw and Adam-preconditioned
   (:mod:`govjax.provenance.scorers`).
2. ``subsets`` work-level subsets keep each a random ``fraction`` (alpha = 0.5) of the training works; the same
   config is retrained on each, ``seeds_per_subset`` times (model seeds ``0, 1, ...``), and every retrained
   model's mean NLL on every query window is stored (``workdir/subsets/sNNN-rR/result.json``: the cache; an
   interrupted run resumes there, and a half-trained model resumes from its checkpoint).
3. Query windows are non-overlapping context windows of *held-out* works (the validation and test splits,
   ``queries_per_work`` each, evaluation) and of ``calibration_works`` unused train-split works (calibration:
   only TRAK's damping is chosen there). A scorer's prediction for subset ``S`` and query ``q`` is
   ``sum_{n in S} tau(q, n)``; LDS is the Spearman correlation across subsets of the prediction with the
   retrained models' negative NLL (averaged over their seeds), averaged over queries, with a 95% bootstrap
   interval over query works (:func:`govjax.core.intervals.work_bootstrap`).
4. Baselines in the same run: token n-gram overlap (distinct n-grams of the query found in a kept window, summed
   over kept windows) and the count of kept windows.
5. Removal: ``outputs`` continuations sampled from full model 0 (prompts: openings of held-out works). For each
   retrain seed in ``removal_seeds`` (never 0: model 0 sampled the outputs, so any other model, even one trained on
   every work, gives them a higher NLL, and that rise would be counted for top-k and random-k alike), the config
   is retrained on every work (the reference), without the ``removal_k`` works a scorer blames most for each
   output, and without each of ``random_draws`` random sets of ``removal_k`` works (shared by all outputs). An
   output's rise is its continuation NLL under a removal retrain minus under the same seed's reference, averaged
   over seeds (and random sets); reported: top-k over random-k (ratio of means over outputs) and top-k minus
   random-k, both with bootstrap intervals over outputs.

Command (not run in CI; the full chorale subset ``spq4_max120`` prepared under ``~/.cache/govjax/data``):
  nice -n 10 python -m experiments.attribution --config experiments/configs/attribution.py \\
      --workdir runs/attribution --out experiments/results/attribution.json \\
      --figure experiments/results/attribution.png

Runtime: 51.8 minutes on 2 shared CPU cores with ``experiments/configs/attribution.py`` (124 retrains of 11-61 s);
a pass over a finished cache 35-55 s.
Expected (measured) result: LDS 0.332 [0.296, 0.366] for TracIn, 0.394 for TracIn-Adam, 0.631 [0.605, 0.658] for
the TRAK-style scorer (above 8-gram overlap, 0.300); removal: top-k minus random-k +0.033 [+0.020, +0.045] nats/token,
ratio not bounded (see the config's docstring
and experiments/RESULTS.md, "Attribution validated by retraining").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from govjax.core.config import TrainConfig
from govjax.core.intervals import work_bootstrap
from govjax.core.losses import token_losses
from govjax.provenance.datamodels import (
    draw_subsets,
    lds_per_query,
    ngram_overlap,
    query_windows,
    ratio_of_means,
    summarize,
)
from govjax.provenance.featurize import FeatureConfig, transformer_featurizer
from govjax.provenance.query import aggregate_per_work
from govjax.provenance.record import RunCheckpoints, read_training_record
from govjax.provenance.runs import training_examples
from govjax.provenance.scorers import checkpoint_features, ensemble, tracin_scores, trak_damping, trak_scores
from govjax.train.data import build_training_data, load_works
from govjax.train.loop import restore_model, train
from govjax.train.sampling import prompts_from_works, sample_model

SCORERS = ("tracin", "tracin_unit", "tracin_adam", "tracin_ensemble", "tracin_adam_ensemble", "trak",
           "final_dot_ensemble")


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
  """Settings of the attribution experiment (see the module docstring for the protocol)."""

  train: TrainConfig
  train_works: int = 40
  calibration_works: int = 10
  queries_per_work: int = 5
  subsets: int = 50
  seeds_per_subset: int = 2
  fraction: float = 0.5
  models: int = 3
  checkpoints: int = 5
  k: int = 1024
  dampings: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
  ngrams: tuple[int, ...] = (8, 16)
  outputs: int = 6
  prompt_frames: int = 4
  temperature: float = 1.0
  removal_k: int = 5
  random_draws: int = 3
  removal_seeds: tuple[int, ...] = (1, 2)  # retrain seeds of the removal test; never 0, the seed that sampled
  removal_scorers: tuple[str, ...] = ()  # besides the default scorer (best LDS on the calibration queries)
  seed: int = 0
  resamples: int = 2000


def load_attribution_config(path: str | pathlib.Path) -> AttributionConfig:
  """``get_config()`` of a Python config file."""
  spec = importlib.util.spec_from_file_location("attribution_config", str(path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# ------------------------------------------------------------------------------------------------- data


def select_works(works: dict[str, list], config: AttributionConfig) -> dict[str, list]:
  """Training, calibration and query works: a seeded choice of train-split works, the held-out splits."""
  pool = list(works["train"])
  need = config.train_works + config.calibration_works
  if len(pool) < need:
    raise ValueError(f"the train split has {len(pool)} works, the config needs {need} (train_works + "
                     "calibration_works)")
  order = np.random.default_rng(config.seed).permutation(len(pool))
  train_works = sorted((pool[i] for i in order[: config.train_works]), key=lambda w: w.work_id)
  calibration = [pool[i] for i in order[config.train_works: need]]
  query = list(works["validation"]) + list(works["test"])
  if not query:
    raise ValueError("no held-out works (validation and test splits are empty): nothing to query")
  return {"train": train_works, "calibration": calibration, "query": query}


# ----------------------------------------------------------------------------------------------- training


def train_on(config: TrainConfig, works: Sequence, workdir: pathlib.Path, *, seed: int, steps_between: int = 0):
  """Trains ``config`` (with ``seed``) on ``works``, resuming a run already there; returns the TrainResult."""
  cfg = dataclasses.replace(config, seed=int(seed),
                            checkpoint_every=steps_between or config.num_steps,
                            max_to_keep=None if steps_between else 1, eval_every=10 ** 9)
  data = build_training_data(cfg, works={"train": list(works), "validation": [], "test": []})
  return train(cfg, workdir, data=data, progress=False), data


def make_nll(graphdef) -> Callable[..., np.ndarray]:
  """``nll(params, tokens, start=1) -> [Q]``: mean NLL of each row's tokens from position ``start`` on."""
  @jax.jit
  def losses(params, tokens):
    loss, weight = token_losses(nnx.merge(graphdef, params)(tokens), tokens)
    return loss, weight

  def nll(params, tokens: np.ndarray, start: int = 1) -> np.ndarray:
    out = []
    for first in range(0, len(tokens), 64):
      chunk = np.asarray(tokens[first: first + 64], np.int32)
      loss, weight = (np.asarray(x, np.float64)[:, max(start, 1) - 1:] for x in losses(params, chunk))
      out.append(loss.sum(axis=1) / np.maximum(weight.sum(axis=1), 1.0))
    return np.concatenate(out)

  return nll


# ------------------------------------------------------------------------------------------------ features


def model_features(workdir: pathlib.Path, data, queries: np.ndarray, k: int, seed: int) -> dict[str, np.ndarray]:
  """Raw and Adam training features ``[C, N, k]``, raw query features ``[C, Q, k]`` and learning rates ``[C]``
  of one trained run, at all its checkpoints (the routing log's masks, as ``govjax index`` uses them)."""
  examples = training_examples(data)
  record = read_training_record(workdir, num_examples=len(examples))
  raw, adam, query = [], [], []
  masks = record.credit_masks()
  with RunCheckpoints(workdir) as run:
    featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers,
                                        config=FeatureConfig(k=k, seed=seed))
    for c, step in enumerate(record.steps):
      ckpt = run.load(step)
      inputs = {"tokens": examples.tokens}
      raw.append(checkpoint_features(featurizer, ckpt, inputs, masks[c]))
      adam.append(checkpoint_features(featurizer, ckpt, inputs, masks[c], adam=True))
      query.append(checkpoint_features(featurizer, ckpt, {"tokens": queries}))
  return {"raw": np.stack(raw), "adam": np.stack(adam), "query": np.stack(query),
          "learning_rates": record.learning_rates, "example_work": examples.work_index,
          "tokens": examples.tokens}


def output_features(workdir: pathlib.Path, num_examples: int, outputs: np.ndarray, k: int, seed: int) -> np.ndarray:
  """Raw query features ``[C, O, k]`` of ``outputs`` at every checkpoint of one trained run (the same projection
  and checkpoints as :func:`model_features`, so they score against its training features)."""
  steps = read_training_record(workdir, num_examples=num_examples).steps
  with RunCheckpoints(workdir) as run:
    featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers,
                                        config=FeatureConfig(k=k, seed=seed))
    return np.stack([checkpoint_features(featurizer, run.load(step), {"tokens": outputs}) for step in steps])


def unit(x: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def scorer_scores(features: Sequence[dict[str, np.ndarray]], damping: float) -> dict[str, np.ndarray]:
  """``{scorer: [Q, N]}`` from the per-model features (model 0 first); ``damping`` relative (TRAK)."""
  first = features[0]
  tracin = [tracin_scores(f["raw"], f["query"], f["learning_rates"]) for f in features]
  adam = [tracin_scores(f["adam"], f["query"], f["learning_rates"]) for f in features]
  trak = [trak_scores(f["raw"][-1], f["query"][-1], damping=trak_damping(f["raw"][-1], relative=damping))
          for f in features]
  return {
      "tracin": tracin[0],
      "tracin_unit": tracin_scores(unit(first["raw"]), unit(first["query"]), first["learning_rates"]),
      "tracin_adam": adam[0],
      "tracin_ensemble": ensemble(tracin),
      "tracin_adam_ensemble": ensemble(adam),
      "trak": ensemble(trak),
      # TRAK without the inverse (the limit of large damping): final-checkpoint gradient products, ensembled.
      "final_dot_ensemble": ensemble([f["query"][-1].astype(np.float64) @ f["raw"][-1].T.astype(np.float64)
                                      for f in features]),
  }


# --------------------------------------------------------------------------------------------------- LDS


def subset_runs(config: AttributionConfig, works: dict, subsets: np.ndarray, queries: np.ndarray,
                workdir: pathlib.Path, log: Callable[[str], None], seeds: Sequence[int]) -> None:
  """Retrains every subset with every seed in ``seeds`` that is not cached yet."""
  for r in seeds:
    for s, keep in enumerate(subsets):
      out = workdir / "subsets" / f"s{s:03d}-r{r}"
      if (out / "result.json").is_file():
        continue
      start = time.perf_counter()
      kept = [w for w, k in zip(works["train"], keep, strict=True) if k]
      result, _ = train_on(config.train, kept, out / "run", seed=r)
      nll = make_nll(result.graphdef)(result.state.params, queries)
      (out / "result.json").write_text(json.dumps({"kept": keep.astype(int).tolist(), "seed": r,
                                                   "nll": nll.tolist(),
                                                   "seconds": round(time.perf_counter() - start, 2)}))
      log(f"subset {s} seed {r}: {time.perf_counter() - start:.1f} s")


def read_subsets(workdir: pathlib.Path, subsets: np.ndarray, seeds: int) -> tuple[np.ndarray, np.ndarray, dict]:
  """Mean NLL over the cached seeds ``< seeds`` ``[S, Q]`` of the subsets with at least one result, their indices,
  and the per-seed NLLs ``{seed: {subset: [Q]}}``."""
  rows, index, per_seed = [], [], {}
  for s, keep in enumerate(subsets):
    results = [json.loads(p.read_text()) for p in sorted((workdir / "subsets").glob(f"s{s:03d}-r*/result.json"))]
    results = [r for r in results if r["seed"] < seeds]
    if not results:
      continue
    for res in results:
      if np.asarray(res["kept"], bool).tolist() != keep.tolist():
        raise ValueError(f"{workdir}/subsets/s{s:03d}: cached subset differs from the config's draw")
      per_seed.setdefault(res["seed"], {})[s] = np.asarray(res["nll"])
    rows.append(np.mean([r["nll"] for r in results], axis=0))
    index.append(s)
  return np.asarray(rows), np.asarray(index, np.int64), per_seed


def removal_runs(config: AttributionConfig, train_works: Sequence, removal_sets: dict[str, list[list[int]]],
                 outputs: np.ndarray, prompt_tokens: int, workdir: pathlib.Path, log: Callable[[str], None]
                 ) -> dict[tuple[str, int], np.ndarray]:
  """Retrains the config without each set of works (the empty set: the reference), once per removal seed.

  Returns:
    ``{(removal_key, seed): continuation NLL [O]}``; cached per set and seed in
    ``workdir/removal/<key>-r<seed>/result.json`` (checked against the outputs' count).
  """
  out = {}
  every = [[], *(removed for sets in removal_sets.values() for removed in sets)]
  for seed in config.removal_seeds:
    for removed in every:
      key = removal_key(train_works, removed)
      if (key, seed) in out:
        continue
      where = workdir / "removal" / f"{key}-r{seed}"
      if not (where / "result.json").is_file():
        start = time.perf_counter()
        kept = [w for i, w in enumerate(train_works) if i not in set(removed)]
        result, _ = train_on(config.train, kept, where / "run", seed=seed)
        nll = make_nll(result.graphdef)(result.state.params, outputs, start=prompt_tokens)
        (where / "result.json").write_text(json.dumps({"removed": [train_works[i].work_id for i in removed],
                                                       "seed": seed, "nll": nll.tolist(),
                                                       "seconds": round(time.perf_counter() - start, 2)}))
        log(f"removal {key} seed {seed}: {time.perf_counter() - start:.1f} s")
      nll = np.asarray(json.loads((where / "result.json").read_text())["nll"])
      if nll.shape != (len(outputs),):
        raise ValueError(f"{where}/result.json: field 'nll' holds {nll.shape[0]} outputs, the run has "
                         f"{len(outputs)}; use a fresh --workdir for another number of outputs")
      out[(key, seed)] = nll
  return out


def removal_key(train_works: Sequence, removed: Sequence[int]) -> str:
  ids = ",".join(sorted(train_works[i].work_id for i in removed))
  return hashlib.sha256(ids.encode()).hexdigest()[:12]


def removal_sets_for(scores: dict[str, np.ndarray], example_work: np.ndarray, config: AttributionConfig,
                     num_works: int, scorers: Sequence[str]) -> dict[str, list[list[int]]]:
  """Per output, the top ``removal_k`` works of each of ``scorers``, and ``random_draws`` random sets shared by
  every output: ``{"<scorer>": [set per output], "random": [set per draw]}`` (scores ``[O, N]``)."""
  rng = np.random.default_rng([config.seed, 11])
  num_outputs = next(iter(scores.values())).shape[0]
  out = {}
  for name in scorers:
    out[name] = [sorted(np.argsort(-aggregate_per_work(scores[name][o], example_work, num_works),
                                   kind="stable")[: config.removal_k].tolist()) for o in range(num_outputs)]
  out["random"] = [sorted(rng.choice(num_works, config.removal_k, replace=False).tolist())
                   for _ in range(config.random_draws)]
  return out


def removal_summary(config: AttributionConfig, train_works: Sequence, sets: dict[str, list[list[int]]],
                    nll: dict[tuple[str, int], np.ndarray], scorers: Sequence[str]) -> dict:
  """Rises against the same seed's reference, averaged over seeds; ratio and difference per scorer.

  Args:
    config: the settings (``removal_seeds``, ``seed``, ``resamples``).
    train_works: the training works (set keys).
    sets: from :func:`removal_sets_for`.
    nll: from :func:`removal_runs`.
    scorers: the scorers with top-k sets.

  Returns:
    ``{"per_scorer": {name: {"top_k_over_random_k", "top_k_minus_random_k", "top_k_rise"}},
    "random_k_rise", "reference_nll"}`` (rises per output, means over seeds).
  """
  seeds = list(config.removal_seeds)
  reference = {seed: nll[(removal_key(train_works, []), seed)] for seed in seeds}

  def rise(removed, seed):
    return nll[(removal_key(train_works, removed), seed)] - reference[seed]

  random_rise = np.mean([rise(removed, seed) for removed in sets["random"] for seed in seeds], axis=0)
  per_scorer = {}
  for name in scorers:
    top = np.asarray([np.mean([rise(removed, seed)[o] for seed in seeds]) for o, removed in enumerate(sets[name])])
    diff = top - random_rise
    per_scorer[name] = {
        "top_k_over_random_k": ratio_of_means(top, random_rise, seed=config.seed, resamples=config.resamples),
        "top_k_minus_random_k": work_bootstrap(diff, np.arange(len(diff)), seed=config.seed,
                                               resamples=config.resamples),
        "top_k_rise": top.tolist()}
  return {"per_scorer": per_scorer, "random_k_rise": random_rise.tolist(),
          "reference_nll": {str(seed): reference[seed].tolist() for seed in seeds}}


# ------------------------------------------------------------------------------------------------- analysis


def analyse(config: AttributionConfig, scores: dict[str, np.ndarray], baseline_scores: dict[str, np.ndarray],
            example_work: np.ndarray, subsets: np.ndarray, nll: np.ndarray, per_seed: dict,
            query_work: np.ndarray, reference: str) -> dict:
  """LDS of every scorer and baseline on the evaluation queries, paired differences, retrain agreement.

  Args:
    scores, baseline_scores: ``{name: [Q, N]}`` on the evaluation queries.
    example_work: ``[N]`` work of every training example.
    subsets: ``[S, W]`` kept works of the subsets with results; ``nll``: ``[S, Q]`` their mean NLL.
    per_seed: ``{seed: {subset: [Q]}}``.
    query_work: ``[Q]`` work of every evaluation query (the bootstrap groups).
    reference: the scorer whose paired differences with every other scorer and baseline are reported.
  """
  keep = subsets[:, example_work].astype(np.float64)  # [S, N]
  actual = -nll
  boot = {"seed": config.seed, "resamples": config.resamples}
  per_query = {name: lds_per_query(keep @ s.T, actual) for name, s in {**scores, **baseline_scores}.items()}
  per_query["kept_windows"] = lds_per_query(np.repeat(keep.sum(axis=1, keepdims=True), nll.shape[1], 1), actual)
  out = {"lds": {n: summarize(per_query[n], query_work, **boot) for n in scores},
         "baselines": {n: summarize(v, query_work, **boot) for n, v in per_query.items() if n not in scores}}
  best = max(scores, key=lambda n: np.nanmean(per_query[n]))
  out["paired"] = {f"{reference}_minus_{other}": summarize(per_query[reference] - per_query[other], query_work,
                                                           **boot)
                   for other in per_query if other != reference}
  out["paired_vs_tracin"] = {f"{name}_minus_tracin": summarize(per_query[name] - per_query["tracin"], query_work,
                                                               **boot)
                             for name in scores if name not in ("tracin", reference)}
  seeds = sorted(per_seed)
  if len(seeds) >= 2:
    both = sorted(set(per_seed[seeds[0]]) & set(per_seed[seeds[1]]))
    if len(both) >= 3:
      a = -np.stack([per_seed[seeds[0]][s] for s in both])
      b = -np.stack([per_seed[seeds[1]][s] for s in both])
      out["retrain_seed_agreement"] = summarize(lds_per_query(a, b), query_work, **boot)
      out["retrain_seed_agreement"]["subsets"] = len(both)
  out["best_on_evaluation"] = best
  return out


def calibrate_damping(config: AttributionConfig, features: Sequence[dict], cal: slice, example_work: np.ndarray,
                      subsets: np.ndarray, nll: np.ndarray) -> tuple[float, dict]:
  """TRAK's relative damping with the highest mean LDS on the *calibration* queries."""
  keep = subsets[:, example_work].astype(np.float64)
  by = {}
  for damping in config.dampings:
    trak = ensemble([trak_scores(f["raw"][-1], f["query"][-1][cal],
                                 damping=trak_damping(f["raw"][-1], relative=damping)) for f in features])
    by[str(damping)] = float(np.nanmean(lds_per_query(keep @ trak.T, -nll[:, cal])))
  best = max(config.dampings, key=lambda d: by[str(d)])
  return float(best), by


def verdicts(results: dict, default: str) -> dict:
  """Plain verdicts against the issue's goals for the scorer ``default``."""
  lds = results["lds"][default]
  out = {"lds_at_least_0.4": "met" if lds["ci95"][0] >= 0.4 else
         ("not resolved" if lds["ci95"][1] >= 0.4 else "not met")}
  for other in ["trak", *results["baselines"]]:
    if other == default:
      continue
    key = f"{default}_minus_{other}"
    diff = results["paired"].get(key)
    if diff is not None:
      out[f"above_{other}"] = ("met" if diff["ci95"][0] > 0 else "not met" if diff["ci95"][1] < 0
                               else "not resolved")
  removal = results.get("removal", {}).get("top_k_over_random_k")
  if removal is not None:
    out["removal_ratio_at_least_3"] = ("met" if removal["ci95"][0] >= 3 else
                                      "not resolved" if removal["ci95"][1] >= 3 else "not met")
  return out


def plot(results: dict, path: str | pathlib.Path) -> None:
  """Figure from the results JSON: LDS with 95% intervals (scorers, baselines); removal ratio per scorer."""
  import matplotlib  # noqa: PLC0415  (plotting only when a figure is asked for)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2.2, 1]})
  items = list(results["lds"].items()) + list(results["baselines"].items())
  for i, (name, v) in enumerate(items):
    color = "tab:blue" if name in results["lds"] else "tab:gray"
    left.errorbar(i, v["mean"], yerr=[[v["mean"] - v["ci95"][0]], [v["ci95"][1] - v["mean"]]], fmt="o",
                  color=color, capsize=3)
  left.axhline(0.4, color="tab:red", ls="--", lw=1, label="goal 0.4")
  left.axhline(0.0, color="black", lw=0.5)
  left.set_xticks(range(len(items)), [n for n, _ in items], rotation=30, ha="right", fontsize=8)
  left.set_ylabel("LDS (Spearman, mean over queries)")
  left.set_title(f"LDS: {results['subsets']} subsets, {results['queries']} held-out queries")
  left.legend(fontsize=8)
  per = results.get("removal", {}).get("per_scorer", {})
  for i, v in enumerate(per.values()):
    ratio = v["top_k_over_random_k"]
    right.errorbar(i, ratio["mean"], yerr=[[ratio["mean"] - ratio["ci95"][0]], [ratio["ci95"][1] - ratio["mean"]]],
                   fmt="o", capsize=3, color="tab:green")
  right.axhline(3.0, color="tab:red", ls="--", lw=1, label="goal 3")
  right.axhline(1.0, color="black", lw=0.5)
  right.set_xticks(range(len(per)), list(per), rotation=30, ha="right", fontsize=8)
  right.set_ylabel("NLL rise: top-k removed / random-k removed")
  right.set_title(f"Removal: {results['removal']['outputs']} outputs, k = {results['removal']['k']}")
  right.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ---------------------------------------------------------------------------------------------------- run


def run(config: AttributionConfig, workdir: str | pathlib.Path, *, works: dict | None = None,
        log: Callable[[str], None] = print) -> dict:
  """The whole experiment (resumable: every retrain and feature set is cached under ``workdir``).

  Args:
    config: the settings.
    workdir: cache directory.
    works: ``{"train", "validation", "test"}`` works (default: ``load_works(config.train)``).
    log: progress lines.

  Returns:
    The results (the JSON document).
  """
  wall = time.perf_counter()
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  started_file = workdir / "started.json"  # when the cache was begun: the experiment's wall clock spans resumes
  if not started_file.is_file():
    started_file.write_text(json.dumps({"started_unix": time.time()}))
  sel = select_works(load_works(config.train) if works is None else works, config)
  context, num_works = config.train.model.context, config.train_works
  eval_q, eval_owner = query_windows(sel["query"], context, config.queries_per_work)
  cal_q, _ = query_windows(sel["calibration"], context, config.queries_per_work)
  steps_between = max(1, config.train.num_steps // config.checkpoints)

  # Full models, the outputs sampled from model 0, and every model's features.
  data = None
  for m in range(config.models):
    start = time.perf_counter()
    result, data_m = train_on(config.train, sel["train"], workdir / f"full-{m}", seed=m, steps_between=steps_between)
    data = data if data is not None else data_m
    log(f"full model {m}: {time.perf_counter() - start:.1f} s")
  outputs_file = workdir / f"outputs-{config.outputs}.npz"
  if not outputs_file.is_file():
    model, _, _ = restore_model(workdir / "full-0")
    prompts = prompts_from_works(sel["query"], num_samples=config.outputs, prompt_frames=config.prompt_frames)
    samples = sample_model(model, prompts, num_frames=context // 4, seed=config.seed, temperature=config.temperature)
    np.savez(outputs_file, tokens=np.stack([s.tokens for s in samples]), prompt_tokens=samples[0].prompt_tokens,
             prompt_work=[s.prompt_work_id for s in samples])
  saved = np.load(outputs_file)
  outputs, prompt_tokens = saved["tokens"], int(saved["prompt_tokens"])
  # The retrained models' NLLs and the features are cached for these rows; caches written when the rows also held
  # outputs have them at the end, and only the first len(queries) rows are read.
  queries = np.concatenate([eval_q, cal_q])
  ev, cal = slice(0, len(eval_q)), slice(len(eval_q), len(eval_q) + len(cal_q))
  features = []
  for m in range(config.models):
    path = workdir / f"features-{m}.npz"
    if not path.is_file():
      start = time.perf_counter()
      np.savez(path, **model_features(workdir / f"full-{m}", data, queries, config.k, config.seed))
      log(f"features of model {m}: {time.perf_counter() - start:.1f} s")
    features.append(dict(np.load(path)))
    path = workdir / f"output-features-{m}-{config.outputs}.npz"
    if not path.is_file():
      np.savez(path, query=output_features(workdir / f"full-{m}", len(features[-1]["example_work"]), outputs,
                                           config.k, config.seed))
    features[-1]["output_query"] = np.load(path)["query"]
  example_work, example_tokens = features[0]["example_work"], features[0]["tokens"]

  # Subsets (first seed), TRAK's damping on the calibration queries, removal, further seeds.
  subsets = draw_subsets(num_works, config.subsets, config.fraction, config.seed)
  subset_runs(config, sel, subsets, queries, workdir, log, seeds=[0])
  damping_file = workdir / "trak_damping.json"
  if not damping_file.is_file():
    nll, index, _ = read_subsets(workdir, subsets, config.seeds_per_subset)
    damping, by = calibrate_damping(config, features, cal, example_work, subsets[index], nll)
    damping_file.write_text(json.dumps({"damping": damping, "calibration_lds": by}))
  calibration = json.loads(damping_file.read_text())
  scores = scorer_scores(features, calibration["damping"])
  nll, index, _ = read_subsets(workdir, subsets, config.seeds_per_subset)
  calibration_lds = {n: float(np.nanmean(lds_per_query(subsets[index][:, example_work].astype(float) @ s[cal].T,
                                                       -nll[:, cal]))) for n, s in scores.items()}
  default = max(SCORERS, key=lambda n: calibration_lds[n])  # chosen on the calibration queries only
  removal_scorers = list(dict.fromkeys([default, *config.removal_scorers]))
  model0 = restore_model(workdir / "full-0")[0]
  nll_sampler = make_nll(nnx.split(model0, nnx.Param)[0])(nnx.split(model0, nnx.Param)[1], outputs,
                                                          start=prompt_tokens)
  output_scores = scorer_scores([{**f, "query": f["output_query"]} for f in features], calibration["damping"])
  sets = removal_sets_for(output_scores, example_work, config, num_works, removal_scorers)
  removal_nll = removal_runs(config, sel["train"], sets, outputs, prompt_tokens, workdir, log)
  subset_runs(config, sel, subsets, queries, workdir, log, seeds=range(1, config.seeds_per_subset))

  # Analysis.
  nll, index, per_seed = read_subsets(workdir, subsets, config.seeds_per_subset)
  eval_scores = {n: s[ev] for n, s in scores.items()}
  baseline_scores = {f"ngram{n}": ngram_overlap(eval_q, example_tokens, n) for n in config.ngrams}
  results = analyse(config, eval_scores, baseline_scores, example_work, subsets[index], nll[:, ev],
                    {seed: {s: v[ev] for s, v in d.items()} for seed, d in per_seed.items()}, eval_owner, default)
  removal = removal_summary(config, sel["train"], sets, removal_nll, removal_scorers)
  headline = removal["per_scorer"][default]
  results["removal"] = {"top_k_over_random_k": headline["top_k_over_random_k"],
                        "top_k_minus_random_k": headline["top_k_minus_random_k"], "scorer": default, **removal,
                        "sampler_nll": nll_sampler.tolist(), "k": config.removal_k,
                        "random_draws": config.random_draws, "seeds": list(config.removal_seeds),
                        "outputs": len(outputs)}
  cached = [p for p in workdir.glob("*/*/result.json")
            if p.parent.parent.name != "removal" or "-r" in p.parent.name]  # not the earlier seed-0 removal design
  seconds = [json.loads(p.read_text())["seconds"] for p in cached]
  started = json.loads(started_file.read_text())["started_unix"]
  last = max([p.stat().st_mtime for p in cached], default=started)
  return {
      "subsets": int(len(index)), "queries": int(len(eval_q)), "query_works": int(len(set(eval_owner.tolist()))),
      "seeds_per_subset": {str(s): len(v) for s, v in per_seed.items()},
      **results,
      "default_scorer": default,
      "calibration": {"queries": int(len(cal_q)), "works": len(sel["calibration"]), "lds": calibration_lds,
                      "trak_damping": calibration},
      "verdicts": verdicts(results, default),
      "settings": {**{k: v for k, v in dataclasses.asdict(config).items() if k != "train"},
                   "train": config.train.to_dict(), "training_examples": int(len(example_work))},
      "retrain_seconds": {"mean": float(np.mean(seconds)) if seconds else None, "count": len(seconds),
                          "total": float(np.sum(seconds))},
      "machine": f"{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s), 2 shared CPU "
                 "cores, no GPU",
      "wall_clock": {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                     "last_retrain_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)),
                     "span_minutes": round((last - started) / 60, 1)},
      "analysis_wall_s": round(time.perf_counter() - wall, 1),
  }


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", help="results JSON")
  parser.add_argument("--figure", help="figure PNG (from the JSON)")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  results = run(load_attribution_config(args.config), args.workdir,
                log=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True))
  results["command"] = "python -m experiments.attribution " + " ".join(sys.argv[1:] if argv is None else argv)
  results["this_invocation_wall_s"] = round(time.perf_counter() - start, 1)
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
  if args.figure:
    plot(results, args.figure)
  print(json.dumps({k: results[k] for k in ("subsets", "queries", "lds", "baselines", "verdicts")}, indent=1))
  return results


if __name__ == "__main__":
  main()
