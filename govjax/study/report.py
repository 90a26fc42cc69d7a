"""Figures and the HTML report of a study (``out/results.json``) or of a single run directory.

Figures (PNG, in ``out/figures/``):

1. ``extraction_over_training.png``: k-prefix extraction rate of restricted works per checkpoint, per method.
2. ``utility_vs_memorization.png``: held-out NLL (utility) against extraction of restricted works, one point per
   run (the Pareto view across methods and their knobs).
3. ``probe_validity.png``: the probe's per-work evidence at the end of training against the extraction audit,
   with the ROC AUC of the probe ranking extractable works first.
4. ``provenance_recall.png``: recall@1 of tracing a reproduced training window back to its work, by the depth
   the work trained at.
5. ``lookup_robustness.png``: fraction of transformed copies found by the rightsholder lookup, per
   transformation (when the study ran the lookup check).
6. ``evidence_intervals.png``: the headline metrics per method, means over seeds with 95% intervals (bootstrap
   over seeds and works, ``out/study.json``).
7. ``privacy_utility.png``: DP-SGD's utility-privacy curve (validation NLL against membership AUC and epsilon,
   with 95% intervals) and the other methods at their own utility.
8. ``premise.png`` and ``premise_shares.png`` (when ``out/premise.json`` exists or a premise summary is given):
   rule learning against secret exposure per treatment, and the restricted-share curves
   (:mod:`govjax.study.premise_figures`).

Command: ``govjax report --workdir runs/demo`` (re-draws everything from the saved results; add
``--premise experiments/results/premise.json`` for the premise section).

Example::

    write_study_report("runs/demo")

Figures, samples, lineage files and the manifest are linked relative to ``report.html`` itself
(:class:`govjax.report.page.Report`), so the report opens in a browser from any directory.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from govjax.core.rundir import RunDir
from govjax.report.page import Report
from govjax.study.plotting import pyplot, series_style
from govjax.study.premise_figures import figure_restricted_share, figure_rule_vs_exposure


def _save(fig, ax, path: pathlib.Path, *, xlabel: str | None = None, ylabel: str | None = None,
          title: str | None = None, legend: bool = False) -> None:
  """Labels ``ax``, writes ``fig`` to ``path`` (PNG, 110 dpi) and closes it."""
  if xlabel is not None:
    ax.set_xlabel(xlabel)
  if ylabel is not None:
    ax.set_ylabel(ylabel)
  if title is not None:
    ax.set_title(title)
  if legend:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  pyplot().close(fig)


def _fmt(value, digits: int = 3):
  if value is None:
    return "n/a"
  if isinstance(value, float):
    return round(value, digits)
  return value


def figure_extraction_curve(runs: list[dict], path: pathlib.Path) -> pathlib.Path | None:
  """Figure 1: extraction of restricted works (and canaries, dashed) over training steps."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4))
  drawn = False
  for run in runs:
    curve = [c for c in run.get("curve", []) if c.get("extraction_restricted") is not None]
    if curve:
      line, = ax.plot([c["step"] for c in curve], [c["extraction_restricted"] for c in curve], marker="o",
                      label=run["run"])
      drawn = True
      canary = [c for c in run["curve"] if c.get("extraction_canary") is not None]
      if canary:
        ax.plot([c["step"] for c in canary], [c["extraction_canary"] for c in canary], ls="--",
                color=line.get_color(), alpha=0.6)
  if not drawn:
    plt.close(fig)
    return None
  _save(fig, ax, path, xlabel="training step", ylabel="k-prefix extraction rate (restricted works)",
        title="Extraction over training (dashed: planted canaries)", legend=True)
  return path


