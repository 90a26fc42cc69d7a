"""The study's evidence: every metric per method as a mean with a 95% interval, paired differences between methods.

Input: the per-run entries of ``results.json`` (:mod:`govjax.study.runner`), each with a ``panel`` audit
(:mod:`govjax.audit.panel`): the same windows under every model of a seed. Output (:func:`study_evidence`)::

  {"seeds": [...], "canary_levels": [...], "canaries_per_level": N,
   "methods": {NAME: {METRIC: {"mean", "ci95", ...}}},
   "paired": {"A-vs-B": {METRIC: {"mean_diff", "ci95", ...}}},
   "matched_utility": {...}, "raw": {RUN: {...}}}

A method's ``NAME`` is its run name without the seed (``vanilla``, ``dpsgd-dp_noise2.0``). Intervals come from
:mod:`govjax.core.intervals`: metrics measured per work (or per distinct canary) resample seeds, then works within
a seed; AUCs and TPRs resample seeds, then member and non-member works (a work's windows together). Paired
differences resample the same seeds and works for both methods.

Metrics (``restricted``: works of the training split with a restrictive or unknown licence, trained or not by the
run; ``heldout``: works no run trained on; the reference model of a seed is its ``exclude`` run):

- ``val_nll``; ``epsilon`` (DP-SGD, example level, from dp-accounting).
- ``extraction_restricted`` / ``extraction_heldout`` / ``extraction_members``: exact k-prefix reproduction of
  ``m`` tokens, per work; ``edit_similarity_*``: ``1 -`` normalised edit distance, per work.
- ``counterfactual_extraction_restricted``: windows reproduced by the model and *not* by the reference model.
- ``mia_auc_works`` / ``mia_auc_restricted_works``: per-work loss attack (members: the run's trained chorales /
  restricted chorales it trained; non-members: the held-out works); ``mia_auc_*_windows``: per window.
- ``lira_auc_restricted_works``: reference-calibrated attack (reference loss minus loss) on restricted works.
- ``mia_tpr_at_{fpr}_works``: TPR at FPRs the held-out works resolve (``fpr >= 1 / num_nonmember_works``).
- ``exposure_{kind}_r{reps}``, ``extraction_{kind}_r{reps}``, ``edit_similarity_{kind}_r{reps}``: canaries
  of kind ``random`` / ``chorale`` planted ``reps`` times, per distinct canary; exposure extrapolated
  (skew-normal tail), so it is not capped at ``log2(references + 1)``.

Example:
  >>> evidence = study_evidence(_example_runs(), resamples=50)
  >>> sorted(evidence["methods"]), evidence["seeds"]
  (['exclude', 'vanilla'], [0, 1])
  >>> m = evidence["methods"]["vanilla"]["mia_auc_works"]
  >>> m["mean"], m["ci95"][0] <= m["mean"] <= m["ci95"][1]
  (1.0, True)
  >>> evidence["paired"]["exclude-vs-vanilla"]["val_nll"]["mean_diff"]
  0.5
  >>> evidence["methods"]["vanilla"]["counterfactual_extraction_restricted"]["mean"]
  1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from govjax.audit.membership import resolvable_tpr
from govjax.core.intervals import DEFAULT_RESAMPLES, members_auc, paired_difference, seed_work_bootstrap

__all__ = ["RESTRICTED_CLASSES", "method_name", "per_work_metrics", "seed_group_statistic", "study_evidence"]

RESTRICTED_CLASSES = ("restrictive", "unknown")
TPR_FPRS = (0.01, 0.05, 0.1, 0.25)
REFERENCE_METHOD = "exclude"


def method_name(run: Mapping) -> str:
  """A run's method name without its seed: ``vanilla``, ``dpsgd-dp_noise2.0``."""
  return str(run["run"]).rsplit("-s", 1)[0]


def _mean_by(rows: list[dict], key: str) -> dict[str, float]:
  out: dict[str, list[float]] = {}
  for row in rows:
    value = row.get(key)
    if value is not None and np.isfinite(float(value)):
      out.setdefault(row["work_id"], []).append(float(value))
  return {w: float(np.mean(v)) for w, v in out.items()}


