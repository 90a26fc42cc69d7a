"""The memorization-signal study: which per-example statistic tells memorization from learning, measured against
counterfactual labels, across model sizes and two kinds of data.

Design (per data kind and model size; ``experiments/memorization_signal.py`` sets the numbers):

* **Windows.** Works are ordered by the sha256 of their id and given roles by the study seed: ``pool`` works
  (two windows each) for the counterfactual labels, ``verbatim`` works (one window, listed ``copies`` times per
  epoch), ``varied`` works (one window, trained as ``copies`` variations: transposed chorales, diatonically
  shifted folk melodies; each variation once per epoch), and ``calib`` works (never trained: the held-out split
  that calibrates the adaptive depth, disjoint from every audited window).
* **Counterfactual labels.** ``K`` models, each trained on a complementary half of the pool works
  (:mod:`govjax.train.counterfactual`); every model also trains the verbatim and varied sets. Each pool window's
  memorization score is its mean loss in the models that did not train on it minus in those that did, computed
  without the model whose signal is scored (leave-one-out). A window is *memorized* when its score is in the top
  ``label_quantile`` of the scores among that model's trained windows (sensitivity: other quantiles).
* **Equal frequency.** Inside a model every pool window is trained exactly as often (epochs), so the AUCs among
  pool windows cannot come from frequency. The verbatim set against the pool windows is the frequency-
  manipulated, content-matched contrast (same distribution of works, ``copies`` times the exposure).
* **The seed's claim.** Verbatim repetition (memorization) against the same exposure spread over variations
  (learning), compared at matched loss: each verbatim window paired with the varied window of nearest loss.
* **Signals** of :mod:`govjax.probe.signals` at a quarter, half and all of training (fresh forward passes), and
  the probe's own step-time view (loss at first and last sighting). For each: the AUC (a score above 0.5 means
  *higher value = memorized*) with a 95% interval by bootstrap over works, and its increment over loss: the
  AUC of a cross-validated logistic regression on (loss, signal) minus that on loss alone, folds by work.

Command (see the config's docstring)::

  nice -n 15 python -m govjax.study.memorization_signal --config experiments/memorization_signal.py \\
      --out runs/memorization_signal/seed0 --results experiments/results/memorization_signal.json \\
      --figure experiments/results/memorization_signal.png [--replications OTHER_SEED.json ...]

The settings and training live in :mod:`govjax.study.signal_units`, the analysis in
:mod:`govjax.study.signal_analysis`; this module runs the units and writes the results and the figure.

Example:
  >>> config = SignalStudyConfig(sizes=(SizeSpec("t", 1, 16, 2, 8, 4),), kinds=("folk",), seed=2)
  >>> [size.name for size in config.sizes], config.kinds, config.seed
  (['t'], ('folk',), 2)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import time

import numpy as np

from govjax.core.config import load_python_config
from govjax.models.transformer import Transformer, count_params
from govjax.study.plotting import pyplot
from govjax.study.signal_analysis import (
  HISTORY_SIGNALS,
  REPLICATED,
  analyse_unit,
  history_signals,
  increment_over_loss,
  replication_summary,
)
from govjax.study.signal_units import (
  SignalStudyConfig,
  SizeSpec,
  build_windows,
  epoch_rows,
  run_unit,
  unit_train_config,
)
from govjax.train.step import model_config

__all__ = ["HISTORY_SIGNALS", "REPLICATED", "SignalStudyConfig", "SizeSpec", "analyse_unit", "build_windows",
           "epoch_rows", "history_signals", "increment_over_loss", "main", "plot_results", "replication_summary",
           "run_study"]


# ------------------------------------------------------------------------------------------------ driver


def run_study(config: SignalStudyConfig, out: str | pathlib.Path, *, analyse: bool = True) -> dict:
  """Trains every (kind, size) unit (cached per model under ``out``) and analyses the finished ones.

  Args:
    config: the study config.
    out: run directory (per-model ``.npz`` records; rerunning resumes).
    analyse: compute the AUCs (else only train).

  Returns:
    ``{"config", "units": {"<kind>/<size>": analysis}, "machine", "wall_s"}``.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  t0 = time.time()
  result = {"config": dataclasses.asdict(config), "units": {}, "machine": {
      "platform": platform.platform(), "processor": platform.machine(), "cpus": _cpus()}}
  datas = {kind: build_windows(kind, config) for kind in config.kinds}
  for size in config.sizes:
    for kind in config.kinds:
      records = run_unit(kind, size, config, out, datas[kind])
      if analyse:
        unit = analyse_unit(datas[kind], records, config)
        unit["size"] = dataclasses.asdict(size)
        unit["num_params"] = _num_params(size, config, datas[kind]["vocab_size"])
        unit["num_windows"] = {role: int(np.sum(datas[kind]["role"] == role))
                               for role in ("pool", "verbatim", "varied", "calib")}
        result["units"][f"{kind}/{size.name}"] = unit
  result["wall_s"] = time.time() - t0
  return result


