"""Influence queries against an :class:`~govjax.provenance.index.InfluenceIndex`.

The TracIn-CP influence of training example ``n`` on an output ``z'`` is

    I(n, z') = sum_c lr_c * <phi_c(n), psi_c(z')>

with ``phi_c`` the stored (depth-masked, projected) training features and ``psi_c`` the output's projected loss
gradient at checkpoint ``c``. With ``govjax index --precondition update`` the index stores as ``phi_c`` the Adam
step of each example (its gradient over ``sqrt(nu_hat) + eps``) and queries stay raw: TracIn-Adam, the first-order
change of the output's loss under the steps the example contributed (:func:`scorer_name`). The output is scored
through all groups (it is produced by the whole model; the training feature's mask decides which groups may carry
credit). A long output is cut into windows of the model's context and its influence is the sum over windows.
Positive scores are proponents (training on ``n`` lowered the output's loss), negative ones opponents.

Example:
  >>> from govjax.provenance.featurize import FeatureConfig
  >>> from govjax.provenance.index import InfluenceIndex
  >>> index = InfluenceIndex(features=np.eye(3, 4, dtype=np.float32)[None], self_influence=np.ones(3),
  ...     learning_rates=np.array([2.0]), steps=np.array([1]), example_work=np.array([0, 0, 1]),
  ...     example_depth=np.array([2, 2, 2]), works=[{"work_id": "a"}, {"work_id": "b"}],
  ...     feature_config=FeatureConfig(k=4), metadata={})
  >>> scores = influence_scores(index, np.array([[[0.0, 1.0, -1.0, 0.0]]], np.float32))
  >>> scores.tolist()
  [[0.0, 2.0, -2.0]]
  >>> aggregate_per_work(scores[0], index.example_work, index.num_works, how="sum").tolist()
  [2.0, -2.0]

An output is validated before it is scored (:func:`check_output_tokens`): integer token ids of the model's
vocabulary, four a frame, at most :data:`MAX_TRACE_TOKENS` of them; a trace never builds on NaN or infinite
scores (:class:`NonFiniteScoresError`).

  >>> check_output_tokens(np.array([40, 36, 31, 24, 2, 2, 2, 2]), vocab_size=72, source="x.npy").shape
  (8,)
  >>> try:
  ...   check_output_tokens(np.array([40, 36, 31, 99]), vocab_size=72, source="x.npy")
  ... except TraceInputError as error:
  ...   print(error)
  x.npy: token 99 at position 3 is outside the model's vocabulary 0..71
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from govjax.core.checkpoint import CheckpointParams
from govjax.core.errors import UserError
from govjax.core.text import terminal_safe
from govjax.data.tokenizer import NUM_VOICES, PAD
from govjax.provenance.featurize import FeatureConfig, Featurizer, checkpoint_preconditioner, normalize_rows
from govjax.provenance.index import InfluenceIndex

__all__ = ["AGGREGATIONS", "MAX_TRACE_TOKENS", "Attribution", "NonFiniteScoresError", "TraceInputError", "Tracer",
           "aggregate_per_work", "check_output_tokens", "influence_scores", "scorer_name", "top_k", "windows"]

AGGREGATIONS = ("sum", "mean", "max")
# The longest output a trace scores: 4,096 frames (256 measures of 4/4 on the 16th-note grid). Scoring costs one
# gradient per context window and checkpoint: at this bound the demo model (context 128, 3 checkpoints, 384
# gradients) scored in 9.5 s on 2 heavily shared CPU cores, 28 s with the one-off compilation; longer pieces are
# refused at once (trace them in parts of at most this length).
MAX_TRACE_TOKENS = 16384


class TraceInputError(UserError, ValueError):
  """An output that cannot be traced as given (shape, voices, token ids outside the vocabulary, length)."""


class NonFiniteScoresError(UserError, ValueError):
  """Influence scores (or the gradients behind them) that are NaN or infinite: no lineage is built from them."""


def check_output_tokens(tokens: Any, *, vocab_size: int | None, source: str = "output", context: int | None = None,
                        max_tokens: int | None = MAX_TRACE_TOKENS) -> np.ndarray:
  """The tokens of an output to trace, validated: ``[T]`` (or ``[F, 4]``) integer ids of the vocabulary.

  Args:
    tokens: the output's tokens, frame-major with :data:`~govjax.data.tokenizer.NUM_VOICES` tokens a frame.
    vocab_size: the model's vocabulary size (ids ``0..vocab_size - 1``); None checks only the shape and length
      (e.g. before the model is known).
    source: the input's name (a file) for the messages.
    context: the model's context; when given, some context window must have a scored (non-PAD) target.
    max_tokens: the longest output accepted (None: no limit).

  Returns:
    int32 ``[T]``.

  Raises:
    TraceInputError: not integers, an empty array, a shape other than ``[T]`` / ``[F, 4]``, a length that is not
      whole frames, more than ``max_tokens`` tokens, an id outside ``0..vocab_size - 1``, or nothing to score
      (only PAD).
  """
  where = terminal_safe(str(source))
  tokens = np.asarray(tokens)
  if tokens.dtype == bool or not np.issubdtype(tokens.dtype, np.integer):
    raise TraceInputError(f"{where}: expected integer token ids, got dtype {tokens.dtype}")
  if tokens.size == 0:
    raise TraceInputError(f"{where}: no tokens (shape {tokens.shape})")
  if not (tokens.ndim == 1 or (tokens.ndim == 2 and tokens.shape[1] == NUM_VOICES)):
    raise TraceInputError(f"{where}: expected tokens of shape [T] or [frames, {NUM_VOICES}], got {tokens.shape}")
  tokens = tokens.reshape(-1)
  if tokens.size % NUM_VOICES:
    raise TraceInputError(f"{where}: {tokens.size} tokens are not whole frames of {NUM_VOICES} voices (one token "
                          "per voice per frame)")
  if max_tokens is not None and tokens.size > max_tokens:
    raise TraceInputError(f"{where}: {tokens.size} tokens ({tokens.size // NUM_VOICES} frames) is more than the "
                          f"{max_tokens} a trace scores ({max_tokens // NUM_VOICES} frames); trace it in parts")
  bad = np.flatnonzero((tokens < 0) | (tokens >= vocab_size)) if vocab_size is not None else np.zeros(0, int)
  if bad.size:
    raise TraceInputError(f"{where}: token {int(tokens[bad[0]])} at position {int(bad[0])} is outside the "
                          f"model's vocabulary 0..{int(vocab_size) - 1}"
                          + (f" ({bad.size} such tokens)" if bad.size > 1 else ""))
  tokens = tokens.astype(np.int32)
  if context is not None and not np.any(windows(tokens, context)[:, 1:] != PAD):
    raise TraceInputError(f"{where}: nothing to score: every predicted token is PAD ({PAD})")
  return tokens


def scorer_name(config: FeatureConfig) -> str:
  """The name of the score an index with ``config`` computes (for lineages and messages).

  >>> scorer_name(FeatureConfig(precondition=True, query_precondition=False))
  'TracIn-Adam'
  >>> scorer_name(FeatureConfig())
  'TracIn-CP'
  """
  if not config.precondition:
    return "TracIn-CP"
  return "TracIn-CP, Adam-preconditioned both sides" if config.query_precondition else "TracIn-Adam"


def influence_scores(index: InfluenceIndex, query_features: np.ndarray) -> np.ndarray:
  """``sum_c lr_c * features[c] @ query_features[c].T``.

  Args:
    index: the index.
    query_features: float ``[C, Q, k]`` projected query gradients (same projection, same checkpoints).

  Returns:
    float64 ``[Q, N]``.
  """
  query_features = np.asarray(query_features, np.float32)
  expected = (index.num_checkpoints, index.feature_config.k)
  if query_features.ndim != 3 or (query_features.shape[0], query_features.shape[2]) != expected:
    raise ValueError(f"query_features has shape {query_features.shape}, expected [C={expected[0]}, Q, "
                     f"k={expected[1]}]")
  out = np.zeros((query_features.shape[1], index.num_examples), np.float64)
  for c in range(index.num_checkpoints):
    out += index.learning_rates[c] * (query_features[c] @ index.features[c].T)
  return out


def aggregate_per_work(scores: np.ndarray, example_work: np.ndarray, num_works: int, *, how: str = "sum"
                       ) -> np.ndarray:
  """Per-work influence from per-example scores ``[N]`` (``sum``, ``mean`` or ``max`` over a work's examples).

  Works without examples get 0 (``sum``/``mean``) or ``-inf`` (``max``).
  """
  if how not in AGGREGATIONS:
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
  scores = np.asarray(scores, np.float64)
  example_work = np.asarray(example_work, np.int64)
  if how == "max":
    out = np.full(num_works, -np.inf)
    np.maximum.at(out, example_work, scores)
    return out
  total = np.bincount(example_work, weights=scores, minlength=num_works)[:num_works]
  if how == "sum":
    return total
  count = np.bincount(example_work, minlength=num_works)[:num_works]
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the ``k`` largest (proponents, descending) and ``k`` smallest (opponents, ascending) scores."""
  scores = np.asarray(scores)
  k = min(int(k), scores.shape[-1])
  order = np.argsort(-scores, kind="stable")
  return order[:k], order[::-1][:k][np.argsort(scores[order[::-1][:k]], kind="stable")]


def windows(tokens: np.ndarray, context: int) -> np.ndarray:
  """Cuts an output ``[T]`` into ``[Q, context]`` windows (stride ``context``; the last one PAD-filled).

  A ``[Q, L]`` array with ``L <= context`` is returned as it is.
  """
  tokens = np.asarray(tokens, np.int32)
  if tokens.ndim == 2 and tokens.shape[1] <= context:
    return tokens
  if tokens.ndim != 1 or tokens.size == 0:
    raise ValueError(f"output tokens must be a non-empty [T] array (or [Q, L<=context]), got {tokens.shape}")
  count = -(-tokens.size // context)
  out = np.zeros((count, context), np.int32)
  out.reshape(-1)[: tokens.size] = tokens
  return out


@dataclasses.dataclass(frozen=True)
class Attribution:
  """The influence of the training set on one output.

  Attributes:
    example_scores: float64 ``[N]`` influence of every training example.
    work_scores: float64 ``[W]`` aggregated per work.
    aggregation: how ``work_scores`` were aggregated.
    proponents: work indices with the largest scores, best first.
    opponents: work indices with the smallest scores, most negative first.
    top_examples: example indices with the largest scores.
  """

  example_scores: np.ndarray
  work_scores: np.ndarray
  aggregation: str
  proponents: np.ndarray
  opponents: np.ndarray
  top_examples: np.ndarray


class Tracer:
  """Scores outputs against an index with the featurizer and checkpoints that built it.

  Args:
    index: the influence index.
    featurizer: a featurizer with the index's feature config (same projection seed and k).
    checkpoints: the index's checkpoints, in its order.
  """

  def __init__(self, index: InfluenceIndex, featurizer: Featurizer, checkpoints: Sequence[CheckpointParams]):
    if featurizer.config != index.feature_config:
      raise ValueError(f"featurizer config {featurizer.config} differs from the index's {index.feature_config}")
    steps = [int(c.step) for c in checkpoints]
    if steps != [int(s) for s in index.steps]:
      raise ValueError(f"checkpoints {steps} differ from the index's {index.steps.tolist()}")
    self.index = index
    self.featurizer = featurizer
    self.checkpoints = list(checkpoints)
    config = featurizer.config
    if config.precondition and not config.query_precondition:  # Adam's step on the training side only
      self._query_featurizer = featurizer.with_config(precondition=False)
      self._preconditioners = [None] * len(self.checkpoints)
    else:
      self._query_featurizer = featurizer
      self._preconditioners = [checkpoint_preconditioner(c, config) for c in self.checkpoints]

  def query_features(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[C, Q, k]`` projected full-depth loss gradients of ``Q`` query examples (normalised like the index;
    Adam-preconditioned when the index's config preconditions queries)."""
    out = []
    for ckpt, pre in zip(self.checkpoints, self._preconditioners, strict=True):
      phi = self._query_featurizer(ckpt.params, inputs, None, preconditioner=pre, normalize=False)
      out.append(normalize_rows(phi) if self.featurizer.config.normalize else phi)
    return np.stack(out)

  def influence(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Influence of every training example on each of ``Q`` queries: float64 ``[Q, N]``."""
    return influence_scores(self.index, self.query_features(inputs))

  def attribute(self, inputs: Mapping[str, Any], *, top: int = 10, aggregation: str = "sum") -> Attribution:
    """Influence on one output given as ``Q`` pieces (e.g. its windows), summed over the pieces.

    Args:
      inputs: query arrays with a leading ``[Q]`` axis (e.g. ``{"tokens": windows(tokens, context)}``).
      top: how many proponent/opponent works (and top examples) to list.
      aggregation: per-work aggregation (``sum``, ``mean`` or ``max``).

    Returns:
      An :class:`Attribution`.

    Raises:
      NonFiniteScoresError: the output's gradients at some checkpoint, or the scores, are NaN or infinite (e.g.
        corrupted parameters or index features); nothing is ranked from them.
      TraceInputError: ``top < 1`` or an unknown aggregation.
    """
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
      raise TraceInputError(f"top must be an integer >= 1, got {top!r}")
    if aggregation not in AGGREGATIONS:
      raise TraceInputError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    features = self.query_features(inputs)
    broken = [int(c.step) for c, f in zip(self.checkpoints, features, strict=True) if not np.isfinite(f).all()]
    if broken:
      raise NonFiniteScoresError(f"the output's loss gradients are NaN or infinite at checkpoint step(s) {broken} "
                                 "(corrupted parameters or invalid tokens); no influence scores")
    scores = influence_scores(self.index, features).sum(axis=0)
    if not np.isfinite(scores).all():
      count = int(np.sum(~np.isfinite(scores)))
      raise NonFiniteScoresError(f"{count} of {scores.size} influence scores are NaN or infinite: the index holds "
                                 "non-finite features or learning rates; rebuild it with `govjax index`")
    per_work = aggregate_per_work(scores, self.index.example_work, self.index.num_works, how=aggregation)
    has_examples = np.bincount(self.index.example_work, minlength=self.index.num_works) > 0
    ranked = np.where(has_examples, per_work, np.nan)
    valid = np.flatnonzero(has_examples)
    order = valid[np.argsort(-ranked[valid], kind="stable")]
    top = min(top, len(order))
    proponents = order[:top]
    opponents = order[::-1][:top]
    best_examples, _ = top_k(scores, top)
    return Attribution(example_scores=scores, work_scores=per_work, aggregation=aggregation,
                       proponents=proponents, opponents=opponents, top_examples=best_examples)

  def self_influence(self) -> np.ndarray:
    """TracIn self-influence of every training example (from the index)."""
    return self.index.self_influence