def _window_key(row: dict) -> tuple[str, int]:
  return row["work_id"], int(row["start"])


def per_work_metrics(panel: dict, reference: dict | None = None) -> dict:
  """Per-work (and per-canary) values of one run's panel audit.

  Args:
    panel: the run's ``audit_panel`` output.
    reference: the panel of the same seed's reference model (never trained on restricted works), or None.

  Returns:
    ``{"per_work": {metric: {work: value}}, "auc": {name: {"scores": {work: s}, "members": [work, ...],
    "nonmembers": [...]}}}``: the inputs of every interval, JSON-able (kept in the study file as raw data).
  """
  windows = [r for r in panel["windows"] if r.get("valid", True)]
  restricted = [r for r in windows if r["split"] == "train" and r.get("licence_class") in RESTRICTED_CLASSES]
  heldout = [r for r in windows if r["split"] == "heldout"]
  members = [r for r in windows if r["split"] == "train" and r["member"]]
  per_work: dict[str, dict[str, float]] = {}
  for name, rows in (("restricted", restricted), ("heldout", heldout), ("members", members)):
    per_work[f"extraction_{name}"] = _mean_by(rows, "exact")
    per_work[f"edit_similarity_{name}"] = _mean_by(rows, "edit_similarity")
    per_work[f"token_match_{name}"] = _mean_by(rows, "token_match")
    per_work[f"loss_{name}"] = _mean_by(rows, "loss")
  auc: dict[str, dict] = {}
  loss_heldout = per_work["loss_heldout"]
  restricted_members = [r for r in restricted if r["member"]]
  for name, rows in (("works", members), ("restricted_works", restricted_members)):
    scores = {w: -v for w, v in _mean_by(rows, "loss").items()}
    scores.update({w: -v for w, v in loss_heldout.items()})
    auc[f"mia_auc_{name}"] = {"scores": scores, "members": sorted(_mean_by(rows, "loss")),
                              "nonmembers": sorted(loss_heldout)}
  # Window level: each window is an item, grouped by its work for the bootstrap.
  auc["mia_auc_restricted_windows"] = {
      "scores": {f"{w}@{s}": -r["loss"] for r in restricted_members + heldout for w, s in [_window_key(r)]},
      "members": [f"{w}@{s}" for r in restricted_members for w, s in [_window_key(r)]],
      "nonmembers": [f"{w}@{s}" for r in heldout for w, s in [_window_key(r)]], "grouped": True}
  if reference is not None:
    ref = {_window_key(r): r for r in reference["windows"]}
    both = [r for r in restricted + heldout if _window_key(r) in ref]
    if restricted_members and both:
      calibrated = [dict(r, lira=ref[_window_key(r)]["loss"] - r["loss"]) for r in both]
      per_work_lira = _mean_by(calibrated, "lira")
      auc["lira_auc_restricted_works"] = {
          "scores": per_work_lira, "members": sorted({r["work_id"] for r in restricted_members} & set(per_work_lira)),
          "nonmembers": sorted({r["work_id"] for r in heldout} & set(per_work_lira))}
    counter = [dict(r, cf=float(bool(r["exact"]) and not bool(ref[_window_key(r)]["exact"])))
               for r in restricted if _window_key(r) in ref and ref[_window_key(r)].get("exact") is not None]
    per_work["counterfactual_extraction_restricted"] = _mean_by(counter, "cf")
    counter_held = [dict(r, cf=float(bool(r["exact"]) and not bool(ref[_window_key(r)]["exact"])))
                    for r in heldout if _window_key(r) in ref and ref[_window_key(r)].get("exact") is not None]
    per_work["counterfactual_extraction_heldout"] = _mean_by(counter_held, "cf")
  for row in panel.get("canaries", []):
    suffix = f"{row['kind']}_r{row['repetitions']}"
    for key in ("exposure", "exposure_rank", "exact", "edit_similarity", "loss"):
      if row.get(key) is not None:
        name = "extraction" if key == "exact" else key
        per_work.setdefault(f"{name}_{suffix}", {})[row["canary"]] = float(row[key])
  return {"per_work": {k: v for k, v in per_work.items() if v}, "auc": auc}


