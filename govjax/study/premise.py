"""The premise experiment: does routing a restricted work's gradient into part of the model let the model learn
the work's craft (a rule) without memorizing the work (its secrets, its membership)?

One *run* trains a tiny transformer on the controlled corpus of :mod:`govjax.data.rule_corpus` under one
treatment, then measures, on never-trained pieces and on the restricted works:

- ``rule_nll`` / ``control_nll``: mean NLL at the rule positions of held-out rule pieces (the rule holds) and of
  control pieces (the same trigger, the rule does not hold), per work;
- ``val_nll``: mean NLL of held-out background pieces (utility), per work;
- ``member_loss`` / ``nonmember_loss``: mean NLL per restricted work and per held-out rule piece, secrets
  excluded (per-work membership);
- ``exposure``: extrapolated exposure (bits) of each restricted work's secret against other random fillings of its
  slot (:func:`govjax.audit.exposure.extrapolated_exposure`).

Treatments (:func:`treatments`): ``exclude`` (restricted works dropped before batching), ``exclude_trunk`` (the same,
stopped when its trunk has seen as many permitted windows as a routed run's: matched trunk data), ``full``,
``depth_d`` (restricted works reach the top ``d`` groups), ``input_d`` (the bottom ``d`` groups), ``region``
(a removable region; evaluated kept and dropped), and ``depth_1`` variants with the batch normaliser and
per-group clipping. Every routed run goes through :func:`govjax.train.governance.governance_components`, the
train step every method uses.

*Trunk leakage* (:func:`leakage_groups`): the parts the restricted works trained are re-initialised (the head when
they trained everything), the rest frozen exactly (``freeze_empty_groups``), and the re-initialised parts retrained
on permitted windows only; what the re-measured model still knows about the rule or the secrets lives in the frozen
part.

:func:`summarise` turns run records into ``premise.json``: per treatment the mean and 95% interval (bootstrap over
seeds, then works) of rule gain (NLL at rule positions of the reference, ``exclude`` of the same seed, minus the
treatment's), control gain, secret exposure, reference-calibrated membership AUC and validation NLL, plus paired
differences against ``exclude`` (matched steps) and ``exclude_trunk`` (matched trunk data).

Example:
  >>> spec = PremiseSpec(num_layers=1, width=16, num_heads=2, steps=3, batch_size=4, num_train=4, num_heldout=2,
  ...                    windows=4, num_references=8, leak_steps=2)
  >>> record = run_record(spec, treatments(spec)["depth_1"], seed=0, share=0.5)
  >>> sorted(record["metrics"])[:3], sorted(record["leakage"]["metrics"])[:2]
  (['control_nll', 'exposure', 'member_loss'], ['control_nll', 'exposure'])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.audit.exposure import extrapolated_exposure
from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig
from govjax.core.intervals import members_auc, paired_difference, seed_work_bootstrap, verdict
from govjax.core.losses import token_losses
from govjax.data.rule_corpus import RULE, SECRET, RuleCorpus, make_rule_corpus, secret_references
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.models.transformer import Transformer
from govjax.routing.groups import resolve_group_ids, transformer_group_rules
from govjax.routing.masks import depth_rows_to_mask
from govjax.study.stats import seed_group_statistic
from govjax.train.governance import governance_components
from govjax.train.step import create_train_state, model_config

__all__ = ["PremiseSpec", "Treatment", "leakage_groups", "run_record", "run_sweep", "summarise", "treatments"]


@dataclasses.dataclass(frozen=True)
class PremiseSpec:
  """Sizes of the premise experiment (defaults: about 20 s per run on 2 shared CPU cores)."""

  num_layers: int = 2
  width: int = 64
  num_heads: int = 4
  mlp_ratio: int = 4
  region_width: int = 64
  batch_size: int = 32
  steps: int = 800
  leak_steps: int = 400
  learning_rate: float = 3e-3
  warmup_steps: int = 50
  grad_clip: float = 1.0
  num_train: int = 48
  num_heldout: int = 24
  windows: int = 8
  num_references: int = 255
  seeds: tuple[int, ...] = (0, 1, 2)
  shares: tuple[float, ...] = (0.2, 0.5, 0.8)
  main_share: float = 0.5
  share_treatments: tuple[str, ...] = ("exclude", "full", "depth_1", "region")

  @property
  def num_groups(self) -> int:
    return self.num_layers + 2

  @property
  def run_key(self) -> str:
    """A hash of the fields that change what one run computes (not which seeds or shares are swept)."""
    fields = {k: v for k, v in dataclasses.asdict(self).items()
              if k not in ("seeds", "shares", "main_share", "share_treatments")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Treatment:
  """How restricted works are treated in one run.

  Attributes:
    name: the treatment's name in ``premise.json``.
    kind: "exclude", "full", "output" (top ``depth`` groups), "input" (bottom ``depth`` groups) or "region".
    depth: groups a restricted window's gradient reaches (output/input kinds).
    normaliser: "contributors" or "batch".
    clip: "global" or "per_group".
    trunk_matched: (exclude only) stop when the trunk has seen as many permitted windows as a routed run's.
  """

  name: str
  kind: str
  depth: int = 0
  normaliser: str = "contributors"
  clip: str = "global"
  trunk_matched: bool = False


def treatments(spec: PremiseSpec) -> dict[str, Treatment]:
  """The sweep: exclusion (matched steps and matched trunk data), full, every output and input depth, the region,
  and ``depth_1`` with the batch normaliser and with per-group clipping."""
  g = spec.num_groups
  out = [Treatment("exclude", "exclude"), Treatment("exclude_trunk", "exclude", trunk_matched=True),
         Treatment("full", "full")]
  out += [Treatment(f"depth_{d}", "output", d) for d in range(1, g)]
  out += [Treatment(f"input_{d}", "input", d) for d in range(1, g)]
  out += [Treatment("region", "region"), Treatment("depth_1_batch", "output", 1, normaliser="batch"),
          Treatment("depth_1_groupclip", "output", 1, clip="per_group"),
          Treatment("full_groupclip", "full", clip="per_group")]
  return {t.name: t for t in out}


def _train_config(spec: PremiseSpec, treatment: Treatment, seed: int, steps: int) -> TrainConfig:
  routing = {"exclude": "none", "full": "none", "output": "depth", "input": "per_group", "region": "region"}
  return TrainConfig(
      model=ModelSpec(num_layers=spec.num_layers, width=spec.width, num_heads=spec.num_heads, context=64,
                      mlp_ratio=spec.mlp_ratio, region_width=spec.region_width if treatment.kind == "region" else 0),
      governance=GovernanceSpec(routing=routing[treatment.kind], normaliser=treatment.normaliser,
                                clip=treatment.clip, surface="input" if treatment.kind == "input" else "output"),
      batch_size=spec.batch_size, num_steps=steps, learning_rate=spec.learning_rate, warmup_steps=spec.warmup_steps,
      grad_clip=spec.grad_clip, seed=seed)


def _restricted_row_mask(treatment: Treatment, num_groups: int) -> np.ndarray:
  if treatment.kind in ("output", "input"):
    return depth_rows_to_mask(np.array([treatment.depth]), num_groups, treatment.kind, xp=np)[0]
  return np.ones(num_groups, np.float32)


def _batches(corpus: RuleCorpus, rows: np.ndarray, batch_size: int, seed: int, steps: int):
  """Epoch-wise shuffled batches of ``rows`` (deterministic in ``seed``)."""
  rng = np.random.default_rng([seed, 7])
  order = np.empty(0, np.int64)
  for _ in range(steps):
    if order.size < batch_size:
      order = np.concatenate([order, rng.permutation(rows)])
    chosen, order = order[:batch_size], order[batch_size:]
    yield chosen


def _train(config: TrainConfig, corpus: RuleCorpus, rows: np.ndarray, row_masks: np.ndarray, *,
           params=None, batch_seed: int) -> tuple[nnx.GraphDef, object]:
  """Trains ``config.num_steps`` steps on ``rows`` of the corpus; ``row_masks`` ``[N, G]`` per training window."""
  components = governance_components(config)
  graphdef, state, _, _ = create_train_state(config, vocab_size=VOCAB_SIZE, tx=components.tx)
  if params is not None:
    state = state._replace(params=params, opt_state=components.tx.init(params))
  step = components.train_step(graphdef)
  region = corpus.restricted[corpus.train_work].astype(np.float32)
  for chosen in _batches(corpus, rows, config.batch_size, batch_seed, config.num_steps):
    batch = {"tokens": jnp.asarray(corpus.train_tokens[chosen])}
    if config.governance.routing == "region":
      batch["region"] = jnp.asarray(region[chosen])
    state, _ = step(state, batch, jnp.asarray(row_masks[chosen]))
  return graphdef, state.params


def _loss_fn(graphdef: nnx.GraphDef, region_scale: float | None) -> Callable:
  @jax.jit
  def losses(params, tokens):
    model = nnx.merge(graphdef, params)
    logits = model(tokens) if region_scale is None else model(tokens, region=region_scale)
    return token_losses(logits, tokens)[0]

  return losses


def _token_losses(fn: Callable, params, tokens: np.ndarray, batch: int = 512) -> np.ndarray:
  """``[N, T - 1]`` next-token losses (target position ``t + 1`` at index ``t``)."""
  return np.concatenate([np.asarray(fn(params, jnp.asarray(tokens[i:i + batch])))
                         for i in range(0, len(tokens), batch)])


def _per_work(values: np.ndarray, weights: np.ndarray, work: np.ndarray, prefix: str) -> dict[str, float]:
  out = {}
  for w in np.unique(work):
    rows = work == w
    out[f"{prefix}{int(w)}"] = float((values[rows] * weights[rows]).sum() / max(weights[rows].sum(), 1.0))
  return out


def evaluate(graphdef: nnx.GraphDef, params, corpus: RuleCorpus, *, num_references: int, seed: int,
             region_scale: float | None = None) -> dict:
  """The run's measurements (per work or per secret, JSON-able; see the module docstring).

  Args:
    graphdef, params: the trained model.
    corpus: the run's corpus.
    num_references: random fillings per secret slot.
    seed: seeds the references.
    region_scale: the removable region's output scale (0.0 = dropped); None for models without a region.

  Returns:
    ``{"rule_nll", "control_nll", "val_nll", "member_loss", "nonmember_loss", "exposure"}``.
  """
  fn = _loss_fn(graphdef, region_scale)
  out = {}
  for key, split in (("rule_nll", "rule"), ("control_nll", "control")):
    part = corpus.heldout[split]
    losses = _token_losses(fn, params, part.tokens)
    out[key] = _per_work(losses, (part.roles[:, 1:] == RULE).astype(np.float64), part.work, f"{split}/")
  background = corpus.heldout["background"]
  out["val_nll"] = _per_work(_token_losses(fn, params, background.tokens), np.ones((len(background.tokens), 63)),
                             background.work, "background/")
  rule = corpus.heldout["rule"]
  out["nonmember_loss"] = _per_work(_token_losses(fn, params, rule.tokens), np.ones((len(rule.tokens), 63)),
                                    rule.work, "rule/")
  rows = corpus.restricted_rows
  member = _token_losses(fn, params, corpus.train_tokens[rows])
  out["member_loss"] = _per_work(member, (corpus.train_roles[rows, 1:] != SECRET).astype(np.float64),
                                 corpus.train_work[rows], "train/")
  exposure = {}
  for index, (row, start) in enumerate(corpus.secrets):
    window = corpus.train_tokens[row]
    candidates = np.concatenate([window[None], secret_references(window, start, num_references, seed * 7919 + index)])
    losses = _token_losses(fn, params, candidates)[:, start - 1:].sum(axis=1)
    exposure[f"secret/{int(corpus.train_work[row])}"] = extrapolated_exposure(float(losses[0]), losses[1:])
  out["exposure"] = exposure
  return out


def leakage_groups(treatment: Treatment, num_groups: int) -> list[int]:
  """The groups re-initialised and retrained in the trunk-leakage test: those the restricted works trained, or the
  head alone when that is every group (full training, exclusion's control)."""
  if treatment.kind == "output" and treatment.depth < num_groups:
    return list(range(num_groups - treatment.depth, num_groups))
  if treatment.kind == "input" and treatment.depth < num_groups:
    return list(range(treatment.depth))
  return [num_groups - 1]


def _leakage(spec: PremiseSpec, treatment: Treatment, corpus: RuleCorpus, graphdef, params, seed: int) -> dict:
  """Re-initialises the groups the restricted works trained, freezes the rest, retrains on permitted windows."""
  g = spec.num_groups
  retrain = leakage_groups(treatment, g)
  base = _train_config(spec, dataclasses.replace(treatment, kind="full"), seed, spec.leak_steps)
  config = dataclasses.replace(base, governance=dataclasses.replace(
      base.governance, routing="per_group", freeze_empty_groups=True, clip="global"))
  ids = resolve_group_ids(transformer_group_rules(spec.num_layers), params)
  fresh_model = Transformer(model_config(config, VOCAB_SIZE), rngs=nnx.Rngs(params=jax.random.PRNGKey(10_000 + seed)))
  fresh = nnx.split(fresh_model, nnx.Param)[1]
  mixed = jax.tree.map(lambda new, old, group: new if group in retrain else old, fresh, params, ids)
  masks = np.zeros((len(corpus.train_tokens), g), np.float32)
  masks[:, retrain] = 1.0
  graphdef2, trained = _train(config, corpus, corpus.permitted_rows, masks, params=mixed, batch_seed=seed + 5000)
  metrics = evaluate(graphdef2, trained, corpus, num_references=spec.num_references, seed=seed)
  return {"retrained_groups": retrain, "metrics": metrics}


def run_record(spec: PremiseSpec, treatment: Treatment, *, seed: int, share: float, leakage: bool = True) -> dict:
  """Trains and measures one treatment on one seed's corpus at restricted share ``share``.

  Args:
    spec: sizes.
    treatment: the treatment.
    seed: corpus, initialisation and batch-order seed.
    share: fraction of training works restricted.
    leakage: also run the trunk-leakage test (not for exclusion's matched-trunk run or the region).

  Returns:
    A JSON-able record: ``name``, ``seed``, ``share``, ``steps``, ``wall_s``, ``metrics`` (and
    ``metrics_dropped`` for the region, ``leakage`` when run).
  """
  start = time.time()
  corpus = make_rule_corpus(seed=seed, num_train=spec.num_train, restricted_fraction=share,
                            num_heldout=spec.num_heldout, windows=spec.windows)
  g = spec.num_groups
  permitted = corpus.permitted_rows
  steps = spec.steps
  if treatment.kind == "exclude":
    rows = permitted
    if treatment.trunk_matched:
      steps = max(1, int(round(spec.steps * len(permitted) / len(corpus.train_tokens))))
  else:
    rows = np.arange(len(corpus.train_tokens))
  masks = np.ones((len(corpus.train_tokens), g), np.float32)
  masks[corpus.restricted_rows] = _restricted_row_mask(treatment, g)
  config = _train_config(spec, treatment, seed, steps)
  graphdef, params = _train(config, corpus, rows, masks, batch_seed=seed)
  region = 1.0 if treatment.kind == "region" else None
  record = {"name": treatment.name, "seed": seed, "share": share, "steps": steps, "run_key": spec.run_key,
            "treatment": dataclasses.asdict(treatment),
            "metrics": evaluate(graphdef, params, corpus, num_references=spec.num_references, seed=seed,
                                region_scale=region)}
  if treatment.kind == "region":
    record["metrics_dropped"] = evaluate(graphdef, params, corpus, num_references=spec.num_references, seed=seed,
                                         region_scale=0.0)
  elif leakage and not treatment.trunk_matched:
    record["leakage"] = _leakage(spec, treatment, corpus, graphdef, params, seed)
  record["wall_s"] = round(time.time() - start, 2)
  return record


def _jobs(spec: PremiseSpec, names: Sequence[str]) -> list[tuple[str, int, float]]:
  """Treatment-major (every seed of the first treatments first), then the restricted-share runs."""
  jobs = [(name, seed, spec.main_share) for name in names for seed in spec.seeds]
  jobs += [(name, seed, share) for share in spec.shares if share != spec.main_share
           for name in spec.share_treatments for seed in spec.seeds]
  return jobs


def run_sweep(spec: PremiseSpec, cache_dir: str | os.PathLike, *, names: Sequence[str] | None = None,
              log: Callable[[str], None] = print) -> list[dict]:
  """Runs every job not yet cached (one JSON per run in ``cache_dir``, written atomically) and returns all records.

  Args:
    spec: sizes.
    cache_dir: the per-run cache; a restart skips what is there.
    names: treatments at the main share, in order (None: all; empty: only the restricted-share runs).
    log: progress lines.

  Returns:
    The run records, main share first.

  Raises:
    ValueError: a cached record was produced with other sizes (its ``run_key`` differs from ``spec.run_key``).
  """
  cache = pathlib.Path(cache_dir)
  cache.mkdir(parents=True, exist_ok=True)
  table = treatments(spec)
  records = []
  for name, seed, share in _jobs(spec, list(table if names is None else names)):
    path = cache / f"{name}-share{share}-s{seed}.json"
    if path.exists():
      cached = json.loads(path.read_text())
      if cached.get("run_key") != spec.run_key:
        raise ValueError(f"{path}: field 'run_key' is {cached.get('run_key')!r}, but these sizes give "
                         f"{spec.run_key!r}; use another cache directory for other sizes")
      records.append(cached)
      continue
    record = run_record(spec, table[name], seed=seed, share=share, leakage=share == spec.main_share)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    log(f"{path.name}: {record['wall_s']} s")
    records.append(record)
  return records


def _round(value):
  if isinstance(value, float):
    return round(value, 4) if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: _round(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_round(v) for v in value]
  return value


def _interval(per_seed: Mapping[int, Mapping[str, float]], resamples: int) -> dict:
  out = seed_work_bootstrap(per_seed, resamples=resamples)
  return {"mean": out["mean"], "ci95": out["ci95"], "per_seed": out["per_seed"]}


def _metric_block(runs: Mapping[int, dict], refs: Mapping[int, dict], *, resamples: int,
                  trunk_refs: Mapping[int, dict] | None = None) -> dict:
  """The summary of one treatment from ``{seed: metrics}`` and the reference's ``{seed: metrics}``."""
  seeds = [s for s in runs if s in refs]

  def diff(key, sign=1.0, against=refs):
    return {s: {w: sign * (against[s][key][w] - runs[s][key][w]) for w in runs[s][key]} for s in seeds}

  block = {
      "rule_gain": _interval(diff("rule_nll"), resamples),
      "control_gain": _interval(diff("control_nll"), resamples),
      # Rule gain minus control gain (equal numbers of rule and control works): learning the rule itself, not
      # merely having seen the trigger's pitches. Both splits' works are resampled together.
      "rule_gain_specific": _interval({s: {**{w: 2 * v for w, v in diff("rule_nll")[s].items()},
                                           **{w: -2 * v for w, v in diff("control_nll")[s].items()}}
                                       for s in seeds}, resamples),
      "secret_exposure": _interval({s: runs[s]["exposure"] for s in seeds}, resamples),
      "val_nll": _interval({s: runs[s]["val_nll"] for s in seeds}, resamples),
  }
  calibrated = {}
  raw = {}
  for s in seeds:
    members, nonmembers = list(runs[s]["member_loss"]), list(runs[s]["nonmember_loss"])
    scores = {w: refs[s]["member_loss"][w] - runs[s]["member_loss"][w] for w in members}
    scores.update({w: refs[s]["nonmember_loss"][w] - runs[s]["nonmember_loss"][w] for w in nonmembers})
    calibrated[s] = {"scores": scores, "members": members, "nonmembers": nonmembers}
    raw_scores = {w: -runs[s]["member_loss"][w] for w in members}
    raw_scores.update({w: -runs[s]["nonmember_loss"][w] for w in nonmembers})
    raw[s] = {"scores": raw_scores, "members": members, "nonmembers": nonmembers}
  for key, data in (("mia_auc_restricted", calibrated), ("mia_auc_restricted_loss", raw)):
    out = seed_group_statistic(data, members_auc, resamples=resamples)
    block[key] = {"mean": out["mean"], "ci95": out["ci95"], "per_seed": out.get("per_seed")}
  vs = paired_difference({s: runs[s]["val_nll"] for s in seeds}, {s: refs[s]["val_nll"] for s in seeds},
                         resamples=resamples)
  block["val_nll_minus_exclude"] = {"mean": vs["mean_diff"], "ci95": vs["ci95"],
                                    "verdict_worse": verdict(vs["ci95"], direction="greater")}
  if trunk_refs:
    common = [s for s in seeds if s in trunk_refs]
    vt = paired_difference({s: runs[s]["val_nll"] for s in common}, {s: trunk_refs[s]["val_nll"] for s in common},
                           resamples=resamples)
    block["val_nll_minus_exclude_trunk"] = {"mean": vt["mean_diff"], "ci95": vt["ci95"],
                                            "verdict_worse": verdict(vt["ci95"], direction="greater")}
  for key in ("rule_gain", "rule_gain_specific"):
    block[key]["verdict"] = verdict(block[key]["ci95"], direction="greater")
  return block


def summarise(records: Sequence[dict], spec: PremiseSpec, *, resamples: int = 1000, meta: dict | None = None) -> dict:
  """``premise.json`` from run records (see the module docstring).

  Args:
    records: from :func:`run_sweep`.
    spec: the sizes they were run with.
    resamples: bootstrap resamples.
    meta: extra top-level fields (machine, wall time, command).

  Returns:
    ``{"seeds", "spec", "treatments", "trunk_leakage", "restricted_fraction", ...}``.
  """
  by = {}
  for r in records:
    by.setdefault((r["name"], r["share"]), {})[r["seed"]] = r
  main = spec.main_share

  def metrics(name, share, field="metrics"):
    return {s: r[field] for s, r in by.get((name, share), {}).items() if field in r}

  refs, trunk_refs = metrics("exclude", main), metrics("exclude_trunk", main)
  out_treatments = {}
  for name in treatments(spec):
    runs = metrics(name, main)
    if runs:
      out_treatments[name] = _metric_block(runs, refs, resamples=resamples, trunk_refs=trunk_refs)
      out_treatments[name]["steps"] = sorted({by[(name, main)][s]["steps"] for s in runs})
    if name == "region" and metrics(name, main, "metrics_dropped"):
      out_treatments["region_dropped"] = _metric_block(metrics(name, main, "metrics_dropped"), refs,
                                                       resamples=resamples, trunk_refs=trunk_refs)
  leak_refs = {s: r["leakage"]["metrics"] for s, r in by.get(("exclude", main), {}).items() if "leakage" in r}
  leakage = {}
  for name in treatments(spec):
    runs = {s: r["leakage"]["metrics"] for s, r in by.get((name, main), {}).items() if "leakage" in r}
    if runs and leak_refs:
      leakage[name] = _metric_block(runs, leak_refs, resamples=resamples)
      leakage[name]["retrained_groups"] = next(iter(by[(name, main)].values()))["leakage"]["retrained_groups"]
  shares = {}
  for share in spec.shares:
    share_refs = metrics("exclude", share)
    block = {}
    for name in spec.share_treatments:
      runs = metrics(name, share)
      if runs and share_refs:
        block[name] = _metric_block(runs, share_refs, resamples=resamples)
      if name == "region" and metrics(name, share, "metrics_dropped") and share_refs:
        block["region_dropped"] = _metric_block(metrics(name, share, "metrics_dropped"), share_refs,
                                                resamples=resamples)
    shares[str(share)] = block
  seeds = sorted({r["seed"] for r in records})
  return _round({"seeds": seeds, "spec": dataclasses.asdict(spec), **(meta or {}), "treatments": out_treatments,
                 "trunk_leakage": leakage, "restricted_fraction": shares,
                 "run_wall_s": sum(r["wall_s"] for r in records)})
