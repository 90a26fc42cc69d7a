"""A model-free reference for the memorization probe: how surprising a window is to the rest of the training set.

Counterfactual memorization (Zhang et al. 2021) is an example's loss under models that never trained on it minus
its loss under models that did. In a long run every trained window ends with a small loss, so which windows are
memorized most is decided by the first term: how hard the window is for a model that never saw it. A single run
has two estimates of that difficulty, with errors of different origin:

* the model's own loss on the window at the held-out optimum (:mod:`govjax.probe.gap`), which has already seen the
  window a few times;
* the window's surprisal under an n-gram model of the *other* works of the training set (this module): it never
  saw the window's work, but it is a much weaker model.

Difficulty calibration of membership inference (Watson et al. 2022) uses a reference model in the same way. The
n-gram reference is counted once from the training windows before training (no model, no extra forward pass) and
leaves out every window of the scored window's own work, so a work repeated across windows does not make itself
look easy.

The n-gram model interpolates orders ``1..order`` from the uniform distribution up: ``p_n = l_n * c(context, x) /
c(context) + (1 - l_n) * p_{n-1}`` with ``l_n = c(context) / (c(context) + 2)`` (an unseen context falls back to
the lower order). A window's score is the mean over its predicted tokens (positions ``1..T-1``, the ones a
next-token model is scored on) of ``sqrt(-log p)``: the same concave reading as the probe's root loss.

Example:
  >>> import numpy as np
  >>> windows = np.array([[1, 2, 3, 1, 2, 3], [1, 2, 3, 1, 2, 3], [3, 3, 1, 1, 2, 2]])
  >>> scores = ngram_root_surprisal(windows, np.array([0, 1, 2]), vocab_size=4, order=2)
  >>> bool(scores[0] < scores[2])   # windows 0 and 1 (different works) explain each other; window 2 is new
  True
  >>> scores = ngram_root_surprisal(windows, np.array([0, 0, 2]), vocab_size=4, order=2)
  >>> bool(scores[0] > 0.9)         # one work: its two windows no longer explain each other
  True
"""

from __future__ import annotations

import numpy as np


def _gram_codes(tokens: np.ndarray, valid: np.ndarray, n: int, base: int) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
  """Codes ``[N, T]`` of the length-``n`` grams ending at each position and of their ``n - 1`` token contexts,
  and where such a gram exists (all its tokens valid)."""
  num, length = tokens.shape
  gram = np.zeros((num, length), np.int64)
  context = np.zeros((num, length), np.int64)
  exists = valid.copy()
  exists[:, :n - 1] = False
  for offset in range(n - 1, -1, -1):  # offset = distance back from the gram's last token
    shifted = np.zeros((num, length), np.int64)
    ok = np.zeros((num, length), bool)
    shifted[:, offset:] = tokens[:, :length - offset]
    ok[:, offset:] = valid[:, :length - offset]
    exists &= ok
    gram = gram * base + shifted
    if offset > 0:
      context = context * base + shifted
  return gram, context, exists


def _counts(keys: np.ndarray, owners: np.ndarray, query: np.ndarray, query_owner: np.ndarray) -> np.ndarray:
  """How often each ``query`` key occurs among ``keys``, minus its occurrences with the query's own owner."""
  unique, inverse, total = np.unique(keys, return_inverse=True, return_counts=True)
  if unique.size == 0:
    return np.zeros(query.shape, np.int64)
  found = np.minimum(np.searchsorted(unique, query), unique.size - 1)
  hit = unique[found] == query
  pairs, own = np.unique(owners * unique.size + inverse.reshape(-1), return_counts=True)
  wanted = query_owner * unique.size + found
  where = np.minimum(np.searchsorted(pairs, wanted), pairs.size - 1)
  own_hit = hit & (pairs[where] == wanted)
  return np.where(hit, total[found], 0) - np.where(own_hit, own[where], 0)


def ngram_root_surprisal(windows, groups, *, vocab_size: int, order: int,
                         train_rows=None, valid=None) -> np.ndarray:
  """Each window's mean root surprisal under an n-gram model of the training windows of the other works.

  Args:
    windows: int ``[N, T]`` token windows (every window scored).
    groups: int ``[N]`` each window's work; windows of the scored window's work are left out of its counts.
    vocab_size: the token vocabulary (the uniform base distribution; tokens must lie in ``[0, vocab_size)``).
    order: the highest n-gram order (>= 1; the probe's ``ProbeSpec.reference_order``).
    train_rows: indices of the windows the model trains on (the counts; repeats count once); None: all.
    valid: bool ``[N, T]`` real (non-padding) tokens; None: all. Grams over a padding token are not counted
      and padding positions are not scored.

  Returns:
    float64 ``[N]``: the mean over each window's valid positions ``1..T-1`` of ``sqrt(-log p)`` (NaN for a
    window with no scored position).

  Raises:
    ValueError: on mismatched shapes, an order below 1 or a token outside the vocabulary.
  """
  tokens = np.asarray(windows, np.int64)
  groups = np.asarray(groups)
  if tokens.ndim != 2 or groups.shape != (tokens.shape[0],):
    raise ValueError(f"ngram_root_surprisal: windows must be [N, T] and groups [N], got {tokens.shape} and "
                     f"{groups.shape}")
  if order < 1:
    raise ValueError(f"ngram_root_surprisal: order must be at least 1, got {order}")
  if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
    raise ValueError(f"ngram_root_surprisal: tokens must lie in [0, {vocab_size}), got "
                     f"[{tokens.min()}, {tokens.max()}]")
  valid = np.ones(tokens.shape, bool) if valid is None else np.asarray(valid, bool)
  if valid.shape != tokens.shape:
    raise ValueError(f"ngram_root_surprisal: valid must have the windows' shape {tokens.shape}, got {valid.shape}")
  owner = np.unique(groups, return_inverse=True)[1].astype(np.int64)
  rows = np.arange(tokens.shape[0]) if train_rows is None else np.unique(np.asarray(train_rows, np.int64))
  prob = np.full(tokens.shape, 1.0 / vocab_size)
  alive = valid.copy()  # positions whose interpolation has not stopped at a missing gram
  for n in range(1, order + 1):
    gram, context, exists = _gram_codes(tokens, valid, n, vocab_size)
    counted = exists[rows]
    keys_owner = np.broadcast_to(owner[rows][:, None], counted.shape)[counted]
    alive &= exists
    query_owner = np.broadcast_to(owner[:, None], tokens.shape)[alive]
    joint = _counts(gram[rows][counted], keys_owner, gram[alive], query_owner)
    marginal = _counts(context[rows][counted], keys_owner, context[alive], query_owner)
    weight = marginal / (marginal + 2.0)
    ratio = np.where(marginal > 0, joint / np.maximum(marginal, 1), 0.0)
    prob[alive] = weight * ratio + (1.0 - weight) * prob[alive]
  scored = valid.copy()
  scored[:, 0] = False
  root = np.sqrt(-np.log(prob))
  count = scored.sum(axis=1)
  with np.errstate(invalid="ignore"):
    return np.where(count > 0, (root * scored).sum(axis=1) / np.maximum(count, 1), np.nan)