def figure_pareto(runs: list[dict], path: pathlib.Path) -> pathlib.Path | None:
  """Figure 2: held-out NLL against restricted-work extraction (token match as a tie-breaker axis)."""
  plt = pyplot()
  points = [(r["val_nll"], r["memorization"].get("token_match_restricted"), r["run"]) for r in runs
            if r.get("val_nll") is not None and r["memorization"].get("token_match_restricted") is not None]
  if not points:
    return None
  fig, ax = plt.subplots(figsize=(6.4, 4))
  for nll, mem, name in points:
    ax.scatter(nll, mem)
    ax.annotate(name, (nll, mem), fontsize=7, xytext=(3, 3), textcoords="offset points")
  _save(fig, ax, path, xlabel="held-out NLL per token (lower = more useful)",
        ylabel="token match of greedy continuations\n(restricted works; lower = less memorized)",
        title="Utility vs memorization")
  return path


def probe_auc(rows: list[dict]) -> float | None:
  """ROC AUC of the probe (lower probe loss = more suspicious) for works with any extraction."""
  from sklearn.metrics import roc_auc_score  # noqa: PLC0415 (scikit-learn is slow to import; only figure 3)

  labels = np.array([(r.get("extraction_rate") or 0.0) > 0 for r in rows])
  if labels.all() or not labels.any():
    return None
  return float(roc_auc_score(labels, -np.array([r["probe_loss"] for r in rows])))


def figure_probe(runs: list[dict], path: pathlib.Path) -> tuple[pathlib.Path | None, dict]:
  """Figure 3: probe evidence vs extraction per work; returns the path and ``{run: auc}``."""
  plt = pyplot()
  probed = [r for r in runs if r.get("probe")]
  if not probed:
    return None, {}
  fig, ax = plt.subplots(figsize=(6.4, 4))
  aucs = {}
  for run in probed:
    rows = run["probe"]["per_work"]
    aucs[run["run"]] = probe_auc(rows)
    ax.scatter([r["probe_loss"] for r in rows], [r.get("extraction_rate") or 0 for r in rows], s=10,
               label=f"{run['run']} (AUC {_fmt(aucs[run['run']], 2)})")
  _save(fig, ax, path, xlabel="probe: per-example loss EMA at the end of training", ylabel="extraction rate (audit)",
        title="Probe validity", legend=True)
  return path, aucs


def figure_provenance(runs: list[dict], path: pathlib.Path) -> pathlib.Path | None:
  """Figure 4: recall@1 of tracing reproduced training windows, by training depth, per traced run."""
  plt = pyplot()
  traced = [r for r in runs if r.get("provenance")]
  if not traced:
    return None
  fig, ax = plt.subplots(figsize=(6.4, 4))
  width = 0.8 / len(traced)
  depths = sorted({d for r in traced for d in r["provenance"]["by_depth"]}, key=int)
  for i, run in enumerate(traced):
    values = [run["provenance"]["by_depth"].get(d, {}).get("recall_at_1", np.nan) for d in depths]
    ax.bar(np.arange(len(depths)) + i * width, values, width, label=run["run"])
  ax.set_xticks(np.arange(len(depths)) + width * (len(traced) - 1) / 2, [f"depth {d}" for d in depths])
  ax.set_ylim(0, 1.05)
  _save(fig, ax, path, ylabel="recall@1 (source work ranked first)", title="Provenance: tracing reproduced windows",
        legend=True)
  return path


def figure_lookup(lookup: dict | None, path: pathlib.Path) -> pathlib.Path | None:
  """Figure 5: lookup recall per transformation (``lookup["by_transformation"]: {name: recall}``)."""
  if not lookup or not lookup.get("by_transformation"):
    return None
  plt = pyplot()
  names = list(lookup["by_transformation"])
  fig, ax = plt.subplots(figsize=(6.4, 3.6))
  ax.bar(names, [lookup["by_transformation"][n] for n in names])
  ax.set_ylim(0, 1.05)
  plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
  _save(fig, ax, path, ylabel="fraction found",
        title=f"Lookup robustness (false positives: {lookup.get('false_positives', 'n/a')})")
  return path


