"""Runs the governance study: train every method for every seed, audit it, trace outputs, collect the results.

For each run (:func:`~govjax.study.methods.study_runs`: every :class:`~govjax.study.methods.RunSpec` for every seed)
the runner trains into ``out/runs/<run name>`` (resuming from its checkpoints), audits the final model on the
seed-independent panel (:mod:`govjax.audit.panel`, written to the run's ``audit/panel.json``), optionally audits the
checkpoints of ``curve_steps`` (extraction over training), samples chorales, computes DP-SGD's epsilon, and for the
methods in ``trace_methods`` builds an influence index and traces training windows. Each run's entry is cached in
``out/runs/<run name>/study_entry.json``: an interrupted study resumes where it stopped (finished runs, audits and
traces are not redone), and runs added to a study reuse the finished ones (:func:`cached_config_matches`).
Everything measured goes to ``out/results.json``, and the evidence (means, 95% intervals, paired differences:
:mod:`govjax.study.stats`) to ``out/study.json``; :mod:`govjax.study.report` turns them into figures and
``report.html``.

Example (see ``experiments/configs/study_demo.py`` for the command and runtime)::

    study = load_study("experiments/configs/study_demo.py")
    results = run_study(study, "runs/demo")
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from govjax.audit.panel import audit_panel
from govjax.audit.run import audit_run
from govjax.baselines.dpsgd import privacy_spent
from govjax.core.config import ConfigError, config_hash, from_dict
from govjax.core.ids import work_kind
from govjax.core.rundir import RunDir
from govjax.provenance.featurize import FeatureConfig
from govjax.provenance.lineage import build_lineage, write_lineage
from govjax.provenance.runs import index_run, load_tracer
from govjax.study.methods import METHODS, RunSpec, StudyConfig, method_config, study_runs
from govjax.study.stats import study_evidence
from govjax.train import data as training_data
from govjax.train.loop import evaluate_nll, restore_model, train
from govjax.train.sampling import sample_run, write_samples
from govjax.train.step import make_eval_step

RESTRICTED_CLASSES = ("restrictive", "unknown")


def _say(progress: Callable[[str], None] | None, text: str) -> None:
  if progress is not None:
    progress(text)


def machine_info() -> dict:
  """Where the numbers were measured."""
  return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
          "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}


def memorization_summary(audit_summary: dict, rows: list[dict]) -> dict:
  """The study's headline numbers from an audit: extraction by class, held-out baseline, MIA, exposure.

  Args:
    audit_summary: ``AuditResult.summary``.
    rows: ``AuditResult.rows``.

  Returns:
    ``{"extraction_restricted", "extraction_permissive", "extraction_heldout", "extraction_canary",
    "token_match_restricted", ..., "mia_auc", "mia_tpr_at_1pct", "mia_auc_works", "mia_auc_restricted",
    "exposure"}``. ``mia_auc`` compares all training windows with held-out windows; ``mia_auc_works`` only the
    windows of works (no canaries, no structural material); ``mia_auc_restricted`` those of restricted works.
  """
  def weighted(selected: list[dict], key: str) -> float | None:
    total = sum(r.get("num_audited") or 0 for r in selected)
    if not total:
      return None
    return float(sum((r.get(key) or 0.0) * (r.get("num_audited") or 0) for r in selected) / total)

  groups = {
      "restricted": [r for r in rows if r["split"] == "train" and r.get("licence_class") in RESTRICTED_CLASSES
                     and work_kind(r["work_id"]) != "canary"],
      "permissive": [r for r in rows if r["split"] == "train" and r.get("licence_class") == "permissive"
                     and work_kind(r["work_id"]) == "work"],
      "canary": [r for r in rows if work_kind(r["work_id"]) == "canary"],
      "heldout": [r for r in rows if r["split"] == "heldout"],
  }
  out = {}
  for name, selected in groups.items():
    out[f"extraction_{name}"] = weighted(selected, "extraction_rate")
    out[f"token_match_{name}"] = weighted(selected, "token_match")
    out[f"loss_{name}"] = weighted(selected, "mean_loss")
    out[f"works_{name}"] = len(selected)
  membership = audit_summary.get("membership") or {}
  out["mia_auc"] = membership.get("auc")
  out["mia_tpr_at_1pct"] = membership.get("tpr_at_1pct_fpr")
  out["mia_tpr_at_0_1pct"] = membership.get("tpr_at_0.1pct_fpr")
  by_class = audit_summary.get("membership_by_class") or {}
  out["mia_auc_works"] = (by_class.get("works") or {}).get("auc")
  restricted = [by_class[c] for c in RESTRICTED_CLASSES if c in by_class]
  out["mia_auc_restricted"] = _pooled_auc(restricted)
  exposure = audit_summary.get("exposure")
  out["exposure"] = exposure
  return out


def _pooled_auc(results: list[dict]) -> float | None:
  """Member-count-weighted AUC of several membership results against the same non-members (None if none)."""
  results = [r for r in results if r.get("num_members") and r.get("auc") is not None]
  total = sum(r["num_members"] for r in results)
  return float(sum(r["auc"] * r["num_members"] for r in results) / total) if total else None


def _trace_recall(workdir: pathlib.Path, data, study: StudyConfig, seed: int, progress) -> dict:
  """Indexes the run and traces training windows (verbatim reproductions): is the source the top-1 work?"""

  start = time.perf_counter()
  steps = None
  index = index_run(workdir, data=data, config=FeatureConfig(k=study.trace_k, normalize=True), steps=steps)
  index_s = time.perf_counter() - start
  tracer = load_tracer(workdir, index=index)
  rng = np.random.default_rng(seed)
  catalogue = data.catalogue
  table = catalogue.window_table
  candidates = np.flatnonzero(np.array([work_kind(catalogue.works[int(w)].work_id) != "structural"
                                        for w in table.work_index]))
  chosen = rng.choice(candidates, size=min(study.trace_outputs, candidates.size), replace=False)
  hits, rows = [], []
  works = index.works if hasattr(index, "works") else None
  for n, example_id in enumerate(chosen):
    tokens = catalogue.window_tokens(int(example_id))
    attribution = tracer.attribute({"tokens": tokens[None, :]}, top=5, aggregation="max")
    source = int(table.work_index[example_id])
    top1 = int(attribution.proponents[0])
    hits.append(top1 == source)
    depth = int(catalogue.per_work_depth[source])
    rows.append({"example_id": int(example_id), "work_id": catalogue.works[source].work_id, "depth": depth,
                 "top1": catalogue.works[top1].work_id, "hit": bool(top1 == source)})
    if n < 3 and works is not None:
      lineage = build_lineage(attribution, works, top=5,
                              output={"kind": "training window", "example_id": int(example_id)})
      write_lineage(lineage, output_file=None, workdir=workdir, name=f"window-{int(example_id)}")
  by_depth = {}
  for depth in sorted({r["depth"] for r in rows}):
    sel = [r["hit"] for r in rows if r["depth"] == depth]
    by_depth[str(depth)] = {"recall_at_1": float(np.mean(sel)), "n": len(sel)}
  _say(progress, f"    traced {len(rows)} windows: recall@1 {np.mean(hits):.2f} (index {index_s:.1f} s)")
  return {"recall_at_1": float(np.mean(hits)) if hits else None, "by_depth": by_depth, "rows": rows,
          "index_s": index_s, "num_examples": int(data.batches.num_examples)}


def _id_hash(work_id: str) -> str:
  return hashlib.sha256(work_id.encode("utf-8")).hexdigest()


def study_works(study: StudyConfig, config) -> dict[str, list]:
  """The works of each split for a run of ``study``: the training split cut to ``max_train_works`` (by the sha256
  of the work id, the same works for every method and seed)."""
  works = training_data.load_works(config)
  if study.max_train_works is not None:
    keep = {w.work_id for w in sorted(works["train"], key=lambda w: _id_hash(w.work_id))[:study.max_train_works]}
    works = dict(works, train=[w for w in works["train"] if w.work_id in keep])
  return works


def panel_memorization(panel: dict) -> dict:
  """The report table's headline numbers from a panel audit (window-weighted, like the per-run table always was).

  Returns:
    ``{"extraction_restricted", "extraction_permissive", "extraction_heldout", "extraction_canary",
    "token_match_*", "edit_similarity_*", "mia_auc_works", "mia_auc_restricted", "exposure"}``; restricted /
    permissive count only works the run trained.
  """
  windows = [r for r in panel["windows"] if r.get("valid", True)]
  groups = {
      "restricted": [r for r in windows if r["member"] and r.get("licence_class") in RESTRICTED_CLASSES],
      "permissive": [r for r in windows if r["member"] and r.get("licence_class") == "permissive"],
      "heldout": [r for r in windows if r["split"] == "heldout"],
      "canary": panel.get("canaries", []),
  }
  out: dict = {}
  for name, rows in groups.items():
    for key, column in (("extraction", "exact"), ("token_match", "token_match"),
                        ("edit_similarity", "edit_similarity")):
      values = [float(r[column]) for r in rows if r.get(column) is not None]
      out[f"{key}_{name}"] = float(np.mean(values)) if values else None
    out[f"works_{name}"] = len({r.get("work_id", r.get("canary")) for r in rows})
  heldout = np.array([r["loss"] for r in groups["heldout"]])
  for name, rows in (("mia_auc_works", [r for r in windows if r["member"]]), ("mia_auc_restricted",
                                                                                groups["restricted"])):
    members = np.array([r["loss"] for r in rows])
    out[name] = (float(((heldout[None, :] > members[:, None]).mean()
                        + 0.5 * (heldout[None, :] == members[:, None]).mean()))
                 if members.size and heldout.size else None)
  out["mia_auc"] = out["mia_auc_works"]
  by_reps: dict[str, list[float]] = {}
  for row in groups["canary"]:
    if row.get("exposure") is not None:
      by_reps.setdefault(f"{row['kind']} x{row['repetitions']}", []).append(row["exposure"])
  out["exposure"] = {"by_repetitions": {k: float(np.mean(v)) for k, v in by_reps.items()}} if by_reps else None
  return out


def _read_json(path: pathlib.Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError):
    return None


def _write_json(path: pathlib.Path, value) -> None:
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(value, default=_json_default))
  os.replace(tmp, path)  # never a half-written file that a resumed study would trust


def cached_config_matches(entry: dict, workdir: pathlib.Path, config) -> bool:
  """Whether a cached study entry was trained with ``config``.

  The entry's ``config_hash`` is compared first. A run recorded before the config gained a field has another hash
  for the same training; its recorded config (``workdir/config.json``), read back with today's defaults for the
  fields it lacks, is then compared with ``config`` (a field added with a default that keeps the old behaviour
  does not invalidate finished runs; a field the run set differently does).

  Args:
    entry: the cached ``study_entry.json``.
    workdir: the run's directory (holds ``config.json``).
    config: the config the study would train now.

  Returns:
    True if the cached entry can be reused.

  Example:
    >>> import tempfile
    >>> from govjax.core.config import TrainConfig
    >>> cached_config_matches({"config_hash": config_hash(TrainConfig())}, pathlib.Path(tempfile.mkdtemp()),
    ...                       TrainConfig())
    True
  """
  chash = config_hash(config)
  if entry.get("config_hash") == chash:
    return True
  record = _read_json(workdir / "config.json") or {}
  if record.get("config_hash") != entry.get("config_hash") or not isinstance(record.get("config"), dict):
    return False
  try:
    return config_hash(from_dict(record["config"])) == chash
  except ConfigError:
    return False


def run_one(study: StudyConfig, spec: RunSpec, out: pathlib.Path, *, progress=None, train_progress=False) -> dict:
  """Trains, audits, samples and (maybe) traces one run; returns its results entry (cached: a finished run's
  entry is read back, a finished panel audit is not redone)."""

  config = method_config(study.base, spec.method, seed=spec.seed, knob=spec.knob)
  workdir = out / "runs" / spec.name
  entry_path = workdir / "study_entry.json"
  cached = _read_json(entry_path)
  if cached is not None and cached_config_matches(cached, workdir, config):
    _say(progress, f"[{spec.name}] done before: results read from {entry_path}")
    return {**cached, "run": spec.name, "knob": list(spec.knob), "workdir": str(workdir.relative_to(out)),
            "from_cache": True}
  _say(progress, f"[{spec.name}] {METHODS[spec.method].label}: training {config.num_steps} steps")
  works = study_works(study, config)
  data = training_data.build_training_data(config, works=works)
  result = train(config, workdir, data=data, progress=train_progress)
  steps = RunDir(workdir).checkpoint_steps()
  curve = []
  if study.curve_steps is None or study.curve_steps:
    for step in [s for s in steps if study.curve_steps is None or s in study.curve_steps]:
      audit = audit_run(workdir, step=step, k=study.audit_k, m=study.audit_m, data=data,
                        max_windows_per_work=study.audit_max_windows_per_work, seed=spec.seed)
      mem = memorization_summary(audit.summary, audit.rows)
      curve.append({"step": step, **{k: v for k, v in mem.items() if k != "exposure"}})
  panel_path = workdir / "audit" / "panel.json"
  panel = _read_json(panel_path)
  if panel is None:
    t0 = time.perf_counter()
    panel = run_panel(study, workdir, data, works)
    panel["wall_s"] = time.perf_counter() - t0
    panel_path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(panel_path, panel)
  memorization = panel_memorization(panel)
  val_nll, val_nll_trained = result.val_nll, None
  if config.model.region_width:  # the audit sees the deployed model (region dropped): so does utility
    val_nll_trained, val_nll = val_nll, deployed_val_nll(workdir, data, config.eval_max_batches)
  rates = ", ".join(f"{label} {'n/a' if memorization[key] is None else format(memorization[key], '.3f')}"
                    for label, key in (("restricted", "extraction_restricted"),
                                       ("held-out", "extraction_heldout"), ("canaries", "extraction_canary")))
  _say(progress, f"    val NLL {val_nll:.3f}; extraction {rates}; audit {panel.get('wall_s', 0):.0f} s")
  sample_paths = []
  if study.num_samples:
    samples = sample_run(workdir, num_samples=study.num_samples, num_frames=min(64, config.model.context // 4),
                         seed=spec.seed, data=data)
    sample_paths = write_samples(samples, workdir / "samples" / "sample.mid")
  entry = {
      "run": spec.name, "method": spec.method, "label": METHODS[spec.method].label, "seed": spec.seed,
      "knob": list(spec.knob), "workdir": str(workdir.relative_to(out)), "val_nll": val_nll,
      "config_hash": config_hash(config),
      "train_wall_s": result.wall_s, "steps": int(result.state.step), "data_report": data.catalogue.report,
      "memorization": memorization, "curve": curve, "panel": panel,
      "samples": [str(p.relative_to(out)) for p in sample_paths],
  }
  if val_nll_trained is not None:
    entry["val_nll_with_region"] = val_nll_trained
  if config.governance.baseline == "dpsgd":
    entry["privacy"] = privacy_spent(noise_multiplier=config.governance.dp_noise,
                                     sample_rate=config.batch_size / data.batches.num_examples,
                                     steps=config.num_steps, delta=study.dp_delta)
  probe = _probe_summary(result, panel)
  if probe is not None:
    entry["probe"] = probe
  if spec.method in study.trace_methods and study.trace_outputs:
    entry["provenance"] = _trace_recall(workdir, data, study, spec.seed, progress)
  _write_json(entry_path, entry)
  return entry


def deployed_val_nll(workdir: pathlib.Path, data, max_batches: int) -> float | None:
  """Validation NLL of a run's final model as deployed (:func:`~govjax.train.loop.restore_model`: a removable
  region dropped), the model the panel audit measures; ``train``'s own ``val_nll`` keeps the region.

  Args:
    workdir: the run directory.
    data: its training data (``data.batches.validation``).
    max_batches: validation batches (``TrainConfig.eval_max_batches``, as in training).

  Returns:
    Nats per scored token, or None without validation data.
  """
  if data.batches.validation is None:
    return None
  model, _, _ = restore_model(workdir)
  graphdef, params = nnx.split(model)
  return evaluate_nll(make_eval_step(graphdef), params, data.batches.validation(max_batches))


def run_panel(study: StudyConfig, workdir: pathlib.Path, data, works: dict[str, list]) -> dict:
  """The panel audit (:func:`govjax.audit.panel.audit_panel`) of a run's final checkpoint."""
  model, _, _ = restore_model(workdir)
  chorales = [w for w in works["train"] if work_kind(w.work_id) == "work"]
  catalogue, canaries = data.catalogue, data.canaries
  info = {}
  for work in chorales + list(catalogue.heldout_works):
    record = catalogue.records.get(work.work_id)
    treatment = catalogue.treatments.get(work.work_id, {})
    info[work.work_id] = {"licence_class": record.licence_class if record else "unknown",
                          "action": treatment.get("action"), "depth": treatment.get("depth")}
  kinds = canaries.kinds if canaries is not None and canaries.kinds is not None else []
  repetitions = canaries.repetitions if canaries is not None else []
  ids = [f"{'chorale' if k == 'chorale' else 'random'}/r{r}/{i}" for i, (k, r) in
         enumerate(zip(kinds, repetitions, strict=True))]
  return audit_panel(model, train_works=chorales, trained_ids={w.work_id for w in catalogue.works},
                     heldout_works=catalogue.heldout_works, context=catalogue.context, k=study.audit_k,
                     m=study.audit_m, windows_per_work=study.audit_max_windows_per_work, work_info=info,
                     canaries=None if canaries is None else canaries.tokens, canary_ids=ids, canary_kinds=kinds,
                     canary_repetitions=repetitions,
                     random_references=None if canaries is None else canaries.references, canary_m=study.canary_m,
                     decode_per_split=study.decode_per_split)