def _groups(names: Sequence[str], grouped: bool) -> dict[str, list[str]]:
  out: dict[str, list[str]] = {}
  for name in names:
    out.setdefault(name.rsplit("@", 1)[0] if grouped else name, []).append(name)
  return out


def seed_group_statistic(per_seed: Mapping, statistic: Callable[[np.ndarray, np.ndarray], float], *,
                         resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict:
  """A two-sample statistic (AUC, TPR) averaged over seeds, with an interval resampling seeds, then member and
  non-member works within a seed (a work's windows together).

  Args:
    per_seed: ``{seed: {"scores": {item: score}, "members": [item], "nonmembers": [item], "grouped": bool}}``;
      ``grouped`` items are ``work@start`` windows grouped by work.
    statistic: ``f(member_scores, nonmember_scores) -> float``.
    resamples, seed, level: the bootstrap's.

  Returns:
    ``{"mean", "ci95", "n_seeds", "per_seed", "n_member_works", "n_nonmember_works"}``.
  """
  prepared = {}
  for s, item in per_seed.items():
    grouped = bool(item.get("grouped"))
    scores = item["scores"]
    mg = {g: np.array([scores[i] for i in v]) for g, v in _groups(item["members"], grouped).items()}
    ng = {g: np.array([scores[i] for i in v]) for g, v in _groups(item["nonmembers"], grouped).items()}
    if mg and ng:
      prepared[s] = (list(mg.values()), list(ng.values()))
  if not prepared:
    return {"mean": None, "ci95": [None, None], "n_seeds": 0}
  point = {str(s): statistic(np.concatenate(m), np.concatenate(n)) for s, (m, n) in prepared.items()}
  rng = np.random.default_rng(seed)
  keys = list(prepared)
  draws = np.empty(resamples)
  for r in range(resamples):
    values = []
    for c in rng.integers(0, len(keys), size=len(keys)):
      m, n = prepared[keys[c]]
      pick_m = rng.integers(0, len(m), size=len(m))
      pick_n = rng.integers(0, len(n), size=len(n))
      values.append(statistic(np.concatenate([m[i] for i in pick_m]), np.concatenate([n[i] for i in pick_n])))
    draws[r] = np.nanmean(values)
  alpha = (1 - level) / 2
  finite = draws[np.isfinite(draws)]
  ci = [float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))] if finite.size else [None, None]
  first = next(iter(prepared.values()))
  return {"mean": float(np.nanmean(list(point.values()))), "ci95": ci, "n_seeds": len(prepared), "per_seed": point,
          "n_member_works": len(first[0]), "n_nonmember_works": len(first[1])}


def _paired_statistic(a: Mapping, b: Mapping, statistic, *, resamples: int, seed: int, level: float = 0.95) -> dict:
  """``statistic(A) - statistic(B)`` on the same seeds and the same resampled works."""
  common = [s for s in a if s in b]
  prepared = {}
  for s in common:
    grouped = bool(a[s].get("grouped"))
    members = sorted(set(_groups(a[s]["members"], grouped)) & set(_groups(b[s]["members"], grouped)))
    nonmembers = sorted(set(_groups(a[s]["nonmembers"], grouped)) & set(_groups(b[s]["nonmembers"], grouped)))
    if not members or not nonmembers:
      continue
    sides = []
    for item in (a[s], b[s]):
      mg, ng = _groups(item["members"], grouped), _groups(item["nonmembers"], grouped)
      sides.append(([np.array([item["scores"][i] for i in mg[g]]) for g in members],
                    [np.array([item["scores"][i] for i in ng[g]]) for g in nonmembers]))
    prepared[s] = sides
  if not prepared:
    return {"mean_diff": None, "ci95": [None, None], "n_seeds": 0}

  def diff(sides, pick_m=None, pick_n=None):
    out = []
    for m, n in sides:
      pm = range(len(m)) if pick_m is None else pick_m
      pn = range(len(n)) if pick_n is None else pick_n
      out.append(statistic(np.concatenate([m[i] for i in pm]), np.concatenate([n[i] for i in pn])))
    return out[0] - out[1]

  point = float(np.nanmean([diff(sides) for sides in prepared.values()]))
  rng = np.random.default_rng(seed)
  keys = list(prepared)
  draws = np.empty(resamples)
  for r in range(resamples):
    values = []
    for c in rng.integers(0, len(keys), size=len(keys)):
      sides = prepared[keys[c]]
      nm, nn = len(sides[0][0]), len(sides[0][1])
      values.append(diff(sides, rng.integers(0, nm, size=nm), rng.integers(0, nn, size=nn)))
    draws[r] = np.nanmean(values)
  finite = draws[np.isfinite(draws)]
  alpha = (1 - level) / 2
  ci = [float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))] if finite.size else [None, None]
  return {"mean_diff": point, "ci95": ci, "n_seeds": len(prepared)}


