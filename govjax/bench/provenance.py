"""Provenance: does TracIn trace an output to the work it came from when the output is not the stored training
window? Plus mislabel detection by self-influence, indexing and training throughput, query latency.

Protocol (``govjax bench provenance --json``; about 1 minute on 2 shared CPU cores):

1. Canary run. ``--works`` synthetic works (the canaries) of ``--work-tokens`` random tokens (vocabulary 72, as
   the chorale tokenizer) are cut into windows of ``--context`` tokens with stride ``context / 2``. A 2-layer
   transformer of width 32 trains ``--steps`` steps (batch 16) with ``govjax.train.loop.train``, checkpointing
   every ``steps / 3``; the works get depths ``full``, ``full - 1``, ... cycling, so credit is depth-masked.
   ``train_examples_per_s`` is measured from the run's own step times (steps after the first, which compiles).
   The run is indexed (``k`` = ``--k``); ``index_examples_per_s`` counts examples per second per checkpoint,
   over the checkpoints after the first (which compiles).
   With the default 600 steps the model reproduces its canaries (``generated_token_match`` about 0.9; with 150
   steps about 0.03, and the generated queries are the prompt plus noise).
2. Tracing, never on a stored window (:func:`tracing_queries`); each query is one window of the context, traced
   against the whole index (influence summed per work); ``*_recall_at_1`` is the fraction of canaries whose
   top-1 work is the canary, ``*_recall_at_5`` within the top 5 (chance: 1 / works and 5 / works):

   - ``generated``: the trained model, prompted with a canary's first ``--prompt-tokens`` tokens, samples the
     rest of a window (temperature ``--temperature``); the output (prompt + continuation) is traced.
     ``generated_token_match`` is the fraction of sampled tokens equal to the canary's own next tokens (how much
     the model reproduces; 1/71 by chance).
   - ``continuation``: the sampled tokens alone (the prompt removed), PAD-filled to a window.
   - ``perturbed_<f>``: a window of the canary at an offset that no training window starts at (between two
     stored windows), with a fraction ``f`` of its tokens (``--perturb-fractions``) replaced by other random
     tokens.

   ``ngram_baseline``: the same queries ranked by shared token 3-grams with each work (a lookup, no model):
   where it matches or beats TracIn, tracing adds nothing a hash would not find.
3. ``query_ms``: median time to trace one window against the whole index (featurizing the query at every
   checkpoint plus scoring); ``query_ms_100k_extrapolated`` scales the scoring part to 100k examples.
4. Mislabel detection (dattri protocol): scikit-learn digits, 80/20 split, 10% of training labels replaced by a
   different class; an MLP 64-32-10 trains ``--digits-epochs`` epochs with Adam, checkpoints every 45 steps;
   training examples are ranked by TracIn self-influence. ``mislabel_auc`` is the ROC AUC of that ranking;
   ``mislabel_found_at_10pct`` / ``_20pct`` the fraction of corrupted examples among the top 10% / 20%.
   ``mislabel_index_examples_per_s`` and ``mislabel_train_examples_per_s`` compare throughputs on that model.

Example::

    result = run(argparse.Namespace(works=40, work_tokens=64, context=32, steps=600, k=512, digits_epochs=20,
                                    noise=0.1, seed=0, workdir=None, prompt_tokens=8, temperature=1.0,
                                    perturb_fractions="0.1,0.25"))
    result["tracing"]["generated"]["recall_at_1"], result["mislabel_auc"]
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import statistics
import tempfile
import time

import jax
import numpy as np
from flax import nnx
from sklearn.metrics import roc_auc_score

from govjax.core.config import ModelSpec, TrainConfig
from govjax.core.rundir import RunDir
from govjax.data.digits import load_digits
from govjax.data.loader import ArrayWindowBatches, as_work, build_window_table
from govjax.models.classifier import MLPClassifier, classifier_group_of_path, example_cross_entropy, train_classifier
from govjax.models.generate import generate
from govjax.provenance.featurize import FeatureConfig, Featurizer
from govjax.provenance.index import build_index
from govjax.provenance.query import aggregate_per_work, influence_scores, windows
from govjax.provenance.runs import DEFAULT_FEATURES, index_run, load_tracer
from govjax.train.data import TrainBatches, TrainingData, WorkCatalogue
from govjax.train.loop import restore_model, train

VOCAB = 72  # token ids 1..71 are drawn; 0 is PAD


def synthetic_works_data(*, num_works: int, work_tokens: int, context: int, num_groups: int, batch_size: int,
                         seed: int):
  """A ``TrainingData`` of random-token works with a window table and varied depths."""

  rng = np.random.default_rng(seed)
  works = [{"work_id": f"synthetic/{i:03d}", "title": f"Synthetic {i}", "composer": "govjax",
            "tokens": rng.integers(1, VOCAB, size=work_tokens).astype(np.int32)} for i in range(num_works)]
  stride = max(4, context // 2)
  table = build_window_table([_as_loader_work(w) for w in works], context=context, stride=stride)
  tokens = np.zeros((len(table), context), np.int32)
  for i in range(len(table)):
    piece = works[int(table.work_index[i])]["tokens"][int(table.start[i]): int(table.start[i]) + context]
    tokens[i, : piece.size] = piece
  depth = np.asarray([num_groups - (i % 2) for i in range(num_works)], np.int32)
  batches = TrainBatches(train=ArrayWindowBatches(tokens, np.asarray(table.work_index), batch_size, seed),
                         validation=None, vocab_size=VOCAB, num_examples=len(table), per_work_depth=depth,
                         num_groups=num_groups)
  catalogue = WorkCatalogue(works=works, per_work_depth=depth, num_groups=num_groups, report={"synthetic": True},
                            window_table=table, context=context)
  return TrainingData(batches=batches, catalogue=catalogue)


def _as_loader_work(work: dict):

  return as_work({"work_id": work["work_id"], "title": work["title"], "composer": work["composer"],
                  "collection": "synthetic", "source_path": work["work_id"], "sha256": "0" * 64, "key": "",
                  "tokens": work["tokens"], "length": len(work["tokens"])})


# ------------------------------------------------------------------------------------------ tracing queries


def _fractions(text: str) -> tuple[float, ...]:
  values = tuple(float(x) for x in str(text).split(",") if x.strip())
  if not values or any(not 0 <= v <= 1 for v in values):
    raise ValueError(f"--perturb-fractions must be comma-separated numbers in [0, 1], got {text!r}")
  return values


def perturbed_copies(works: list[np.ndarray], *, context: int, stride: int, fraction: float,
                     rng: np.random.Generator) -> np.ndarray:
  """One window per work at an offset no training window starts at, with ``fraction`` of its tokens changed.

  Args:
    works: each work's tokens (at least ``context + 2`` of them).
    context: window length.
    stride: the training windows' stride (they start at multiples of it).
    fraction: share of the window's tokens replaced by a different random token (1..VOCAB-1).
    rng: numpy generator.

  Returns:
    int32 ``[W, context]``.

  Example:
    >>> w = [np.arange(1, 41, dtype=np.int32)]
    >>> q = perturbed_copies(w, context=16, stride=8, fraction=0.0, rng=np.random.default_rng(0))
    >>> q.shape, (int(q[0, 0]) - 1) % 8 != 0  # starts off the stride
    ((1, 16), True)
    >>> int(np.sum(perturbed_copies(w, context=16, stride=8, fraction=0.25, rng=np.random.default_rng(0)) != q))
    4
  """
  out = np.zeros((len(works), context), np.int32)
  for w, tokens in enumerate(works):
    starts = [s for s in range(1, len(tokens) - context + 1) if s % stride]
    if not starts:
      raise ValueError(f"work {w}: {len(tokens)} tokens leave no window of {context} off the stride {stride}")
    start = int(rng.choice(starts))
    window = np.array(tokens[start: start + context], np.int32)
    changed = rng.choice(context, size=int(round(fraction * context)), replace=False)
    for position in changed:
      window[position] = (window[position] - 1 + rng.integers(1, VOCAB - 1)) % (VOCAB - 1) + 1
    out[w] = window
  return out


def tracing_queries(model, works: list[np.ndarray], *, context: int, stride: int, prompt_tokens: int,
                    temperature: float, fractions: tuple[float, ...], seed: int) -> tuple[dict[str, np.ndarray],
                                                                                          float]:
  """The queries of step 2 of the protocol, one ``[W, context]`` array per kind, and the generated token match.

  Args:
    model: the trained transformer (``restore_model``).
    works: each canary's tokens.
    context: the model's context.
    stride: the training windows' stride.
    prompt_tokens: tokens of each canary's opening given as the prompt.
    temperature: sampling temperature.
    fractions: perturbation fractions.
    seed: sampling and perturbation seed.

  Returns:
    ``({"generated", "continuation", "perturbed_<f>": int32 [W, context]}, token_match)``.
  """
  if not 1 <= prompt_tokens < context:
    raise ValueError(f"--prompt-tokens must be in 1..{context - 1}, got {prompt_tokens}")
  prompts = np.stack([np.asarray(t[:prompt_tokens], np.int32) for t in works])
  generated = np.asarray(generate(model, prompts, num_tokens=context - prompt_tokens, rng=jax.random.PRNGKey(seed),
                                  temperature=temperature))
  generated = np.clip(generated, 0, VOCAB - 1).astype(np.int32)
  sampled = generated[:, prompt_tokens:]
  truth = np.stack([np.asarray(t[prompt_tokens:context], np.int32) for t in works])
  continuation = np.zeros_like(generated)
  continuation[:, : sampled.shape[1]] = sampled
  queries = {"generated": generated, "continuation": continuation}
  rng = np.random.default_rng(seed + 1)
  for fraction in fractions:
    queries[f"perturbed_{fraction:g}"] = perturbed_copies(works, context=context, stride=stride,
                                                          fraction=fraction, rng=rng)
  return queries, float(np.mean(sampled == truth))


def trace_ranks(tracer, queries: np.ndarray) -> np.ndarray:
  """Rank (0 = top) of query ``w``'s own work ``w`` among the works, by TracIn influence summed per work."""
  scores = tracer.influence({"tokens": queries})
  ranks = []
  for w, row in enumerate(scores):
    per_work = aggregate_per_work(row, tracer.index.example_work, tracer.index.num_works)
    ranks.append(int(np.sum(per_work > per_work[w])))
  return np.asarray(ranks)