EVIDENCE_METRICS = (
    ("val_nll", "validation NLL (nats/token)"),
    ("mia_auc_works", "membership AUC, per work (trained chorales)"),
    ("mia_auc_restricted_works", "membership AUC, per work (restricted)"),
    ("lira_auc_restricted_works", "reference-calibrated AUC (restricted)"),
    ("extraction_restricted", "exact extraction, restricted works"),
    ("extraction_heldout", "exact extraction, held-out works"),
    ("counterfactual_extraction_restricted", "counterfactual extraction, restricted"),
    ("edit_similarity_restricted", "edit similarity, restricted"),
    ("edit_similarity_heldout", "edit similarity, held-out"),
)


def _ci_text(value: dict | None, digits: int = 3) -> str:
  if not value or value.get("mean") is None:
    return "n/a"
  lo, hi = value["ci95"]
  if lo is None:
    return f"{value['mean']:.{digits}f}"
  return f"{value['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def evidence_metrics(evidence: dict) -> list[tuple[str, str]]:
  """The metrics the evidence table and figure show: the headline ones, then canary exposure and extraction per
  kind and level."""
  names = set().union(*(set(m) for m in evidence["methods"].values())) if evidence["methods"] else set()
  out = [(k, label) for k, label in EVIDENCE_METRICS if k in names]
  for kind in ("random", "chorale"):
    for level in evidence.get("canary_levels", []):
      for key, label in (("exposure", "exposure (bits, extrapolated)"), ("extraction", "extraction")):
        name = f"{key}_{kind}_r{level}"
        if name in names:
          out.append((name, f"{kind} canaries x{level}: {label}"))
  return out


def evidence_table(evidence: dict) -> list[dict]:
  """One row per metric, one column per method: ``mean [lo, hi]`` (95%, seeds and works resampled)."""
  methods = list(evidence["methods"])
  return [{"metric": label, **{m: _ci_text(evidence["methods"][m].get(key)) for m in methods}}
          for key, label in evidence_metrics(evidence)]


def figure_evidence(evidence: dict, path: pathlib.Path) -> pathlib.Path | None:
  """Figure 6: headline metrics per method with 95% error bars."""
  metrics = evidence_metrics(evidence)
  if not metrics:
    return None
  plt = pyplot()
  cols = 3
  rows = -(-len(metrics) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
  methods = list(evidence["methods"])
  for ax, (key, label) in zip(axes.ravel(), metrics, strict=False):
    means, lows, highs = [], [], []
    for m in methods:
      value = evidence["methods"][m].get(key) or {}
      mean = value.get("mean")
      lo, hi = (value.get("ci95") or [None, None])
      means.append(np.nan if mean is None else mean)
      lows.append(0.0 if mean is None or lo is None else mean - lo)
      highs.append(0.0 if mean is None or hi is None else hi - mean)
    ax.errorbar(np.arange(len(methods)), means, yerr=[lows, highs], fmt="o", capsize=3)
    if "auc" in key:
      ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(methods)), methods, rotation=35, ha="right", fontsize=7)
    ax.set_title(label, fontsize=8)
  for ax in axes.ravel()[len(metrics):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def figure_privacy_utility(evidence: dict, path: pathlib.Path) -> pathlib.Path | None:
  """Figure 7: validation NLL against per-work membership AUC for every method (95% intervals on both axes),
  the DP-SGD runs joined as a curve and labelled with their epsilon."""
  methods = evidence["methods"]
  points = [(m, v) for m, v in methods.items() if "val_nll" in v and "mia_auc_works" in v]
  if not points:
    return None
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))

  def err(value):
    lo, hi = value["ci95"]
    return [[value["mean"] - (lo if lo is not None else value["mean"])],
            [(hi if hi is not None else value["mean"]) - value["mean"]]]

  dp = sorted([(m, v) for m, v in points if m.startswith("dpsgd")], key=lambda p: p[1]["val_nll"]["mean"])
  if dp:
    ax.plot([v["val_nll"]["mean"] for _, v in dp], [v["mia_auc_works"]["mean"] for _, v in dp], color="grey",
            lw=1, zorder=0)
  for i, (name, value) in enumerate(points):
    colour, marker, hollow = series_style(plt, i)
    ax.errorbar(value["val_nll"]["mean"], value["mia_auc_works"]["mean"], xerr=err(value["val_nll"]),
                yerr=err(value["mia_auc_works"]), fmt=marker, capsize=3, label=name,
                color=colour, mfc="none" if hollow else None)
    if "epsilon" in value:
      ax.annotate(f"eps {value['epsilon']['mean']:.3g}", (value["val_nll"]["mean"], value["mia_auc_works"]["mean"]),
                  fontsize=7, xytext=(4, 4), textcoords="offset points")
  ax.axhline(0.5, color="grey", lw=0.8, ls="--")
  _save(fig, ax, path, xlabel="validation NLL (nats/token; lower = more useful)", ylabel="membership AUC per work",
        legend=True)
  return path


