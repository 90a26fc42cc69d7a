"""Runs the governance study: train every method, audit it, trace outputs, collect one results file.

For each :class:`~govjax.study.methods.RunSpec` the runner trains into ``out/runs/<run name>`` (resuming if the run
is already there), audits every checkpoint of ``curve_steps`` (extraction over training) and the final one
(written to the run's ``audit/``), samples chorales, and for the methods in ``trace_methods`` builds an influence
index and traces training windows used as "reproducing outputs" (does the trace find their source work?).
Everything measured goes to ``out/results.json``; :mod:`govjax.study.report` turns it into figures and
``report.html``.

Example (see ``experiments/configs/study_demo.py`` for the command and runtime)::

    study = load_study("experiments/configs/study_demo.py")
    results = run_study(study, "runs/demo")
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from collections.abc import Callable

import numpy as np

from govjax.audit.run import audit_run, write_audit
from govjax.core.checkpoint import Checkpoints
from govjax.core.ids import work_kind
from govjax.provenance.featurize import FeatureConfig
from govjax.provenance.lineage import build_lineage, write_lineage
from govjax.provenance.runs import index_run, load_tracer
from govjax.study.methods import METHODS, RunSpec, StudyConfig, method_config
from govjax.train import data as training_data
from govjax.train.loop import train
from govjax.train.sampling import sample_run, write_samples

RESTRICTED_CLASSES = ("restrictive", "unknown")


def _say(progress: Callable[[str], None] | None, text: str) -> None:
  if progress is not None:
    progress(text)


def machine_info() -> dict:
  """Where the numbers were measured."""
  import jax

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
  table = data.window_table
  candidates = np.flatnonzero(np.array([work_kind(data.works[int(w)].work_id) != "structural"
                                        for w in table.work_index]))
  chosen = rng.choice(candidates, size=min(study.trace_outputs, candidates.size), replace=False)
  hits, rows = [], []
  works = index.works if hasattr(index, "works") else None
  for n, example_id in enumerate(chosen):
    tokens = data.window_tokens(int(example_id))
    attribution = tracer.attribute({"tokens": tokens[None, :]}, top=5, aggregation="max")
    source = int(table.work_index[example_id])
    top1 = int(attribution.proponents[0])
    hits.append(top1 == source)
    depth = int(data.per_work_depth[source])
    rows.append({"example_id": int(example_id), "work_id": data.works[source].work_id, "depth": depth,
                 "top1": data.works[top1].work_id, "hit": bool(top1 == source)})
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
          "index_s": index_s, "num_examples": int(data.num_train_examples)}


def run_one(study: StudyConfig, spec: RunSpec, out: pathlib.Path, *, progress=None, train_progress=False) -> dict:
  """Trains, audits, samples and (maybe) traces one run; returns its results entry."""

  config = method_config(study.base, spec.method, seed=spec.seed, knob=spec.knob)
  workdir = out / "runs" / spec.name
  _say(progress, f"[{spec.name}] {METHODS[spec.method].label}: training {config.num_steps} steps")
  data = training_data.build_training_data(config)
  result = train(config, workdir, data=data, progress=train_progress)
  with Checkpoints(workdir / "checkpoints", max_to_keep=None) as ckpts:
    steps = ckpts.all_steps()
  curve_steps = [s for s in steps if study.curve_steps is None or s in study.curve_steps]
  audit_kw = dict(k=study.audit_k, m=study.audit_m, data=data, max_windows_per_work=study.audit_max_windows_per_work,
                  seed=spec.seed)
  curve = []
  final = None
  for step in curve_steps:
    audit = audit_run(workdir, step=step, **audit_kw)
    mem = memorization_summary(audit.summary, audit.rows)
    curve.append({"step": step, **{k: v for k, v in mem.items() if k != "exposure"}})
    if step == steps[-1]:
      final = audit
  if final is None:
    final = audit_run(workdir, **audit_kw)
  write_audit(workdir, final)
  memorization = memorization_summary(final.summary, final.rows)
  rates = ", ".join(f"{label} {'n/a' if memorization[key] is None else format(memorization[key], '.3f')}"
                    for label, key in (("restricted", "extraction_restricted"),
                                       ("permissive", "extraction_permissive"),
                                       ("held-out", "extraction_heldout")))
  _say(progress, f"    val NLL {result.val_nll:.3f}; extraction {rates}")
  samples = sample_run(workdir, num_samples=study.num_samples, num_frames=min(64, config.model.context // 4),
                       seed=spec.seed, data=data)
  sample_paths = write_samples(samples, workdir / "samples" / "sample.mid")
  entry = {
      "run": spec.name, "method": spec.method, "label": METHODS[spec.method].label, "seed": spec.seed,
      "knob": list(spec.knob), "workdir": str(workdir.relative_to(out)), "val_nll": result.val_nll,
      "train_wall_s": result.wall_s, "steps": int(result.state.step), "data_report": data.report,
      "memorization": memorization, "curve": curve,
      "samples": [str(p.relative_to(out)) for p in sample_paths],
  }
  probe = _probe_summary(result, final)
  if probe is not None:
    entry["probe"] = probe
  if spec.method in study.trace_methods and study.trace_outputs:
    entry["provenance"] = _trace_recall(workdir, data, study, spec.seed, progress)
  return entry


def _probe_summary(result, audit) -> dict | None:
  """Per-work probe evidence at the end of training next to the audit's extraction (probe validity)."""
  extras = result.state.extras
  if "probe" not in extras:
    return None
  state = extras["probe"]
  table = result.data.window_table
  ema = np.asarray(state.ema)
  depth = np.asarray(state.depth)
  per_work = {}
  for w, work in enumerate(result.data.works):
    mine = np.flatnonzero(np.asarray(table.work_index) == w)
    if mine.size:
      per_work[work.work_id] = {"probe_loss": float(ema[mine, 0].mean()), "min_depth": int(depth[mine].min())}
  rows = [{"work_id": r["work_id"], "extraction_rate": r.get("extraction_rate"), **per_work[r["work_id"]]}
          for r in audit.rows if r["split"] == "train" and r["work_id"] in per_work]
  counts = np.bincount(depth, minlength=result.data.num_groups + 1)
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
  for spec in study.runs:
    runs.append(run_one(study, spec, out, progress=progress, train_progress=train_progress))
  results = {
      "study": study.name,
      "base_config": study.base.to_dict(),
      "settings": {"audit_k": study.audit_k, "audit_m": study.audit_m,
                   "audit_max_windows_per_work": study.audit_max_windows_per_work,
                   "trace_k": study.trace_k, "trace_outputs": study.trace_outputs},
      "machine": machine_info(),
      "runs": runs,
      "wall_s": time.perf_counter() - start,
  }
  (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
  return results


def _json_default(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)
