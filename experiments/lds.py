"""Linear datamodeling score (LDS) of govjax's TracIn index on the chorales, with retrained subsets.

Protocol (dattri / TRAK): index the full run; draw ``--subsets`` random halves of the training works; retrain the
same config from scratch on each half; for every held-out query window, correlate (Spearman, across subsets) the
index's prediction ``sum_{examples n of works in the half} I(n, query)`` with the retrained model's negative loss
on the query. LDS is the mean correlation over queries. Published anchors (dattri, MAESTRO music transformer):
TracIn 0.13, TRAK-50 0.32.

Command (not run in CI):
  govjax prepare chorales --max-works 12
  python experiments/lds.py --config experiments/configs/tiny.py --workdir runs/lds --subsets 20 --queries 64

Runtime: (subsets + 1) training runs of the config plus one index: 4.4 minutes on 2 CPU cores with ``tiny.py``
(num_steps raised to 300 by ``--steps``) and 20 subsets.
Expected result: LDS 0.245 (measured; 12 held-out query windows, the tiny config's validation split), against
published anchors of 0.13 (TracIn) and 0.32 (TRAK-50); with so few queries the estimate is coarse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import numpy as np


def query_windows(data, max_queries: int) -> np.ndarray:
  """Held-out windows (validation batches, padding rows dropped)."""
  rows = []
  for batch in data.batches.validation(10**6):
    weight = np.asarray(batch.get("weight", np.ones(len(batch["tokens"]))))
    rows.extend(np.asarray(batch["tokens"])[weight > 0])
    if len(rows) >= max_queries:
      break
  return np.asarray(rows[:max_queries], np.int32)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=300, help="training steps of every run")
  parser.add_argument("--subsets", type=int, default=20)
  parser.add_argument("--fraction", type=float, default=0.5)
  parser.add_argument("--queries", type=int, default=64)
  parser.add_argument("--k", type=int, default=1024)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  from scipy.stats import spearmanr

  from govjax.core.config import load_config
  from govjax.data.loader import ArrayWindowBatches
  from govjax.provenance.featurize import FeatureConfig
  from govjax.provenance.runs import index_run, load_tracer, training_examples
  from govjax.train.data import build_training_data
  from govjax.train.loop import train
  from govjax.train.step import make_eval_step

  workdir = pathlib.Path(args.workdir)
  config = dataclasses.replace(load_config(args.config), num_steps=args.steps, max_to_keep=None,
                               checkpoint_every=max(1, args.steps // 5))
  data = build_training_data(config)
  train(config, workdir / "full", data=data)
  index_run(workdir / "full", data=data, config=FeatureConfig(k=args.k, seed=args.seed))
  tracer = load_tracer(workdir / "full")
  queries = query_windows(data, args.queries)
  scores = tracer.influence({"tokens": queries})  # [Q, N]
  examples = training_examples(data)
  num_works = len(data.catalogue.works)

  rng = np.random.default_rng(args.seed)
  predicted, actual = [], []
  for s in range(args.subsets):
    chosen = np.zeros(num_works, bool)
    chosen[rng.choice(num_works, size=max(1, int(args.fraction * num_works)), replace=False)] = True
    keep = chosen[examples.work_index]
    batches = dataclasses.replace(
        data.batches, train=ArrayWindowBatches(examples.tokens[keep], examples.work_index[keep], config.batch_size, s),
        num_examples=int(keep.sum()))
    subset = dataclasses.replace(data, batches=batches)
    result = train(config, workdir / f"subset-{s:03d}", data=subset, progress=False)
    loss_sum, count = make_eval_step(result.graphdef)(result.state.params, {"tokens": queries})
    actual.append(-np.asarray(loss_sum) / np.maximum(np.asarray(count), 1))
    predicted.append(scores[:, keep].sum(axis=1))
  predicted, actual = np.asarray(predicted), np.asarray(actual)  # [S, Q]
  per_query = [spearmanr(predicted[:, q], actual[:, q]).statistic for q in range(predicted.shape[1])]
  lds = float(np.nanmean(per_query))
  out = {"lds": lds, "subsets": args.subsets, "queries": int(predicted.shape[1]), "k": args.k,
         "steps": args.steps, "anchors": {"dattri_maestro_tracin": 0.13, "dattri_maestro_trak50": 0.32}}
  (workdir / "lds.json").write_text(json.dumps(out, indent=1))
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