def results_table(runs: list[dict]) -> list[dict]:
  """One row per run: utility and memorization numbers."""
  rows = []
  for run in runs:
    mem = run["memorization"]
    exposure = mem.get("exposure") or {}
    rows.append({
        "run": run["run"], "method": run["label"], "val NLL": _fmt(run.get("val_nll")),
        "extr. restricted": _fmt(mem.get("extraction_restricted")),
        "extr. permissive": _fmt(mem.get("extraction_permissive")),
        "extr. held-out": _fmt(mem.get("extraction_heldout")),
        "tok. match restricted": _fmt(mem.get("token_match_restricted")),
        "tok. match held-out": _fmt(mem.get("token_match_heldout")),
        "extr. canaries": _fmt(mem.get("extraction_canary")),
        "exposure by copies": ", ".join(f"x{k}: {v:.1f}" for k, v in (exposure.get("by_repetitions") or {}).items())
                              or "n/a",
        "MIA AUC": _fmt(mem.get("mia_auc")), "MIA TPR@1%": _fmt(mem.get("mia_tpr_at_1pct")),
        "MIA AUC works": _fmt(mem.get("mia_auc_works")), "MIA AUC restricted": _fmt(mem.get("mia_auc_restricted")),
        "train s": _fmt(run.get("train_wall_s"), 1),
    })
  return rows


def governed_run(runs: list[dict]) -> dict | None:
  """The run a study documents (its manifest, its data table): the first governed one, else the first run."""
  return next((r for r in runs if r.get("method") != "vanilla"), runs[0] if runs else None)


def premise_section(report: Report, premise: dict, figures: pathlib.Path) -> None:
  """The premise experiment's section: its treatments table and both figures."""
  section = report.section(
      "Premise: rule learning without memorization",
      f"A learnable cadence rule and verbatim secrets placed only in restricted works (restricted share "
      f"{premise['spec']['main_share']:.0%}); seeds {premise['seeds']}; mean [95% interval], bootstrap over seeds "
      "then works. Rule gain is measured against the same seed's exclusion run; 'specific' subtracts the gain "
      "at control positions (the trigger without the rule).")
  keys = (("rule_gain_specific", "specific rule gain"), ("secret_exposure", "secret exposure (bits)"),
          ("mia_auc_restricted", "membership AUC"), ("val_nll_minus_exclude", "val NLL - exclude"))
  section.table([{"treatment": name, **{label: _ci_text(block.get(key)) for key, label in keys}}
                 for name, block in premise["treatments"].items()], caption="premise.json: treatments")
  rule = figure_rule_vs_exposure(premise, figures / "premise.png")
  if rule is not None:
    section.figure(rule, "8a. Rule learning against secret exposure (open markers: after trunk-leakage retraining; "
                   "grey band: exclusion's exposure).")
  shares = figure_restricted_share(premise, figures / "premise_shares.png")
  if shares is not None:
    section.figure(shares, "8b. The metrics against the share of restricted works.")


