"""The retraining side of the attribution experiment (``experiments/attribution.py``): its settings, the choice of
works, and the cached retrains: LDS subsets, the datamodels' own subsets, and the removal test's sets.

Every retrain writes ``result.json`` under the experiment's ``--workdir`` (``subsets/sNNN-rR``, ``datamodels/sNNN``,
``removal/<key>-rR``) and is skipped when that file exists, so an interrupted run resumes where it stopped; a
half-trained model resumes from its checkpoint. See ``experiments/attribution.py`` for the protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from govjax.core.config import TrainConfig
from govjax.core.intervals import work_bootstrap
from govjax.core.losses import token_losses
from govjax.data.scenario import default_scenario
from govjax.provenance.datamodels import (
    draw_subsets,
    ratio_of_means,
)
from govjax.provenance.lineage import build_lineage
from govjax.provenance.query import Attribution, aggregate_per_work
from govjax.rights.records import save_records
from govjax.train.data import build_training_data
from govjax.train.loop import train

DATAMODEL_SEED_OFFSET = 1000  # datamodel retrain r trains with seed 1000 + r: no seed shared with the LDS retrains


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
  """Settings of the attribution experiment (its protocol: the docstring of ``experiments/attribution.py``)."""

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
  exact: bool = True  # the unprojected TRAK scorers (Gram matrices of the full gradients: small models only)
  datamodel_subsets: int = 0  # retrains on subsets of their own for the datamodels scorer (0: not run)
  ridges: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)  # datamodels' ridges (calibration queries)
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


def selected_work_index(example_work: np.ndarray, kept_works: Sequence, train_works: Sequence) -> np.ndarray:
  """Each example's work as an index into ``train_works`` (the selection subsets draw from), from its index into
  ``kept_works`` (the training data's catalogue, without the works a policy excluded)."""
  position = {w.work_id: i for i, w in enumerate(train_works)}
  missing = [w.work_id for w in kept_works if w.work_id not in position]
  if missing:
    raise ValueError(f"training works {missing[:3]} are not among the selected works")
  return np.asarray([position[kept_works[int(j)].work_id] for j in example_work], np.int64)


def with_fixed_scenario(config: AttributionConfig, train_works: Sequence, workdir: pathlib.Path) -> AttributionConfig:
  """``config`` with the simulated rights scenario written once to ``workdir/rights_scenario.jsonl``.

  ``scenario="default"`` draws each work's rights from the training seed and the set of works, so every subset
  and retrain seed would get other rights (and exclude other works); the experiment needs one assignment for all
  of them: :func:`govjax.data.scenario.default_scenario` of the selected training works with the experiment's
  ``seed``. Other scenarios are returned unchanged.
  """
  governance = config.train.governance
  if governance.scenario != "default":
    return config
  path = (workdir / "rights_scenario.jsonl").resolve()
  if not path.is_file():
    save_records(default_scenario(train_works, seed=config.seed), path)
  return dataclasses.replace(config, train=dataclasses.replace(
      config.train, governance=dataclasses.replace(governance, scenario=str(path))))


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


def datamodel_runs(config: AttributionConfig, works: dict, queries: np.ndarray, outputs: np.ndarray,
                   prompt_tokens: int, workdir: pathlib.Path, log: Callable[[str], None]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Retrains on ``datamodel_subsets`` subsets of their own (drawn with ``seed + 1``, model seed
  ``DATAMODEL_SEED_OFFSET + r``), each evaluated on the query rows and the outputs' continuations.

  Returns:
    ``(kept bool [R, W], query NLL [R, Q], output NLL [R, O])``; cached per subset in
    ``workdir/datamodels/sNNN/result.json``.
  """
  kept = draw_subsets(config.train_works, config.datamodel_subsets, config.fraction, config.seed + 1)
  query_nll, output_nll = [], []
  for r, keep in enumerate(kept):
    where = workdir / "datamodels" / f"s{r:03d}"
    if not (where / "result.json").is_file():
      start = time.perf_counter()
      result, _ = train_on(config.train, [w for w, k in zip(works["train"], keep, strict=True) if k], where / "run",
                           seed=DATAMODEL_SEED_OFFSET + r)
      nll = make_nll(result.graphdef)
      (where / "result.json").write_text(json.dumps({
          "kept": keep.astype(int).tolist(), "seed": DATAMODEL_SEED_OFFSET + r,
          "nll": nll(result.state.params, queries).tolist(),
          "output_nll": nll(result.state.params, outputs, start=prompt_tokens).tolist(),
          "seconds": round(time.perf_counter() - start, 2)}))
      log(f"datamodel subset {r}: {time.perf_counter() - start:.1f} s")
    res = json.loads((where / "result.json").read_text())
    if res["kept"] != keep.astype(int).tolist() or len(res["output_nll"]) != len(outputs):
      raise ValueError(f"{where}/result.json: its field 'kept' or 'output_nll' differs from this run's subset draw "
                       f"or its {len(outputs)} outputs; use a fresh --workdir")
    query_nll.append(res["nll"][: len(queries)])
    output_nll.append(res["output_nll"])
  return kept, np.asarray(query_nll), np.asarray(output_nll)


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


def removal_lineages(config: AttributionConfig, train_works: Sequence, entries: Sequence[dict],
                     scores: np.ndarray, example_work: np.ndarray, sets: dict[str, list[list[int]]],
                     nll: dict[tuple[str, int], np.ndarray], scorer: str) -> dict:
  """Each output's lineage (:func:`govjax.provenance.lineage.build_lineage`, top ``removal_k`` works of
  ``scorer``) and whether removal showed those works to matter for it: its top-k rise is above the rise of every
  random set (averaged over seeds; under no effect, probability ``1 / (random_draws + 1)``).

  Args:
    config: the settings.
    train_works: the training works (set keys); ``entries``: their :func:`work_entry` descriptions.
    scores: ``[O, N]`` the scorer's example scores per output; ``example_work``: ``[N]`` into ``train_works``.
    sets, nll: from :func:`removal_sets_for` and :func:`removal_runs`.
    scorer: the scorer whose top-k sets were removed.

  Returns:
    ``{"outputs": [{"output", "works", "top_k_rise", "random_k_rise_max", "shown_to_matter", "duties"}],
    "shown_to_matter": count, "rule"}``.
  """
  seeds = list(config.removal_seeds)

  def rise(removed):
    return np.mean([nll[(removal_key(train_works, removed), s)] - nll[(removal_key(train_works, []), s)]
                    for s in seeds], axis=0)

  random_max = np.max([rise(removed) for removed in sets["random"]], axis=0)
  rows = []
  for o, removed in enumerate(sets[scorer]):
    per_work = aggregate_per_work(scores[o], example_work, len(train_works))
    order = np.argsort(-per_work, kind="stable")
    attribution = Attribution(example_scores=np.asarray(scores[o], np.float64), work_scores=per_work,
                              aggregation="sum", proponents=order, opponents=order[::-1],
                              top_examples=np.argsort(-scores[o], kind="stable")[: config.removal_k])
    lineage = build_lineage(attribution, entries, top=config.removal_k)
    top = float(rise(removed)[o])
    rows.append({"output": o, "works": [w["work_id"] for w in lineage["works"]], "top_k_rise": top,
                 "random_k_rise_max": float(random_max[o]), "shown_to_matter": bool(top > random_max[o]),
                 "duties": lineage["duties"]})
  return {"outputs": rows, "shown_to_matter": int(sum(r["shown_to_matter"] for r in rows)),
          "rule": f"top-{config.removal_k} rise above the rise of each of the {len(sets['random'])} random sets "
                  f"(seeds {seeds} averaged); chance {1 / (len(sets['random']) + 1):.3f} per output"}
