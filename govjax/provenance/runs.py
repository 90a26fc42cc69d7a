"""Provenance of a training run directory: build its influence index, and trace outputs against it.

``index_run(workdir)`` reads the run's checkpoints and routing log (:mod:`govjax.provenance.record`), rebuilds
its training examples (``govjax.train.data.build_training_data`` of the saved config, or the ``data`` given),
featurizes every example at every checkpoint with the groups it trained and writes
``workdir/provenance/index``. ``load_tracer(workdir)`` opens that index (verifying its hashes) with the same
checkpoints and projection, ready to score outputs.

Example (``govjax train`` first)::

    index = index_run("runs/tiny", config=FeatureConfig(k=256))
    tracer = load_tracer("runs/tiny")
    tracer.trace_tokens(tokens, source="out.npy").proponents[:3]  # validated, cut into windows, scored

``RunTracer.trace_tokens`` checks the output first (token ids of the run's vocabulary, whole frames, at most
:data:`~govjax.provenance.query.MAX_TRACE_TOKENS`) and raises ``TraceInputError`` naming the input otherwise; NaN
or infinite scores raise ``NonFiniteScoresError`` instead of being ranked.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from govjax.core.checkpoint import CheckpointParams
from govjax.core.text import terminal_safe
from govjax.provenance.featurize import FeatureConfig, transformer_featurizer
from govjax.provenance.index import INDEX_DIR, InfluenceIndex, build_index
from govjax.provenance.lineage import work_entries
from govjax.provenance.query import (
    MAX_TRACE_TOKENS,
    Attribution,
    NonFiniteScoresError,
    Tracer,
    check_output_tokens,
    windows,
)
from govjax.provenance.record import RunCheckpoints, TrainingExamples, read_training_record
from govjax.train import data as training_data

__all__ = ["DEFAULT_FEATURES", "index_run", "load_tracer", "training_examples", "windows"]


def training_examples(data: Any) -> TrainingExamples:
  """Every training window of a ``govjax.train.data.TrainingData`` in example-id order.

  Uses ``data.catalogue.window_table`` and the works' tokens when the catalogue has them (exact, no batching);
  otherwise collects the windows from the ``data.batches.train[s]`` batches.
  """
  table = data.catalogue.window_table
  if table is None:
    return TrainingExamples.from_batches_by_step(data.batches)
  n = len(table)
  tokens = np.zeros((n, table.context), np.int32)
  for i in range(n):
    work = data.catalogue.works[int(table.work_index[i])]
    source = np.asarray(work["tokens"] if isinstance(work, dict) else work.tokens)
    piece = source[int(table.start[i]): int(table.start[i]) + table.context]
    tokens[i, : piece.size] = piece
  return TrainingExamples(tokens=tokens, example_ids=np.arange(n), work_index=np.asarray(table.work_index,
                                                                                         np.int64))


# What `govjax index` builds by default: plain TracIn over depth-masked gradients. In experiments/attribution.py
# TracIn-Adam (--precondition update) is 0.06 above it on an unrouted run but 0.21 below it on a routed one, and the
# TRAK-style scorers, above both, let a head-only twin outrank its full-depth twin (tests/provenance).
DEFAULT_FEATURES = FeatureConfig()


def _checkpoints(run: RunCheckpoints, steps: Iterable[int]) -> list[CheckpointParams]:
  out = []
  for step in steps:
    restored = run.load(int(step))
    out.append(CheckpointParams(step=restored.step, learning_rate=restored.learning_rate,
                                params=restored.params, adam_nu=restored.adam_nu, adam_count=restored.adam_count))
  return out


def index_run(
    workdir: str | pathlib.Path,
    *,
    data: Any = None,
    config: FeatureConfig | None = None,
    steps: Iterable[int] | None = None,
    aggregate: str = "interval",
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> InfluenceIndex:
  """Builds (and saves) the influence index of a run.

  Args:
    workdir: a directory written by :func:`govjax.train.loop.train`.
    data: its ``TrainingData`` (default: ``build_training_data`` of the saved config).
    config: feature config (k, projection seed, normalisation, Adam preconditioning); default
      :data:`DEFAULT_FEATURES` (plain TracIn, as ``govjax index``).
    steps: checkpoint steps to use (default: all kept checkpoints).
    aggregate: routing-log aggregation per checkpoint (``interval`` or ``union``).
    save: write it to ``workdir/provenance/index``.
    progress: called with a progress line per checkpoint.

  Returns:
    The index (its metadata holds the run's config hash, the routing report and timings).
  """
  workdir = pathlib.Path(workdir)
  config = DEFAULT_FEATURES if config is None else config
  run = RunCheckpoints(workdir)
  if data is None:

    data = training_data.build_training_data(run.config)
  examples = training_examples(data)
  record = read_training_record(workdir, num_examples=len(examples), aggregate=aggregate, steps=steps)
  logged = record.work_index >= 0
  mismatched = np.flatnonzero(logged & (record.work_index != examples.work_index))
  if mismatched.size:
    i = int(mismatched[0])
    raise ValueError(f"{workdir}: routing log puts example {i} in work {record.work_index[i]}, the training "
                     f"data in work {examples.work_index[i]} ({mismatched.size} examples differ); the data "
                     "is not the run's")
  checkpoints = _checkpoints(run, record.steps)
  featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers, config=config)
  start = time.perf_counter()
  index = build_index(
      featurizer, checkpoints, {"tokens": examples.tokens}, record.credit_masks(), example_work=examples.work_index,
      works=work_entries(data.catalogue),
      metadata={"run": {"workdir": str(workdir), "config_hash": run.config_hash, "name": run.config.name},
                "context": int(run.model_config.context), "routing": record.report},
      progress=progress)
  elapsed = time.perf_counter() - start
  index.metadata["index_seconds"] = round(elapsed, 3)
  index.metadata["index_examples_per_s"] = round(len(examples) * len(checkpoints) / max(elapsed, 1e-9), 2)
  if save:
    index.save(workdir / INDEX_DIR)
  return index


class RunTracer(Tracer):
  """A :class:`~govjax.provenance.query.Tracer` for a run's transformer, with its ``context``, ``vocab_size``
  and the ``steps_per_quarter`` of its tokenizer grid."""

  context: int
  vocab_size: int
  steps_per_quarter: int

  def trace_tokens(self, tokens: Any, *, top: int = 10, aggregation: str = "sum", source: str = "output",
                   max_tokens: int | None = MAX_TRACE_TOKENS) -> Attribution:
    """Validates an output's tokens, cuts them into context windows and attributes them.

    Args:
      tokens: the output, ``[T]`` or ``[frames, 4]`` token ids.
      top: proponent / opponent works to list (``>= 1``).
      aggregation: per-work aggregation (``sum``, ``mean`` or ``max``).
      source: the output's name (its file) for the messages.
      max_tokens: the longest output accepted (None: no limit; scoring costs one gradient per window and
        checkpoint).

    Returns:
      The :class:`~govjax.provenance.query.Attribution` (summed over the windows).

    Raises:
      TraceInputError: invalid tokens (see :func:`~govjax.provenance.query.check_output_tokens`).
      NonFiniteScoresError: NaN or infinite gradients or scores.
    """
    tokens = check_output_tokens(tokens, vocab_size=self.vocab_size, source=source, context=self.context,
                                 max_tokens=max_tokens)
    try:
      return self.attribute({"tokens": windows(tokens, self.context)}, top=top, aggregation=aggregation)
    except NonFiniteScoresError as error:
      raise NonFiniteScoresError(f"{terminal_safe(str(source))}: {error}") from None


def load_tracer(workdir: str | pathlib.Path, *, index: InfluenceIndex | None = None) -> RunTracer:
  """Opens a run's index (verifying its hashes) with the matching checkpoints and featurizer.

  Args:
    workdir: the run directory.
    index: an index already in memory (default: load ``workdir/provenance/index``).

  Returns:
    A tracer; ``tracer.context`` is the model's context (cut outputs with :func:`windows`) and
    ``tracer.vocab_size`` its vocabulary size, ``tracer.steps_per_quarter`` the run's grid;
    :meth:`RunTracer.trace_tokens` validates and scores an output.
  """
  workdir = pathlib.Path(workdir)
  if index is None:
    index = InfluenceIndex.load(workdir / INDEX_DIR)
  run = RunCheckpoints(workdir)
  chash = index.metadata.get("run", {}).get("config_hash")
  if chash is not None and run.config_hash is not None and chash != run.config_hash:
    raise ValueError(f"{workdir}: the index was built from a run with config hash {chash}, this run has "
                     f"{run.config_hash}; rebuild it with `govjax index`")
  checkpoints = _checkpoints(run, index.steps.tolist())
  featurizer = transformer_featurizer(run.graphdef, num_layers=run.model_config.num_layers,
                                      config=index.feature_config)
  tracer = RunTracer(index, featurizer, checkpoints)
  tracer.context = int(run.model_config.context)
  tracer.vocab_size = int(run.model_config.vocab_size)
  tracer.steps_per_quarter = int(index.metadata.get("steps_per_quarter", run.config.steps_per_quarter))
  return tracer