def write_study_report(out: str | pathlib.Path, *, premise: str | pathlib.Path | None = None) -> pathlib.Path:
  """Draws the figures and writes ``out/report.html`` from ``out/results.json``; returns the report path.

  Args:
    out: the study directory.
    premise: a ``premise.json`` to add as a section (default: ``out/premise.json`` when it exists).

  Returns:
    The path of ``report.html``.
  """
  out = pathlib.Path(out)
  results = json.loads((out / "results.json").read_text())
  runs = results["runs"]
  figures = out / "figures"
  figures.mkdir(parents=True, exist_ok=True)
  lookup = json.loads((out / "lookup.json").read_text()) if (out / "lookup.json").is_file() else None

  report = Report(f"govjax study: {results['study']}",
                  f"{len(runs)} runs; machine: {results['machine']['platform']}, "
                  f"{results['machine']['cpu_count']} CPUs, jax {results['machine']['jax']}; "
                  f"wall time {results['wall_s'] / 60:.1f} min")
  section = report.section(
      "Question", "Does governed training let the model learn the general craft (held-out NLL) while not "
      "reproducing the specific, restricted works (k-prefix extraction, canary exposure, membership inference)? "
      "Extraction: prompt with the first k tokens of a training window, greedy-decode m tokens, exact match. "
      "The held-out row is the baseline: what the model produces on music it never saw.")
  section.table(results_table(runs), caption=f"k={results['settings']['audit_k']}, "
                f"m={results['settings']['audit_m']}; restricted = restrictive or unknown licence (simulated "
                "scenario); canaries = planted random passages")
  section = report.section("Figures")
  curve = figure_extraction_curve(runs, figures / "extraction_over_training.png")
  if curve is not None:
    section.figure(curve, "1. Extraction of restricted works over training.")
  pareto = figure_pareto(runs, figures / "utility_vs_memorization.png")
  if pareto is not None:
    section.figure(pareto, "2. Utility vs memorization, one point per run.")
  probe_path, aucs = figure_probe(runs, figures / "probe_validity.png")
  if probe_path is not None:
    section.figure(probe_path, f"3. Probe validity (ROC AUC per run: {aucs}).")
  prov = figure_provenance(runs, figures / "provenance_recall.png")
  if prov is not None:
    section.figure(prov, "4. Provenance: is a reproduced training window traced to its source work?")
  look = figure_lookup(lookup, figures / "lookup_robustness.png")
  if look is not None:
    section.figure(look, "5. Rightsholder lookup on transformed copies.")
  evidence = json.loads((out / "study.json").read_text()) if (out / "study.json").is_file() else None
  if evidence is not None and evidence.get("methods"):
    section = report.section(
        "Evidence", f"Means over seeds {evidence['seeds']} with 95% intervals (bootstrap over seeds, then works; a "
        "work's windows together). Paired differences and the raw per-work values are in study.json.")
    section.table(evidence_table(evidence), caption="mean [95% interval] per method")
    bars = figure_evidence(evidence, figures / "evidence_intervals.png")
    if bars is not None:
      section.figure(bars, "6. Headline metrics per method with 95% intervals.")
    curve = figure_privacy_utility(evidence, figures / "privacy_utility.png")
    if curve is not None:
      section.figure(curve, "7. Utility against membership inference; DP-SGD's noise sweep as a curve.")
  premise_path = pathlib.Path(premise) if premise is not None else out / "premise.json"
  if premise_path.is_file():
    premise_section(report, json.loads(premise_path.read_text()), figures)

  described = governed_run(runs)
  if described is not None:
    name = f"run {described['run']} ({described['label']}, {described['workdir']})"
    section = report.section("Data and treatments", f"The training data of {name}: the works it was given, "
                             "what its policy excluded and the depths it trained them to. The manifest below "
                             "documents the same run.")
    report_data = described["data_report"]
    section.table([{"key": k, "value": json.dumps(v) if isinstance(v, dict | list) else v}
                   for k, v in report_data.items() if k != "exclusion"], caption=f"training data of {name}")
    excluded = report_data.get("exclusion", {}).get("excluded", [])
    if excluded:
      section.table(excluded[:50], caption=f"works excluded from {name} ({len(excluded)}), with the rule and "
                    "reason")
  section = report.section("Samples and lineage")
  for run in runs:
    for sample in run.get("samples", []):
      section.link(out / sample, f"{run['run']}: {pathlib.Path(sample).name}")
    for lineage in sorted((out / run["workdir"] / "provenance" / "lineage").glob("*.json")):
      section.link(lineage, f"{run['run']}: lineage {lineage.stem}")
  manifest = out / "manifest"
  if manifest.is_dir():
    section = report.section("Documentation", "The dataset manifest (Croissant 1.1, tiers 1-3) of the run "
                             "described above; `govjax lookup FILE --manifest manifest` answers a rights "
                             "holder's question from it.")
    for path in sorted(manifest.glob("*")):
      section.link(path, f"manifest: {path.name}")
  return report.write(out / "report.html")


