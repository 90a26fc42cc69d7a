"""Provenance: indexing and training throughput, query latency, canary recall@1, mislabel detection by
self-influence.

Protocol (``govjax bench provenance --json``; about 2-4 minutes on 2 CPU cores):

1. Canary run. ``--works`` synthetic works of ``--work-tokens`` random tokens (vocabulary 72, as the chorale
   tokenizer) are cut into windows of ``--context`` tokens with stride ``context / 2``. A
   2-layer transformer of width 32 trains ``--steps`` steps (batch 16) with ``govjax.train.loop.train``,
   checkpointing every ``steps / 3``; the works get depths ``full``, ``full - 1``, ... cycling, so credit is
   depth-masked. ``train_examples_per_s`` is measured from the run's own step times (steps after the first,
   which compiles). The run is indexed (``k`` = ``--k``); ``index_examples_per_s`` counts examples per second
   per checkpoint, over the checkpoints after the first (which compiles).
2. Canary retrieval: every training work reproduced as an output (cut into windows of the context) is traced;
   ``canary_recall_at_1`` = fraction whose top-1 work (influence summed over the work's examples) is itself.
3. ``query_ms``: median time to trace one window against the whole index (featurizing the query at every
   checkpoint plus scoring); ``query_ms_100k_extrapolated`` scales the scoring part to 100k examples.
4. Mislabel detection (dattri protocol): scikit-learn digits, 80/20 split, 10% of training labels replaced by a
   different class; an MLP 64-32-10 trains ``--digits-epochs`` epochs with Adam, checkpoints every 45 steps;
   training examples are ranked by TracIn self-influence. ``mislabel_auc`` is the ROC AUC of that ranking;
   ``mislabel_found_at_10pct`` / ``_20pct`` the fraction of corrupted examples among the top 10% / 20%.
   ``mislabel_index_examples_per_s`` and ``mislabel_train_examples_per_s`` compare throughputs on that model.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import numpy as np
from flax import nnx
from sklearn.metrics import roc_auc_score

from govjax.core.config import ModelSpec, TrainConfig
from govjax.core.rundir import RunDir
from govjax.data.digits import load_digits
from govjax.data.loader import ArrayWindowBatches, as_work, build_window_table
from govjax.models.classifier import MLPClassifier, classifier_group_of_path, example_cross_entropy, train_classifier
from govjax.provenance.featurize import FeatureConfig, Featurizer
from govjax.provenance.index import build_index
from govjax.provenance.query import influence_scores, windows
from govjax.provenance.runs import index_run, load_tracer
from govjax.train.data import TrainBatches, TrainingData, WorkCatalogue
from govjax.train.loop import train


def synthetic_works_data(*, num_works: int, work_tokens: int, context: int, num_groups: int, batch_size: int,
                         seed: int):
  """A ``TrainingData`` of random-token works with a window table and varied depths."""

  rng = np.random.default_rng(seed)
  works = [{"work_id": f"synthetic/{i:03d}", "title": f"Synthetic {i}", "composer": "govjax",
            "tokens": rng.integers(1, 72, size=work_tokens).astype(np.int32)} for i in range(num_works)]
  stride = max(4, context // 2)
  table = build_window_table([_as_loader_work(w) for w in works], context=context, stride=stride)
  tokens = np.zeros((len(table), context), np.int32)
  for i in range(len(table)):
    piece = works[int(table.work_index[i])]["tokens"][int(table.start[i]): int(table.start[i]) + context]
    tokens[i, : piece.size] = piece
  depth = np.asarray([num_groups - (i % 2) for i in range(num_works)], np.int32)
  batches = TrainBatches(train=ArrayWindowBatches(tokens, np.asarray(table.work_index), batch_size, seed),
                         validation=None, vocab_size=72, num_examples=len(table), per_work_depth=depth,
                         num_groups=num_groups)
  catalogue = WorkCatalogue(works=works, per_work_depth=depth, num_groups=num_groups, report={"synthetic": True},
                            window_table=table, context=context)
  return TrainingData(batches=batches, catalogue=catalogue)


def _as_loader_work(work: dict):

  return as_work({"work_id": work["work_id"], "title": work["title"], "composer": work["composer"],
                  "collection": "synthetic", "source_path": work["work_id"], "sha256": "0" * 64, "key": "",
                  "tokens": work["tokens"], "length": len(work["tokens"])})


def canary_benchmark(args: argparse.Namespace, workdir: pathlib.Path) -> dict:
  """Steps 1-3 of the protocol."""


  num_layers = 2
  every = max(1, args.steps // 3)
  config = TrainConfig(name="provenance-bench", model=ModelSpec(num_layers=num_layers, width=32, num_heads=2,
                                                                context=args.context),
                       batch_size=16, num_steps=args.steps, learning_rate=1e-2, warmup_steps=5,
                       checkpoint_every=every, max_to_keep=None, eval_every=10**9, seed=args.seed)
  data = synthetic_works_data(num_works=args.works, work_tokens=args.work_tokens, context=args.context,
                              num_groups=num_layers + 2, batch_size=config.batch_size, seed=args.seed)
  train(config, workdir, data=data, progress=False)
  step_s = [record["step_s"] for record in RunDir(workdir).read_metrics()]
  train_rate = config.batch_size / statistics.median(step_s[1:])

  index = index_run(workdir, data=data, config=FeatureConfig(k=args.k, seed=args.seed, microbatch=32))
  steady = index.metadata["featurize_seconds"][1:] or index.metadata["featurize_seconds"]
  index_rate = index.num_examples / statistics.median(steady)

  tracer = load_tracer(workdir)
  hits = 0
  for w, work in enumerate(data.catalogue.works):
    attribution = tracer.attribute({"tokens": windows(work["tokens"], tracer.context)}, top=1)
    hits += int(attribution.proponents[0] == w)
  query = {"tokens": windows(data.catalogue.works[0]["tokens"][: args.context], tracer.context)}
  tracer.influence(query)
  total, scoring = [], []
  for _ in range(7):
    start = time.perf_counter()
    feats = tracer.query_features(query)
    middle = time.perf_counter()
    influence_scores(tracer.index, feats)
    end = time.perf_counter()
    total.append(end - start)
    scoring.append(end - middle)
  query_ms = 1000 * statistics.median(total)
  score_ms = 1000 * statistics.median(scoring)
  return {
      "train_examples_per_s": round(train_rate, 1),
      "index_examples_per_s": round(index_rate, 1),
      "index_over_train": round(index_rate / train_rate, 3),
      "index_examples": index.num_examples,
      "index_checkpoints": index.num_checkpoints,
      "canary_recall_at_1": hits / len(data.catalogue.works),
      "canary_works": len(data.catalogue.works),
      "query_ms": round(query_ms, 2),
      "query_ms_100k_extrapolated": round(query_ms - score_ms + score_ms * 100_000 / index.num_examples, 2),
  }


def mislabel_benchmark(*, epochs: int, noise: float, k: int, seed: int, max_train: int | None = None) -> dict:
  """Step 4 of the protocol (also used by the tests with fewer epochs and examples)."""


  data = load_digits(noise_fraction=noise, seed=seed, max_train=max_train)
  model = MLPClassifier(64, (32,), 10, rngs=nnx.Rngs(seed))
  run = train_classifier(model, data.x_train, data.y_train, num_epochs=epochs, batch_size=32,
                         learning_rate=3e-3, checkpoint_every=45, seed=seed)
  n = len(data.y_train)
  featurizer = Featurizer(run.graphdef, example_cross_entropy, group_of_path=classifier_group_of_path,
                          num_groups=model.num_groups, config=FeatureConfig(k=k, seed=seed, microbatch=512))
  masks = np.ones((len(run.checkpoints), n, model.num_groups), np.float32)
  index = build_index(featurizer, run.checkpoints, {"x": data.x_train, "y": data.y_train}, masks,
                      example_work=np.arange(n), works=[{"work_id": f"digits/{i}"} for i in range(n)])
  scores = index.self_influence
  order = np.argsort(-scores)
  found = [float(data.corrupted[order[: int(round(f * n))]].sum() / max(data.corrupted.sum(), 1))
           for f in (0.1, 0.2)]
  steady = index.metadata["featurize_seconds"][1:] or index.metadata["featurize_seconds"]
  return {
      "mislabel_auc": round(float(roc_auc_score(data.corrupted, scores)), 4),
      "mislabel_found_at_10pct": round(found[0], 4),
      "mislabel_found_at_20pct": round(found[1], 4),
      "mislabel_examples": n,
      "mislabel_train_examples_per_s": round(run.examples_per_s, 1),
      "mislabel_index_examples_per_s": round(n / statistics.median(steady), 1),
  }


def run(args: argparse.Namespace) -> dict:
  start = time.perf_counter()
  if args.workdir:
    workdir = pathlib.Path(args.workdir)
    result = canary_benchmark(args, workdir)
  else:
    with tempfile.TemporaryDirectory(prefix="govjax-provenance-") as tmp:
      result = canary_benchmark(args, pathlib.Path(tmp))
  result.update(mislabel_benchmark(epochs=args.digits_epochs, noise=args.noise, k=args.k, seed=args.seed))
  result["k"] = args.k
  result["wall_s"] = round(time.perf_counter() - start, 1)
  return result