def _probe_summary(result, panel) -> dict | None:
  """Per-work probe evidence at the end of training next to the audit's extraction (probe validity)."""
  extras = result.state.extras
  if "probe" not in extras:
    return None
  state = extras["probe"]
  table = result.data.catalogue.window_table
  ema = np.asarray(state.ema)
  depth = np.asarray(state.depth)
  per_work = {}
  for w, work in enumerate(result.data.catalogue.works):
    mine = np.flatnonzero(np.asarray(table.work_index) == w)
    if mine.size:
      per_work[work.work_id] = {"probe_loss": float(ema[mine, 0].mean()), "min_depth": int(depth[mine].min())}
  extraction: dict[str, list[float]] = {}
  for row in panel["windows"]:
    if row["member"] and row.get("exact") is not None:
      extraction.setdefault(row["work_id"], []).append(float(row["exact"]))
  rows = [{"work_id": w, "extraction_rate": float(np.mean(v)), **per_work[w]} for w, v in extraction.items()
          if w in per_work]
  counts = np.bincount(depth, minlength=result.data.catalogue.num_groups + 1)
  return {"per_work": rows, "depth_counts": {str(d): int(c) for d, c in enumerate(counts)}}


def run_study(study: StudyConfig, out: str | pathlib.Path, *, progress: Callable[[str], None] | None = print,
              train_progress: bool = False) -> dict:
  """Runs every run of ``study`` and writes ``out/results.json``.

  Args:
    study: the study config.
    out: output directory (runs resume when already there).
    progress: called with one line per stage (None: silent).
    train_progress: show a progress bar while training.

  Returns:
    The results dict.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  runs = []
  for spec in study_runs(study):
    runs.append(run_one(study, spec, out, progress=progress, train_progress=train_progress))
  results = {
      "study": study.name,
      "base_config": study.base.to_dict(),
      "settings": {"audit_k": study.audit_k, "audit_m": study.audit_m,
                   "audit_max_windows_per_work": study.audit_max_windows_per_work, "canary_m": study.canary_m,
                   "max_train_works": study.max_train_works, "seeds": list(study.seeds),
                   "decode_per_split": study.decode_per_split,
                   "dp_delta": study.dp_delta, "trace_k": study.trace_k, "trace_outputs": study.trace_outputs},
      "machine": machine_info(),
      "runs": runs,
      "wall_s": time.perf_counter() - start,  # this invocation only: cached runs cost nothing here
      "runs_from_cache": sum(bool(r.get("from_cache")) for r in runs),
      "compute_s": float(sum(r.get("train_wall_s") or 0.0 for r in runs)
                         + sum((r.get("panel") or {}).get("wall_s") or 0.0 for r in runs)),
  }
  _write_json(out / "results.json", results)
  write_evidence(results, out / "study.json")
  return results


def write_evidence(results: dict, path: str | pathlib.Path) -> dict:
  """Writes the study's evidence file (:func:`govjax.study.stats.study_evidence` plus settings, machine and
  wall time) and returns it."""
  evidence = study_evidence(results["runs"])
  evidence = {"study": results["study"], **evidence, "settings": results["settings"],
              "base_config": results["base_config"], "machine": results["machine"],
              "wall_s": results.get("wall_s"), "compute_s": results.get("compute_s"),
              "runs_from_cache": results.get("runs_from_cache"),
              "num_runs": len(results["runs"])}
  _write_json(pathlib.Path(path), evidence)
  return evidence


def _json_default(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)
