"""Figures of the premise experiment (``premise.json`` from :func:`govjax.study.premise.summarise`).

1. :func:`figure_rule_vs_exposure`: per treatment, rule learning (specific rule gain: NLL gain at the rule's
   positions minus the gain at control positions, against ``exclude``) against secret exposure, both with 95%
   intervals, at the main restricted share; the trunk-leakage re-measurements as open markers.
2. :func:`figure_restricted_share`: rule gain, secret exposure, membership AUC and validation NLL minus
   ``exclude`` against the restricted share, one line per treatment.

Example:
  >>> import json, pathlib, tempfile
  >>> summary = json.loads(pathlib.Path("experiments/results/premise.json").read_text())
  >>> out = pathlib.Path(tempfile.mkdtemp())
  >>> figure_rule_vs_exposure(summary, out / "premise.png").name
  'premise.png'
  >>> figure_restricted_share(summary, out / "shares.png") is None or (out / "shares.png").is_file()
  True
"""

from __future__ import annotations

import pathlib

from govjax.study.plotting import pyplot, series_style

__all__ = ["SHARE_METRICS", "figure_restricted_share", "figure_rule_vs_exposure", "premise_figures"]

SHARE_METRICS = (("rule_gain_specific", "specific rule gain (nats)", 0.0),
                 ("secret_exposure", "secret exposure (bits)", None),
                 ("mia_auc_restricted", "membership AUC, restricted works", 0.5),
                 ("val_nll_minus_exclude", "val NLL - exclude (nats/token)", 0.0))


def _err(value: dict) -> tuple[float, list[list[float]]]:
  """``(mean, [[below], [above]])`` for matplotlib's asymmetric error bars (0 where an end is missing)."""
  mean = value["mean"]
  lo, hi = value.get("ci95") or (None, None)
  return mean, [[mean - lo if lo is not None else 0.0], [hi - mean if hi is not None else 0.0]]


def figure_rule_vs_exposure(summary: dict, path: str | pathlib.Path) -> pathlib.Path | None:
  """Figure 1: specific rule gain (x) against secret exposure (y) per treatment, 95% intervals on both axes.

  Args:
    summary: ``premise.json``.
    path: the PNG to write.

  Returns:
    ``path``, or None when no treatment has both metrics.
  """
  path = pathlib.Path(path)
  rows = [(name, block) for name, block in summary.get("treatments", {}).items()
          if "rule_gain_specific" in block and "secret_exposure" in block]
  if not rows:
    return None
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7.0, 4.6))
  leakage = summary.get("trunk_leakage", {})
  for i, (name, block) in enumerate(rows):
    colour, marker, _ = series_style(plt, i)
    x, xerr = _err(block["rule_gain_specific"])
    y, yerr = _err(block["secret_exposure"])
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, color=colour, capsize=3, label=name)
    leak = leakage.get(name)
    if leak and name != "exclude":
      lx, lxerr = _err(leak["rule_gain_specific"])
      ly, lyerr = _err(leak["secret_exposure"])
      ax.errorbar(lx, ly, xerr=lxerr, yerr=lyerr, fmt=marker, color=colour, mfc="none",
                  capsize=2, alpha=0.6)
  reference = summary.get("treatments", {}).get("exclude", {}).get("secret_exposure")
  if reference:
    ax.axhspan(*reference["ci95"], color="grey", alpha=0.15, lw=0)
  ax.axvline(0.0, color="grey", lw=0.8, ls="--")
  ax.set_xlabel("specific rule gain vs exclude (nats; > 0 = learned the rule)")
  ax.set_ylabel("secret exposure (bits; grey band = exclude)")
  ax.set_title("Rule learning against memorization (open markers: after trunk-leakage retraining)", fontsize=9)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def figure_restricted_share(summary: dict, path: str | pathlib.Path) -> pathlib.Path | None:
  """Figure 2: each metric of :data:`SHARE_METRICS` against the restricted share, one line per treatment.

  Args:
    summary: ``premise.json`` (its ``restricted_fraction`` block).
    path: the PNG to write.

  Returns:
    ``path``, or None when fewer than two shares have results.
  """
  path = pathlib.Path(path)
  by_share = {float(k): v for k, v in summary.get("restricted_fraction", {}).items() if v}
  main = summary.get("spec", {}).get("main_share")
  if main is not None and main not in by_share and summary.get("treatments"):
    by_share[float(main)] = summary["treatments"]
  shares = sorted(by_share)
  if len(shares) < 2:
    return None
  names = [n for n in ("full", "depth_1", "region", "region_dropped", "input_1")
           if any(n in by_share[s] for s in shares)]
  plt = pyplot()
  fig, axes = plt.subplots(1, len(SHARE_METRICS), figsize=(3.4 * len(SHARE_METRICS), 3.2))
  for ax, (key, label, chance) in zip(axes, SHARE_METRICS, strict=True):
    for offset, name in enumerate(names):
      xs, means, lows, highs = [], [], [], []
      for share in shares:
        value = by_share[share].get(name, {}).get(key)
        if value is None or value.get("mean") is None:
          continue
        mean, err = _err(value)
        xs.append(share + (offset - len(names) / 2) * 0.008)
        means.append(mean)
        lows.append(err[0][0])
        highs.append(err[1][0])
      if xs:
        ax.errorbar(xs, means, yerr=[lows, highs], fmt="o-", capsize=3, label=name, ms=4)
    if chance is not None:
      ax.axhline(chance, color="grey", lw=0.8, ls="--")
    ax.set_xticks(shares, [f"{s:.0%}" for s in shares])
    ax.set_xlabel("restricted share of works")
    ax.set_title(label, fontsize=8)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def premise_figures(summary: dict, directory: str | pathlib.Path, stem: str = "premise") -> list[pathlib.Path]:
  """Both figures into ``directory`` (``{stem}.png``, ``{stem}_shares.png``); returns the ones drawn."""
  directory = pathlib.Path(directory)
  drawn = [figure_rule_vs_exposure(summary, directory / f"{stem}.png"),
           figure_restricted_share(summary, directory / f"{stem}_shares.png")]
  return [p for p in drawn if p is not None]
