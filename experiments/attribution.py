"""Attribution validated by retraining: LDS of TracIn / TracIn-Adam / TRAK / unprojected TRAK / datamodels, trivial
baselines, removal test, lineages of the outputs whose blamed works were shown to matter.

The retrains and their caches live in :mod:`experiments.attribution_retrains`, the features and score matrices in
:mod:`experiments.attribution_scores`; this module runs the protocol, analyses and plots.

Protocol (Park et al. 2023, the linear datamodeling score):

1. ``models`` full models (seeds ``0..models-1``) train on ``train_works`` chorales; every one is featurized
   (sparse projection, ``k`` dims) at each of its checkpoints, raw and Adam-preconditioned
   (:mod:`govjax.provenance.scorers`), and (``exact``) the Gram matrices of its unprojected gradients are kept for
   the unprojected TRAK scorers (``trak_exact_final``: final checkpoints; ``trak_exact``: every checkpoint).
   ``datamodel_subsets`` further retrains on subsets of their own (never the LDS subsets, never an LDS seed) fit
   the ``datamodels`` scorer (:func:`govjax.provenance.datamodels.fit_datamodels`).
2. ``subsets`` work-level subsets keep each a random ``fraction`` (alpha = 0.5) of the training works; the same
   config is retrained on each, ``seeds_per_subset`` times (model seeds ``0, 1, ...``), and every retrained
   model's mean NLL on every query window is stored (``workdir/subsets/sNNN-rR/result.json``: the cache; an
   interrupted run resumes there, and a half-trained model resumes from its checkpoint).
3. Query windows are non-overlapping context windows of *held-out* works (the validation and test splits,
   ``queries_per_work`` each, evaluation) and of ``calibration_works`` unused train-split works (calibration:
   the dampings, the datamodels' ridge and the default scorer are chosen there, once, against the first retrain
   seed, and kept in ``workdir/scorer_choice.json``). A scorer's prediction for subset ``S`` and query ``q`` is
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
6. Lineages: each output's lineage from the default scorer's top ``removal_k`` works
   (:func:`govjax.provenance.lineage.build_lineage`, with the works' licences and attribution duties), marked
   ``shown_to_matter`` when removing those works raised the output's NLL more than every random set did.
7. With depth routing (``train.governance.routing``), TracIn and TracIn-Adam are also scored with the routing masks
   removed (``tracin_unmasked``, ``tracin_adam_unmasked``): does crediting each example through the depth it
   trained at predict retraining better than ignoring it?

Command (not run in CI; the full chorale subset ``spq4_max120`` prepared under ``~/.cache/govjax/data``):
  nice -n 10 python -m experiments.attribution --config experiments/configs/attribution.py \\
      --workdir runs/attribution --out experiments/results/attribution.json \\
      --figure experiments/results/attribution.png

Runtime: about 1 hour on 2 idle CPU cores with ``experiments/configs/attribution.py`` (495 retrains of about 6 s,
features and Gram matrices about 6 minutes); a pass over a finished cache about 20 s.
Expected (measured) result: LDS 0.332 [0.296, 0.366] for TracIn, 0.631 [0.605, 0.658] for the TRAK-style scorer,
0.660 for exact TRAK, 0.715 [0.685, 0.743] for datamodels with the exact-TRAK prior (8-gram overlap 0.300); removal
ratio 6.13 [3.43, 22.35] for the TRAK-style scorer (see the config's docstring and experiments/RESULTS.md,
"Attribution validated by retraining").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from experiments.attribution_retrains import (
    AttributionConfig,
    datamodel_runs,
    load_attribution_config,
    make_nll,
    read_subsets,
    removal_lineages,
    removal_runs,
    removal_sets_for,
    removal_summary,
    select_works,
    selected_work_index,
    subset_runs,
    train_on,
    with_fixed_scenario,
)
from experiments.attribution_scores import exact_trak, model_features, model_grams, output_features, scorer_scores
from govjax.provenance.datamodels import (
    draw_subsets,
    fit_datamodels,
    lds_per_query,
    ngram_overlap,
    query_windows,
    spread_to_examples,
    summarize,
)
from govjax.provenance.lineage import work_entry
from govjax.provenance.query import aggregate_per_work
from govjax.provenance.scorers import ensemble, trak_damping, trak_scores
from govjax.train.data import load_works
from govjax.train.loop import restore_model
from govjax.train.sampling import prompts_from_works, sample_model

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
  if "trak" in scores:
    out["paired_vs_trak"] = {f"{name}_minus_trak": summarize(per_query[name] - per_query["trak"], query_work, **boot)
                             for name in scores if name not in ("trak", reference)}
  # Routed runs: depth-aware minus depth-blind credit, same gradients.
  out["paired_depth_aware"] = {
      f"{name}_minus_{name}_unmasked": summarize(per_query[name] - per_query[f"{name}_unmasked"], query_work, **boot)
      for name in ("tracin", "tracin_adam") if f"{name}_unmasked" in scores}
  out["best_on_evaluation"] = best
  return out


def best_on_calibration(grid: Sequence[float], scores_at: Callable[[float], np.ndarray], keep: np.ndarray,
                        margins: np.ndarray) -> tuple[float, dict]:
  """The value of ``grid`` whose calibration scores ``[Qc, N]`` have the highest mean LDS against ``margins``
  ``[S, Qc]`` (``keep`` ``[S, N]`` the subsets' kept windows), and the LDS at every value."""
  by = {str(v): float(np.nanmean(lds_per_query(keep @ scores_at(v).T, margins))) for v in grid}
  return float(max(grid, key=lambda v: by[str(v)])), by


def calibrate_damping(config: AttributionConfig, features: Sequence[dict], cal: slice, example_work: np.ndarray,
                      subsets: np.ndarray, nll: np.ndarray) -> tuple[float, dict]:
  """TRAK's relative damping with the highest mean LDS on the *calibration* queries."""
  return best_on_calibration(
      config.dampings,
      lambda d: ensemble([trak_scores(f["raw"][-1], f["query"][-1][cal], damping=trak_damping(f["raw"][-1], relative=d))
                          for f in features]),
      subsets[:, example_work].astype(np.float64), -nll[:, cal])


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
  if default != "trak" and "trak" in results["lds"]:  # the stricter reading: the two intervals do not overlap
    out["interval_above_trak_interval"] = "met" if lds["ci95"][0] > results["lds"]["trak"]["ci95"][1] else "not met"
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
  config = with_fixed_scenario(config, sel["train"], workdir)  # one rights assignment for every retrain
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
      np.savez(path, **model_features(workdir / f"full-{m}", data, queries, config.k, config.seed,
                                      unmasked=config.train.governance.routing != "none"))
      log(f"features of model {m}: {time.perf_counter() - start:.1f} s")
    features.append(dict(np.load(path)))
    path = workdir / f"output-features-{m}-{config.outputs}.npz"
    if not path.is_file():
      np.savez(path, query=output_features(workdir / f"full-{m}", len(features[-1]["example_work"]), outputs,
                                           config.k, config.seed))
    features[-1]["output_query"] = np.load(path)["query"]
    if config.exact:
      path = workdir / f"grams-{m}-{config.outputs}.npz"
      if not path.is_file():
        start = time.perf_counter()
        np.savez(path, **model_grams(workdir / f"full-{m}", data, [queries, outputs]))
        log(f"gradient Gram matrices of model {m}: {time.perf_counter() - start:.1f} s")
      grams = np.load(path)
      features[-1].update(gram=grams["gram"], cross=grams["cross0"], output_cross=grams["cross1"])
  # Training examples belong to the works the policy kept (a routed run may exclude some): their work index is
  # into the training data's catalogue; subsets, removal sets and datamodels index the selected training works.
  example_work = selected_work_index(features[0]["example_work"], data.catalogue.works, sel["train"])
  example_tokens = features[0]["tokens"]
  features_of_outputs = [{**f, "query": f["output_query"], **({"cross": f["output_cross"]} if "gram" in f else {})}
                         for f in features]

  # Subsets (first seed), TRAK's damping on the calibration queries, removal, further seeds.
  subsets = draw_subsets(num_works, config.subsets, config.fraction, config.seed)
  subset_runs(config, sel, subsets, queries, workdir, log, seeds=[0])
  damping_file = workdir / "trak_damping.json"
  if not damping_file.is_file():
    nll, index, _ = read_subsets(workdir, subsets, config.seeds_per_subset)
    damping, by = calibrate_damping(config, features, cal, example_work, subsets[index], nll)
    damping_file.write_text(json.dumps({"damping": damping, "calibration_lds": by}))
  calibration = json.loads(damping_file.read_text())
  datamodel = (datamodel_runs(config, sel, queries, outputs, prompt_tokens, workdir, log)
               if config.datamodel_subsets else None)

  prior_scorer = "trak_exact" if config.exact else "trak"  # the datamodels' prior: the best gradient scorer's kind

  def prior_of(scores: np.ndarray) -> np.ndarray:  # [Q, N] example scores -> [Q, W] work scores
    return np.stack([aggregate_per_work(row, example_work, num_works) for row in scores])

  def all_scores(feats: Sequence[dict], choice: dict, dm_margins: np.ndarray | None) -> dict[str, np.ndarray]:
    out = scorer_scores(feats, choice["dampings"])
    if dm_margins is not None:
      out["datamodels"] = spread_to_examples(fit_datamodels(datamodel[0], dm_margins, ridge=choice["ridge"]),
                                             example_work)
      out[f"datamodels_{prior_scorer}_prior"] = spread_to_examples(
          fit_datamodels(datamodel[0], dm_margins, ridge=choice["ridge_prior"], prior=prior_of(out[prior_scorer])),
          example_work)
    return out

  # The unprojected TRAK's dampings, the datamodels' ridge and the default scorer are chosen once, on the
  # calibration queries against the retrains cached by then (the first seed), and kept: removal sets depend on them.
  choice_file = workdir / "scorer_choice.json"
  if not choice_file.is_file():
    nll, index, _ = read_subsets(workdir, subsets, config.seeds_per_subset)
    keep_cal, margins_cal = subsets[index][:, example_work].astype(np.float64), -nll[:, cal]
    choice = {"dampings": {"trak": calibration["damping"]}, "ridge": None, "ridge_prior": None,
              "calibration_lds_by_value": {}}
    by = choice["calibration_lds_by_value"]
    cal_features = [{**f, "query": f["query"][:, cal], **({"cross": f["cross"][:, cal]} if "gram" in f else {})}
                    for f in features]
    if config.exact:
      for name, checkpoints in (("trak_exact_final", slice(-1, None)), ("trak_exact", slice(None))):
        choice["dampings"][name], by[name] = best_on_calibration(
            config.dampings, lambda d, c=checkpoints: exact_trak(cal_features, d, c), keep_cal, margins_cal)
    if datamodel is not None:
      choice["ridge"], by["datamodels"] = best_on_calibration(
          config.ridges, lambda r: spread_to_examples(fit_datamodels(datamodel[0], -datamodel[1][:, cal], ridge=r),
                                                      example_work), keep_cal, margins_cal)
      prior = prior_of(scorer_scores(cal_features, choice["dampings"])[prior_scorer])
      choice["ridge_prior"], by[f"datamodels_{prior_scorer}_prior"] = best_on_calibration(
          config.ridges, lambda r: spread_to_examples(
              fit_datamodels(datamodel[0], -datamodel[1][:, cal], ridge=r, prior=prior), example_work),
          keep_cal, margins_cal)
    cal_scores = all_scores(cal_features, choice, None if datamodel is None else -datamodel[1][:, cal])
    choice["calibration_lds"] = {n: float(np.nanmean(lds_per_query(keep_cal @ v.T, margins_cal)))
                                 for n, v in cal_scores.items()}
    choice["default"] = max(choice["calibration_lds"], key=choice["calibration_lds"].get)
    choice["retrain_seeds"] = sorted(read_subsets(workdir, subsets, config.seeds_per_subset)[2])
    choice_file.write_text(json.dumps(choice, indent=1))
  choice = json.loads(choice_file.read_text())
  default = choice["default"]
  removal_scorers = list(dict.fromkeys([default, *config.removal_scorers]))
  model0 = restore_model(workdir / "full-0")[0]
  nll_sampler = make_nll(nnx.split(model0, nnx.Param)[0])(nnx.split(model0, nnx.Param)[1], outputs,
                                                          start=prompt_tokens)
  output_scores = all_scores(features_of_outputs, choice, None if datamodel is None else -datamodel[2])
  sets = removal_sets_for(output_scores, example_work, config, num_works, removal_scorers)
  removal_nll = removal_runs(config, sel["train"], sets, outputs, prompt_tokens, workdir, log)
  subset_runs(config, sel, subsets, queries, workdir, log, seeds=range(1, config.seeds_per_subset))

  # Analysis.
  nll, index, per_seed = read_subsets(workdir, subsets, config.seeds_per_subset)
  scores = all_scores(features, choice, None if datamodel is None else -datamodel[1])
  calibration_lds = {n: float(np.nanmean(lds_per_query(subsets[index][:, example_work].astype(float) @ s[cal].T,
                                                       -nll[:, cal]))) for n, s in scores.items()}
  eval_scores = {n: s[ev] for n, s in scores.items()}
  baseline_scores = {f"ngram{n}": ngram_overlap(eval_q, example_tokens, n) for n in config.ngrams}
  results = analyse(config, eval_scores, baseline_scores, example_work, subsets[index], nll[:, ev],
                    {seed: {s: v[ev] for s, v in d.items()} for seed, d in per_seed.items()}, eval_owner, default)
  removal = removal_summary(config, sel["train"], sets, removal_nll, removal_scorers)
  depth = {w.work_id: int(d) for w, d in zip(data.catalogue.works, data.catalogue.per_work_depth, strict=True)}
  entries = [work_entry(w, depth=depth.get(w.work_id, 0), record=data.catalogue.records.get(w.work_id))
             for w in sel["train"]]
  removal["lineages"] = removal_lineages(config, sel["train"], entries, output_scores[default], example_work, sets,
                                         removal_nll, default)
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
                      "trak_damping": calibration, "choice": choice},
      "datamodel_subsets": 0 if datamodel is None else int(len(datamodel[0])),
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