def write_run_report(workdir: str | pathlib.Path) -> pathlib.Path:
  """``workdir/report.html`` for a single training run: loss curve, validation NLL, audit, samples, lineage.

  The run is read through :class:`govjax.core.rundir.RunDir`: each logged step once, even in a resumed run.
  """
  run = RunDir(workdir)
  workdir = run.path
  record = run.read_record()
  metrics = run.read_metrics()
  report = Report(f"govjax run: {record['config'].get('name')}",
                  f"{workdir} (config hash {record.get('config_hash')})")
  section = report.section("Training")
  if metrics:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot([m["step"] for m in metrics], [m["loss"] for m in metrics], label="train loss")
    val = [m for m in metrics if "val_nll" in m]
    if val:
      ax.plot([m["step"] for m in val], [m["val_nll"] for m in val], marker="o", label="validation NLL")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per token")
    ax.legend()
    fig.tight_layout()
    (workdir / "figures").mkdir(exist_ok=True)
    fig.savefig(workdir / "figures" / "loss.png", dpi=110)
    plt.close(fig)
    section.figure(workdir / "figures" / "loss.png", "Training loss and validation NLL.")
    section.table([{"steps": metrics[-1]["step"], "final loss": _fmt(metrics[-1]["loss"]),
                    "validation NLL": _fmt(val[-1]["val_nll"]) if val else "n/a"}])
  audit = workdir / "audit" / "summary.json"
  if audit.is_file():
    summary = json.loads(audit.read_text())
    section = report.section("Memorization audit", f"k={summary.get('k')}, m={summary.get('m')}")
    section.table([{"split": k, **{kk: _fmt(vv) for kk, vv in v.items() if not isinstance(vv, dict | list)}}
                   for k, v in summary.get("splits", {}).items()])
    section.link(workdir / "audit" / "per_work.csv", "per-work audit table (CSV)")
  section = report.section("Samples and lineage")
  for path in sorted((workdir / "samples").glob("*.mid")):
    section.link(path, f"sample {path.name}")
  for path in sorted((workdir / "provenance" / "lineage").glob("*.json")):
    section.link(path, f"lineage {path.stem}")
  return report.write(workdir / "report.html")


def results_markdown(results: dict) -> str:
  """The results table of a study as markdown, with the machine it ran on (for experiments/RESULTS.md)."""
  rows = results_table(results["runs"])
  columns = list(rows[0]) if rows else []
  machine = results["machine"]
  lines = [f"Study `{results['study']}`: {len(rows)} runs, wall time {results['wall_s'] / 60:.1f} min on "
           f"{machine['platform']} ({machine['cpu_count']} CPUs, jax {machine['jax']}, {machine['devices'][0]}).",
           "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
  traced = [r for r in results["runs"] if r.get("provenance")]
  if traced:
    lines += ["", "Provenance (reproduced training windows traced to their source work): " + ", ".join(
        f"{r['run']} recall@1 {r['provenance']['recall_at_1']:.2f}" for r in traced) + "."]
  return "\n".join(lines) + "\n"