def _tpr(fpr: float) -> Callable[[np.ndarray, np.ndarray], float]:
  def statistic(members: np.ndarray, nonmembers: np.ndarray) -> float:
    return resolvable_tpr(members, nonmembers, fprs=(fpr,)).get(str(fpr), float("nan"))
  return statistic


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float | None:
  order = np.argsort(xs)
  xs, ys = np.asarray(xs, float)[order], np.asarray(ys, float)[order]
  if not xs.size or x < xs[0] or x > xs[-1]:
    return None
  return float(np.interp(x, xs, ys))


def study_evidence(runs: Sequence[Mapping], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                   baseline: str = "vanilla", reference: str = REFERENCE_METHOD,
                   pairs: Sequence[tuple[str, str]] | None = None) -> dict:
  """Means, 95% intervals and paired differences of every metric (see the module docstring).

  Args:
    runs: run entries, each with ``run``, ``seed``, ``val_nll``, ``panel`` and optionally ``privacy``.
    resamples: bootstrap resamples per interval.
    seed: the bootstrap seed.
    baseline: every other method is paired against it (and ``depth`` against every method).
    reference: the method whose run of the same seed is the reference model (counterfactual, LiRA); every
      method other than ``baseline`` and ``depth`` is paired against it too.
    pairs: explicit ``(A, B)`` pairs instead.

  Returns:
    The evidence dict.
  """
  by_method: dict[str, dict[int, dict]] = {}
  for run in runs:
    by_method.setdefault(method_name(run), {})[int(run["seed"])] = run
  refs = by_method.get(reference, {})
  measured: dict[str, dict[int, dict]] = {}
  raw = {}
  for name, per_seed in by_method.items():
    for s, run in per_seed.items():
      ref_panel = refs[s]["panel"] if s in refs and name != reference else None
      m = per_work_metrics(run["panel"], ref_panel)
      m["per_work"]["val_nll"] = {"all": float(run["val_nll"])} if run.get("val_nll") is not None else {}
      if (run.get("privacy") or {}).get("epsilon") is not None:
        m["per_work"]["epsilon"] = {"all": float(run["privacy"]["epsilon"])}
      measured.setdefault(name, {})[s] = m
      raw[run["run"]] = {"method": name, "seed": s, **m}
  statistics = {"mia_auc": members_auc, **{f"mia_tpr_at_{f}": _tpr(f) for f in TPR_FPRS}}
  methods: dict[str, dict] = {}
  for name, per_seed in measured.items():
    out = {}
    metrics = sorted({k for m in per_seed.values() for k, v in m["per_work"].items() if v})
    for metric in metrics:
      values = {s: m["per_work"][metric] for s, m in per_seed.items() if m["per_work"].get(metric)}
      out[metric] = seed_work_bootstrap(values, resamples=resamples, seed=seed)
    for attack in sorted({k for m in per_seed.values() for k in m["auc"]}):
      inputs = {s: m["auc"][attack] for s, m in per_seed.items() if attack in m["auc"]}
      for stat_name, statistic in statistics.items():
        key = attack if stat_name == "mia_auc" else attack.replace("auc", stat_name.removeprefix("mia_"))
        if stat_name != "mia_auc":
          n_non = min(len(v["nonmembers"]) for v in inputs.values())
          if float(stat_name.rsplit("_", 1)[1]) < 1.0 / max(n_non, 1):
            continue  # not resolvable with these non-members
        result = seed_group_statistic(inputs, statistic, resamples=resamples, seed=seed)
        if result["mean"] is not None:
          out[key] = result
    methods[name] = out
  if pairs is None:
    names = sorted(measured)
    pairs = [(n, baseline) for n in names if n != baseline and baseline in measured]
    pairs += [("depth", n) for n in names if n not in ("depth", baseline) and "depth" in measured]
    pairs += [(n, reference) for n in names if n not in ("depth", baseline, reference) and reference in measured]
  paired: dict[str, dict] = {}
  for a, b in pairs:
    if a not in measured or b not in measured:
      continue
    out = {}
    for metric in sorted(set(methods[a]) & set(methods[b])):
      pa = {s: m["per_work"][metric] for s, m in measured[a].items() if m["per_work"].get(metric)}
      pb = {s: m["per_work"][metric] for s, m in measured[b].items() if m["per_work"].get(metric)}
      if pa and pb:
        try:
          out[metric] = paired_difference(pa, pb, resamples=resamples, seed=seed)
        except ValueError:
          continue
      else:
        ia = {s: m["auc"][metric] for s, m in measured[a].items() if metric in m["auc"]}
        ib = {s: m["auc"][metric] for s, m in measured[b].items() if metric in m["auc"]}
        if ia and ib:
          result = _paired_statistic(ia, ib, members_auc, resamples=resamples, seed=seed)
          if result["mean_diff"] is not None:
            out[metric] = result
    paired[f"{a}-vs-{b}"] = out
  levels = sorted({int(r["repetitions"]) for run in runs for r in run["panel"].get("canaries", [])})
  counts = {}
  for run in runs:
    for r in run["panel"].get("canaries", []):
      counts.setdefault((r["kind"], r["repetitions"]), set()).add(r["canary"])
  return {
      "seeds": sorted({int(r["seed"]) for r in runs}),
      "canary_levels": levels,
      "canaries_per_level": min((len(v) for v in counts.values()), default=0),
      "canaries_per_level_by_kind": {kind: min((len(v) for (k, _), v in counts.items() if k == kind), default=0)
                                     for kind in sorted({k for k, _ in counts})},
      "methods": methods,
      "paired": paired,
      "matched_utility": matched_utility(methods),
      "raw": raw,
  }