def ngram_ranks(queries: np.ndarray, works: list[np.ndarray], n: int = 3) -> np.ndarray:
  """Rank (0 = top; ties count against) of query ``w``'s own work by shared token ``n``-grams (PAD ignored)."""

  def grams(tokens) -> set[tuple[int, ...]]:
    tokens = [int(t) for t in tokens]
    return {tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1) if 0 not in tokens[i: i + n]}

  work_grams = [grams(t) for t in works]
  ranks = []
  for w, query in enumerate(queries):
    shared = np.array([len(grams(query) & g) for g in work_grams])
    ranks.append(int(np.sum(shared >= shared[w]) - 1))
  return np.asarray(ranks)


def _share(ranks: np.ndarray, k: int) -> float:
  return round(float(np.mean(ranks < k)), 4)


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

  index = index_run(workdir, data=data, config=dataclasses.replace(DEFAULT_FEATURES, k=args.k, seed=args.seed,
                                                                    microbatch=32))  # what `govjax index` builds
  steady = index.metadata["featurize_seconds"][1:] or index.metadata["featurize_seconds"]
  index_rate = index.num_examples / statistics.median(steady)

  tracer = load_tracer(workdir)
  model, _, _ = restore_model(workdir)
  tokens = [np.asarray(work["tokens"]) for work in data.catalogue.works]
  queries, token_match = tracing_queries(model, tokens, context=args.context, stride=max(4, args.context // 2),
                                         prompt_tokens=args.prompt_tokens, temperature=args.temperature,
                                         fractions=_fractions(args.perturb_fractions), seed=args.seed)
  tracing = {}
  for name, windows_ in queries.items():
    ranks = trace_ranks(tracer, windows_)
    baseline = ngram_ranks(windows_, tokens)
    tracing[name] = {"recall_at_1": _share(ranks, 1), "recall_at_5": _share(ranks, 5),
                     "ngram_baseline_recall_at_1": _share(baseline, 1)}
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
      "tracing": tracing,
      "generated_token_match": round(token_match, 4),
      "canary_works": len(data.catalogue.works),
      "chance_recall_at_1": round(1 / len(data.catalogue.works), 4),
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