def _cpus() -> int:
  import os  # noqa: PLC0415 (only for the machine record)

  return os.cpu_count() or 0


def _num_params(size: SizeSpec, config: SignalStudyConfig, vocab_size: int) -> int:
  from flax import nnx  # noqa: PLC0415 (only for the parameter count)


  shape = model_config(unit_train_config(config, size, 0), vocab_size)
  return count_params(nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0))))


def plot_results(result: dict, path: str | pathlib.Path) -> pathlib.Path:
  """The figure of the committed JSON: per unit, AUC with interval of every statistic at equal frequency.

  Args:
    result: :func:`run_study`'s output (or the committed JSON, loaded).
    path: the ``.png`` to write.

  Returns:
    The path.
  """
  plt = pyplot()
  units = list(result["units"])
  every = sorted({n for u in units for n in result["units"][u]["equal_frequency"]},
                 key=lambda n: (n.startswith(("rep_", "attn")), n))
  fig, axes = plt.subplots(1, len(units), figsize=(3.2 * len(units), 6.5), sharey=True, squeeze=False)
  y = np.arange(len(every))
  for ax, unit in zip(axes[0], units, strict=True):
    entries = result["units"][unit]["equal_frequency"]
    nan = {"auc": np.nan, "ci95": [np.nan, np.nan]}
    auc = np.array([entries.get(n, nan)["auc"] for n in every], np.float64)
    lo = np.array([entries.get(n, nan)["ci95"][0] for n in every], np.float64)
    hi = np.array([entries.get(n, nan)["ci95"][1] for n in every], np.float64)
    colors = ["tab:red" if n.startswith("rep_") else "tab:blue" if n.startswith("attn") else "k" for n in every]
    ax.errorbar(auc, y, xerr=[auc - lo, hi - auc], fmt="none", ecolor=colors, elinewidth=1)
    ax.scatter(auc, y, c=colors, s=12, zorder=3)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    size = result["units"][unit]
    ax.set_title(f"{unit}\n{size['num_params'] / 1e6:.2f}M params, K={size['num_models']}", fontsize=8)
    ax.set_xlabel("AUC (higher value = memorized)", fontsize=7)
  axes[0][0].set_yticks(y, every, fontsize=7)
  fig.suptitle("Counterfactual memorization among equally trained windows (95% intervals over works)", fontsize=9)
  fig.tight_layout()
  path = pathlib.Path(path)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main(argv: list[str] | None = None) -> None:
  """``python -m govjax.study.memorization_signal --config CONFIG --out DIR [--results JSON] [--train-only]``."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--results", default=None, help="write the analysis JSON here")
  parser.add_argument("--train-only", action="store_true")
  parser.add_argument("--figure", default=None, help="write the figure (from the results) here")
  parser.add_argument("--seed", type=int, default=None, help="override the config's data seed")
  parser.add_argument("--sizes", default=None, help="comma-separated size names to run (default: all)")
  parser.add_argument("--replications", nargs="*", default=(),
                      help="results JSONs of other data seeds, summarised under 'replications'")
  args = parser.parse_args(argv)
  config = load_python_config(args.config, "get_config", SignalStudyConfig)
  if args.seed is not None:
    config = dataclasses.replace(config, seed=args.seed)
  if args.sizes:
    wanted = args.sizes.split(",")
    unknown = sorted(set(wanted) - {size.name for size in config.sizes})
    if unknown:
      raise SystemExit(f"--sizes: unknown size(s) {unknown}; the config has {[s.name for s in config.sizes]}")
    config = dataclasses.replace(config, sizes=tuple(s for s in config.sizes if s.name in wanted))
  result = run_study(config, args.out, analyse=not args.train_only)
  if args.replications:
    others = [json.loads(pathlib.Path(path).read_text()) for path in args.replications]
    result["replications"] = replication_summary([result, *others])
  if args.results:
    path = pathlib.Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=True, default=float) + "\n")
  if args.figure and result["units"]:
    plot_results(json.loads(json.dumps(result, default=float)), args.figure)
  print(json.dumps({"units": list(result["units"]), "wall_s": result["wall_s"]}))


if __name__ == "__main__":
  from govjax.study import memorization_signal  # noqa: PLC0415 (the config file's classes are the module's, not __main__'s)

  memorization_signal.main()