def matched_utility(methods: Mapping[str, Mapping]) -> dict:
  """DP-SGD's privacy curve read at each other method's validation NLL (linear interpolation between the
  noise multipliers' means; None outside the curve's range)."""
  curve = {n: m for n, m in methods.items() if n.startswith("dpsgd") and "val_nll" in m}
  if len(curve) < 2:
    return {}
  xs = [m["val_nll"]["mean"] for m in curve.values()]
  out = {}
  for name, metrics in methods.items():
    if name in curve or "val_nll" not in metrics:
      continue
    nll = metrics["val_nll"]["mean"]
    row = {"val_nll": nll, "dpsgd_at_same_val_nll": {}}
    for metric, value in metrics.items():
      if metric == "val_nll" or not all(metric in m for m in curve.values()):
        continue
      row["dpsgd_at_same_val_nll"][metric] = _interp(nll, xs, [m[metric]["mean"] for m in curve.values()])
      row.setdefault("method", {})[metric] = value["mean"]
    out[name] = row
  return out


def _example_runs() -> list[dict]:
  """Two seeds of a vanilla and an exclusion run on a toy panel (for the doctest)."""
  runs = []
  for s in (0, 1):
    for name, member_loss, nll in (("vanilla", 0.5, 1.0), ("exclude", 2.0, 1.5)):
      windows = [{"work_id": f"r{i}", "start": 0, "split": "train", "member": name == "vanilla",
                  "licence_class": "restrictive", "loss": member_loss + 0.01 * i, "exact": name == "vanilla",
                  "edit_similarity": 0.9, "token_match": 0.9} for i in range(4)]
      windows += [{"work_id": f"h{i}", "start": 0, "split": "heldout", "member": False, "licence_class": "x",
                   "loss": 2.0 + 0.01 * i, "exact": False, "edit_similarity": 0.5, "token_match": 0.5}
                  for i in range(4)]
      runs.append({"run": f"{name}-s{s}", "seed": s, "val_nll": nll, "panel": {"windows": windows, "canaries": []}})
  return runs
