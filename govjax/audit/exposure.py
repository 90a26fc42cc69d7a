"""Canaries and exposure (Carlini et al. 2019, "The Secret Sharer").

A canary is a random token sequence inserted into training a chosen number of times. Its *exposure* against a
set of references ``R`` (random sequences drawn from the same distribution, the canary included) is::

    exposure = log2(|R|) - log2(rank)

where ``rank`` is the canary's position (1 = lowest) when the members of ``R`` are sorted by the model's loss
(log-perplexity). A canary the model ranks first among ``|R|`` candidates has exposure ``log2 |R|``; one it
ranks in the middle has exposure about 1. Ties count in the canary's favour (rank = 1 + number of references
with a strictly lower loss).

:class:`CanaryBatches` wraps a training batch source and replaces rows by canaries on a fixed, deterministic
schedule, so runs with canaries are as reproducible and resumable as runs without.

Rank exposure cannot exceed ``log2 |R|`` (10 bits for 1000 references): two models that both rank a canary first
look the same. :func:`extrapolated_exposure` follows Carlini et al. (2019, section 4.3): it fits a skew-normal
distribution to the reference losses and reports ``-log2 P(L <= canary loss)`` under the fit, so exposure keeps
growing past the ceiling (and agrees with rank exposure in the bulk of the references).

Example:
  >>> exposure(0.5, [1.0, 2.0, 3.0])       # rank 1 among |R| = 4
  2.0
  >>> round(exposure(2.5, [1.0, 2.0, 3.0]), 4)       # rank 3 among 4
  0.415
  >>> refs = np.random.default_rng(0).normal(5.0, 0.5, 1000)
  >>> round(extrapolated_exposure(5.0, refs), 1), extrapolated_exposure(1.0, refs) > 20
  (1.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from govjax.audit.extraction import window_losses

__all__ = ["CanaryBatches", "canary_exposure", "exposure", "extrapolated_exposure", "fit_reference_losses",
           "make_canaries"]


def fit_reference_losses(reference_losses: Sequence[float]) -> tuple[float, float, float]:
  """Skew-normal ``(shape, loc, scale)`` fitted to reference losses (a normal fit when they are constant-ish)."""
  refs = np.asarray(reference_losses, np.float64)
  refs = refs[np.isfinite(refs)]
  if refs.size < 3 or refs.std() <= 1e-12:
    raise ValueError(f"need at least 3 distinct finite reference losses, got {refs.size}")
  shape, loc, scale = stats.skewnorm.fit(refs, loc=float(refs.mean()), scale=float(refs.std()))
  return float(shape), float(loc), float(scale)


def extrapolated_exposure(canary_loss: float, reference_losses: Sequence[float] | None = None, *,
                          fit: tuple[float, float, float] | None = None) -> float:
  """Exposure from the tail of a skew-normal fitted to the reference losses: ``-log2 P(L <= canary_loss)``.

  Args:
    canary_loss: the canary's loss.
    reference_losses: losses of never-planted sequences of the canary's distribution.
    fit: a ready ``(shape, loc, scale)`` (see :func:`fit_reference_losses`) instead of ``reference_losses``.

  Returns:
    Bits of exposure; not capped by the number of references.
  """
  shape, loc, scale = fit if fit is not None else fit_reference_losses(reference_losses)
  log_p = float(stats.skewnorm.logcdf(canary_loss, shape, loc=loc, scale=scale))
  if not np.isfinite(log_p):  # beyond float range of the cdf: the normal tail's asymptotic log
    z = (canary_loss - loc) / scale
    log_p = float(stats.norm.logcdf(z))
  return float(max(0.0, -log_p / np.log(2.0)))


def exposure(canary_loss: float, reference_losses: Sequence[float]) -> float:
  """Exposure of one canary.

  Args:
    canary_loss: the canary's loss.
    reference_losses: losses of the other members of ``R`` (the canary is the ``|R|``-th).

  Returns:
    ``log2(len(reference_losses) + 1) - log2(rank)``.
  """
  references = np.asarray(reference_losses, np.float64)
  rank = 1 + int(np.sum(references < canary_loss))
  return float(np.log2(references.size + 1) - np.log2(rank))


def make_canaries(seed: int | np.random.Generator, num: int, length: int, *, low: int = 3,
                  high: int = 72) -> np.ndarray:
  """``num`` random canaries of ``length`` tokens drawn uniformly from ``[low, high)`` (no PAD/REST/HOLD)."""
  rng = np.random.default_rng(seed)
  if not 0 < low < high:
    raise ValueError(f"canary tokens need 0 < low < high, got low={low}, high={high}")
  return rng.integers(low, high, size=(num, length)).astype(np.int32)


def canary_exposure(model, canaries, *, num_references: int = 1000, seed: int = 0, low: int = 3,
                    high: int = 72, repetitions: Sequence[int] | None = None, batch_size: int = 64,
                    references: np.ndarray | None = None) -> dict:
  """Exposure of each canary against ``num_references`` fresh random sequences of the same distribution.

  Args:
    model: a Transformer.
    canaries: int ``[C, T]`` inserted canaries (drawn from ``[low, high)``).
    num_references: references drawn (``|R| = num_references + 1``).
    seed: seed of the references (use one the canaries were not drawn with).
    low, high: the canaries' token range.
    repetitions: times each canary was inserted (reported alongside).
    batch_size: rows scored at once.
    references: the reference sequences themselves (same distribution as the canaries, never inserted);
      when given, ``num_references``, ``seed``, ``low`` and ``high`` are not used to draw them.

  Returns:
    ``{"num_references", "max_exposure", "canaries": [{"index", "repetitions", "loss", "rank", "exposure"}],
    "by_repetitions": {reps: mean exposure}}``.
  """
  canaries = np.asarray(canaries, np.int32)
  if references is None:
    references = make_canaries(seed, num_references, canaries.shape[1], low=low, high=high)
  references = np.asarray(references, np.int32)
  num_references = len(references)
  ref_loss, _ = window_losses(model, references, batch_size=batch_size)
  can_loss, _ = window_losses(model, canaries, batch_size=batch_size)
  rows = []
  for index, loss in enumerate(can_loss):
    rows.append({
        "index": index,
        "repetitions": None if repetitions is None else int(repetitions[index]),
        "loss": float(loss),
        "rank": 1 + int(np.sum(ref_loss < loss)),
        "exposure": exposure(float(loss), ref_loss),
    })
  by_reps: dict[str, list[float]] = {}
  for row in rows:
    by_reps.setdefault(str(row["repetitions"]), []).append(row["exposure"])
  return {
      "num_references": int(num_references),
      "max_exposure": float(np.log2(num_references + 1)),
      "canaries": rows,
      "by_repetitions": {k: float(np.mean(v)) for k, v in sorted(by_reps.items())},
  }


class CanaryBatches:
  """A batch source whose rows are replaced by canaries on a fixed schedule.

  Canary ``c`` is inserted ``repetitions[c]`` times, at steps spread evenly over ``[0, num_steps)`` (offset per
  canary), each time in row ``(c + occurrence) % batch_size``. Its ``example_id`` is ``first_example_id + c``
  (so a probe needs ``first_example_id + C`` examples) and its ``work_index`` is ``work_index``.

  Attributes:
    base: the wrapped source (``base[step]`` -> batch dict).
    canaries: int32 ``[C, T]``.
    repetitions: int ``[C]``.
    schedule: ``{step: [(row, canary), ...]}``.
  """

  def __init__(self, base, canaries, repetitions: Sequence[int], *, num_steps: int, batch_size: int,
               first_example_id: int, work_index: int = 0):
    self.base = base
    self.canaries = np.asarray(canaries, np.int32)
    self.repetitions = np.asarray(repetitions, np.int64)
    if self.repetitions.shape != (self.canaries.shape[0],):
      raise ValueError(f"repetitions has {self.repetitions.size} entries for {self.canaries.shape[0]} canaries")
    self.first_example_id = int(first_example_id)
    self.work_index = int(work_index)
    self.schedule: dict[int, list[tuple[int, int]]] = {}
    for c, reps in enumerate(self.repetitions):
      if reps > num_steps:
        raise ValueError(f"canary {c}: {reps} repetitions do not fit in {num_steps} steps (one per step)")
      for occurrence in range(int(reps)):
        step = (occurrence * num_steps) // max(int(reps), 1)
        step = (step + c) % num_steps
        self.schedule.setdefault(step, []).append(((c + occurrence) % batch_size, c))

  def __getitem__(self, step: int) -> dict:
    batch = {k: np.array(v) for k, v in self.base[step].items()}
    for row, c in self.schedule.get(int(step), []):
      batch["tokens"][row] = self.canaries[c][: batch["tokens"].shape[1]]
      batch["example_id"][row] = self.first_example_id + c
      batch["work_index"][row] = self.work_index
    return batch
