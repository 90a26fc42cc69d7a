"""The memorization probe as a train-step plugin: calibrated thresholds and adaptive per-example depth.

Every step, :class:`ProbePlugin` reads the step's own forward pass (``aux["logits"]``, ``aux["hidden"]``,
``aux["per_example_loss"]``; no second forward pass), computes the statistics of :mod:`govjax.probe.stats` for
each row and folds them into a per-example exponential moving average (EMA), keyed by ``example_id``. The state
is a few device arrays of size ``num_examples`` (it lives in ``TrainState.extras["probe"]`` and is checkpointed).

Calibration (:meth:`ProbePlugin.calibrate`, called by the loop at step 0 and every ``calibrate_every`` steps with
validation batches) sets two thresholds per statistic from held-out windows the model never trained on: ``low`` =
the ``percentile``-th percentile of their values and ``high`` = the ``restore_percentile``-th. A training example
whose EMA of the chosen ``signal`` falls below ``low`` (after ``min_seen`` observations) is more extreme than
almost all unseen music: it loses one depth group each time it is seen, down to ``min_depth``; once its EMA rises
above ``high`` it regains one group per sighting, up to full depth. Between the two it keeps its depth
(hysteresis). Before the first calibration the thresholds are ``-inf`` / ``+inf`` and nothing changes.

The side is ``ProbeSpec.side`` (``direction``, or the signal's own side): ``low`` (above), ``high`` (flagged
above the ``100 - percentile``-th percentile ``upper``, restored below the ``100 - restore_percentile``-th
``upper_restore``) or ``both``. Which side memorized examples fall on is a property of the data, not of the
statistic's name: the memorization-signal study found it differs between statistics and settings, so
:func:`direction_from_heldout` chooses it from windows known to be memorized and never-trained windows of a
calibration split (disjoint from any audit).

The default signal, ``memorization_gap`` (:mod:`govjax.probe.gap`), is the one that study validated: an
example's loss at the held-out optimum minus its loss now, flagged when the gap plus the held-out drift (an
estimate of its counterfactual memorization) exceeds ``memorization_margin`` nats per token and the held-out
noise; examples are ranked (:meth:`ProbePlugin.evidence`) on the same gap of their root loss, optionally with
the reference averaged with the example's n-gram difficulty (``ProbeSpec.reference_order``,
:mod:`govjax.probe.reference`, attached once before training by :meth:`ProbePlugin.attach_reference`).

The plugin's depth combines with the incoming (policy) mask by minimum: row ``b`` may reach group ``g`` iff the
policy allows it and ``g >= G - depth[example_id[b]]``.

Example:
  >>> import jax.numpy as jnp
  >>> plugin = make_probe_plugin(ProbeSpec(enabled=True), num_groups=4)
  >>> state = plugin.init(10)
  >>> state = state._replace(depth=state.depth.at[3].set(2))
  >>> mask = plugin.effective_mask(state, {"example_id": jnp.array([3, 4])}, jnp.ones((2, 4)))
  >>> mask.tolist()
  [[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.config import ProbeSpec
from govjax.core.intervals import clopper_pearson
from govjax.core.mesh import array_to_host
from govjax.probe.gap import HELDOUT_ROWS, fold_reference, heldout_update
from govjax.probe.reference import ngram_root_surprisal
from govjax.probe.stats import STATISTICS, example_statistics, root_loss, statistic_index
from govjax.routing.masks import SURFACES, depth_rows_to_mask


class ProbeState(NamedTuple):
  """Device state of the probe.

  Attributes:
    ema: float32 ``[N, 3]`` per-example EMA of the statistics (columns as :data:`STATISTICS`).
    seen: int32 ``[N]`` times each example was observed.
    depth: int32 ``[N]`` current allowed depth (``num_groups`` = full).
    low: float32 ``[3]`` lowering thresholds (``-inf`` before calibration).
    high: float32 ``[3]`` restoring thresholds (``+inf`` before calibration).
    calibrations: int32 scalar, number of calibrations so far.
    upper: float32 ``[3]`` lowering thresholds on the high side (``+inf`` before calibration).
    upper_restore: float32 ``[3]`` restoring thresholds on the high side (``-inf`` before calibration).
    running_reference: float32 ``[N]`` EMA (``reference_ema``) of each example's fresh loss
      (:mod:`govjax.probe.gap`).
    reference: float32 ``[N]`` the running reference as of the calibration with the lowest held-out loss (NaN
      before it).
    heldout_reference: float32 ``[HELDOUT_ROWS]`` the held-out windows' losses at that calibration.
    best_heldout: float32 scalar, the lowest held-out mean loss so far (``+inf`` before calibration).
    gap_upper: float32 scalar, flag an example whose memorization gap is above this.
    gap_restore: float32 scalar, restore an example whose memorization gap is below this.
    running_root: float32 ``[N]`` EMA (``reference_ema``) of each example's fresh root loss
      (:func:`govjax.probe.stats.root_loss`; the gap's ranking scale).
    reference_root: float32 ``[N]`` the running root loss as of the calibration with the lowest held-out loss.
    difficulty: float32 ``[N]`` each example's root surprisal under an n-gram model of the other works'
      training windows (:mod:`govjax.probe.reference`; NaN where none was attached,
      :meth:`ProbePlugin.attach_reference`).
  """

  ema: jax.Array
  seen: jax.Array
  depth: jax.Array
  low: jax.Array
  high: jax.Array
  calibrations: jax.Array
  upper: jax.Array | None = None
  upper_restore: jax.Array | None = None
  running_reference: jax.Array | None = None
  reference: jax.Array | None = None
  heldout_reference: jax.Array | None = None
  best_heldout: jax.Array | None = None
  gap_upper: jax.Array | None = None
  gap_restore: jax.Array | None = None
  running_root: jax.Array | None = None
  reference_root: jax.Array | None = None
  difficulty: jax.Array | None = None


@functools.partial(jax.jit, static_argnames=("graphdef", "layer", "center"))
def _batch_statistics(graphdef, params, tokens, *, layer, center):
  model = nnx.merge(graphdef, params)
  logits, hidden = model(tokens, return_hidden=True)
  return example_statistics(logits, tokens, hidden[layer], center=center)


def batch_statistics(model: nnx.Module, tokens, *, layer: int = -1, center: bool = True) -> jax.Array:
  """The probe's statistics ``[B, 3]`` of ``tokens`` ``[B, T]`` under ``model`` (one forward pass)."""
  graphdef, params = nnx.split(model, nnx.Param)
  return _batch_statistics(graphdef, params, jnp.asarray(tokens, jnp.int32), layer=layer, center=center)


class ProbePlugin:
  """The memorization probe; implements ``govjax.train.step.StepPlugin``.

  Attributes:
    spec: the :class:`ProbeSpec`.
    num_groups: the model's depth groups ``G``.
    name: ``"probe"`` (its state is ``TrainState.extras["probe"]``).
    needs_hidden: True: the loss function must return ``aux["hidden"]``.
    calibrate_every: steps between calibrations.
  """

  name = "probe"
  needs_hidden = True

  def __init__(self, spec: ProbeSpec, num_groups: int, surface: str = "output"):
    self.spec = spec
    self.num_groups = int(num_groups)
    self.surface = surface
    self.calibrate_every = int(spec.calibrate_every)
    self.gap = spec.signal == "memorization_gap"
    self.signal_index = statistic_index("loss" if self.gap else spec.signal)

  def init(self, num_examples: int) -> ProbeState:
    """Fresh state for ``num_examples`` training windows: full depth, nothing seen, uncalibrated."""
    if num_examples < 1:
      raise ValueError(f"probe: num_examples must be positive, got {num_examples}")
    n = len(STATISTICS)
    return ProbeState(
        ema=jnp.zeros((num_examples, n), jnp.float32),
        seen=jnp.zeros((num_examples,), jnp.int32),
        depth=jnp.full((num_examples,), self.num_groups, jnp.int32),
        low=jnp.full((n,), -jnp.inf, jnp.float32),
        high=jnp.full((n,), jnp.inf, jnp.float32),
        calibrations=jnp.zeros((), jnp.int32),
        upper=jnp.full((n,), jnp.inf, jnp.float32),
        upper_restore=jnp.full((n,), -jnp.inf, jnp.float32),
        running_reference=jnp.zeros((num_examples,), jnp.float32),
        reference=jnp.full((num_examples,), jnp.nan, jnp.float32),
        heldout_reference=jnp.full((HELDOUT_ROWS,), jnp.nan, jnp.float32),
        best_heldout=jnp.full((), jnp.inf, jnp.float32),
        gap_upper=jnp.full((), jnp.inf, jnp.float32),
        gap_restore=jnp.full((), -jnp.inf, jnp.float32),
        running_root=jnp.zeros((num_examples,), jnp.float32),
        reference_root=jnp.full((num_examples,), jnp.nan, jnp.float32),
        difficulty=jnp.full((num_examples,), jnp.nan, jnp.float32),
    )

  @property
  def takes_reference(self) -> bool:
    """Whether :meth:`attach_reference` adds anything (``spec.reference_order`` > 0)."""
    return bool(self.spec.reference_order)

  def attach_reference(self, state: ProbeState, windows, groups, *, vocab_size: int, train_rows=None,
                       valid=None) -> ProbeState:
    """The state with each example's n-gram difficulty (``spec.reference_order``; unchanged when it is 0).

    Args:
      state: a probe state for ``len(windows)`` examples.
      windows: int ``[N, T]`` the examples' tokens (row = ``example_id``).
      groups: ``[N]`` each example's work (its own work's windows are left out of its reference).
      vocab_size: the token vocabulary.
      train_rows: the examples the model trains on (the reference's counts); None: all.
      valid: bool ``[N, T]`` real tokens (None: all).

    Returns:
      The state with ``difficulty`` set (:func:`govjax.probe.reference.ngram_root_surprisal`).
    """
    if not self.spec.reference_order:
      return state
    if state.difficulty is None or state.difficulty.shape[0] != len(windows):
      raise ValueError(f"probe: attach_reference needs a state for {len(windows)} examples with a difficulty "
                       "array (start from ProbePlugin.init)")
    difficulty = ngram_root_surprisal(windows, groups, vocab_size=vocab_size, order=self.spec.reference_order,
                                      train_rows=train_rows, valid=valid)
    return state._replace(difficulty=jnp.asarray(difficulty, jnp.float32))

  def _row_depth(self, state: ProbeState, example_id: jax.Array) -> jax.Array:
    num = state.depth.shape[0]
    valid = (example_id >= 0) & (example_id < num)
    return jnp.where(valid, state.depth[jnp.clip(example_id, 0, num - 1)], self.num_groups)

  def effective_mask(self, state: ProbeState, batch: dict, group_mask: jax.Array) -> jax.Array:
    """``min(group_mask, depth mask of each row's example)``; rows with ``example_id < 0`` keep their mask."""
    depth = self._row_depth(state, jnp.asarray(batch["example_id"]))
    probe_mask = depth_rows_to_mask(depth, self.num_groups, self.surface).astype(group_mask.dtype)
    return jnp.minimum(group_mask, probe_mask)

  def update(self, state: ProbeState, batch: dict, aux: dict, step: jax.Array) -> tuple[ProbeState, dict]:
    """Folds the step's statistics into the per-example state and adapts depths.

    Args:
      state: the probe state.
      batch: with ``tokens`` ``[B, T]`` and ``example_id`` ``[B]`` (rows with id < 0 are ignored).
      aux: the loss function's aux: ``logits``, ``per_example_loss`` and ``hidden`` (a list per group).
      step: the step number (unused).

    Returns:
      ``(state, metrics)``; metrics: ``depth_counts`` ``[G + 1]`` (examples at depth 0..G), ``lowered`` and
      ``restored`` (rows of this batch whose depth changed), ``flagged`` (rows below ``low``), the batch means
      of the three statistics and the current ``threshold`` of the signal.
    """
    del step
    if "hidden" not in aux or "logits" not in aux:
      raise ValueError("probe: the loss function's aux must hold 'logits' and 'hidden' "
                       "(call it with return_hidden=True when a plugin has needs_hidden)")
    spec = self.spec
    tokens = batch["tokens"]
    stats = example_statistics(aux["logits"], tokens, aux["hidden"][spec.layer],
                               per_example_loss=aux.get("per_example_loss"), center=spec.center)
    stats = jax.lax.stop_gradient(stats)
    num = state.depth.shape[0]
    ids = jnp.asarray(batch["example_id"])
    valid = (ids >= 0) & (ids < num)
    safe = jnp.clip(ids, 0, num - 1)
    scatter_ids = jnp.where(valid, ids, num)  # out of range: dropped by the scatters below

    seen = state.seen[safe]
    old = state.ema[safe]
    new = jnp.where(seen[:, None] > 0, spec.ema * old + (1.0 - spec.ema) * stats, stats)
    seen_new = seen + 1
    k = self.signal_index
    if self.gap and state.running_reference is None:
      raise ValueError("probe: signal 'memorization_gap' needs a probe state with running_reference (a state from "
                       "before the gap existed cannot drive it; start from ProbePlugin.init)")
    if state.running_reference is not None:
      running = fold_reference(state.running_reference[safe], stats[:, 0], seen, spec.reference_ema)
      state = state._replace(running_reference=state.running_reference.at[scatter_ids].set(running, mode="drop"))
    if self.gap and state.running_root is not None:
      root = jax.lax.stop_gradient(root_loss(aux["logits"], tokens))
      running_root = fold_reference(state.running_root[safe], root, seen, spec.reference_ema)
      state = state._replace(running_root=state.running_root.at[scatter_ids].set(running_root, mode="drop"))
    signal = state.reference[safe] - running if self.gap else new[:, k]
    flag, back = self._sides(state, signal)
    flagged = valid & (seen_new >= spec.min_seen) & flag
    restore = valid & back
    depth = state.depth[safe]
    if spec.adaptive:
      depth_new = jnp.where(flagged, jnp.maximum(depth - 1, spec.min_depth),
                            jnp.where(restore, jnp.minimum(depth + 1, self.num_groups), depth))
    else:
      depth_new = depth
    state = state._replace(
        ema=state.ema.at[scatter_ids].set(new, mode="drop"),
        seen=state.seen.at[scatter_ids].set(seen_new, mode="drop"),
        depth=state.depth.at[scatter_ids].set(depth_new, mode="drop"),
    )
    weight = valid.astype(jnp.float32)
    count = jnp.maximum(weight.sum(), 1.0)
    metrics = {
        "depth_counts": jnp.bincount(state.depth, length=self.num_groups + 1),
        "lowered": jnp.sum(valid & (depth_new < depth)),
        "restored": jnp.sum(valid & (depth_new > depth)),
        "flagged": jnp.sum(flagged),
        "threshold": state.gap_upper if self.gap else state.low[k],
    }
    for index, name in enumerate(STATISTICS):
      metrics[f"mean_{name}"] = jnp.sum(jnp.nan_to_num(stats[:, index]) * weight) / count
    return state, metrics

  def _sides(self, state: ProbeState, signal: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(flag, restore)`` of each value of ``signal`` against the state's thresholds on the spec's side."""
    k = self.signal_index
    flag_low, restore_low = signal < state.low[k], signal > state.high[k]
    if self.gap:
      flag_high, restore_high = signal > state.gap_upper, signal < state.gap_restore
    elif state.upper is None:  # a state from before the high side existed
      flag_high, restore_high = jnp.zeros_like(flag_low), jnp.ones_like(restore_low)
    else:
      flag_high, restore_high = signal > state.upper[k], signal < state.upper_restore[k]
    if self.spec.side == "low":
      return flag_low, restore_low
    if self.spec.side == "high":
      return flag_high, restore_high
    return flag_low | flag_high, restore_low & restore_high

  def flagged(self, state: ProbeState) -> np.ndarray:
    """bool ``[N]``: examples whose current EMA (gap) is beyond the flagging threshold, as the step would judge
    them at their next sighting (``min_seen`` and unseen examples aside)."""
    signal = self.gap_nats(state) if self.gap else state.ema[:, self.signal_index]
    return np.asarray(self._sides(state, signal)[0])

  def gap_nats(self, state: ProbeState) -> jax.Array:
    """``[N]`` the memorization gap in nats per token: reference loss minus running loss EMA (the flagging
    scale; NaN before the first reference snapshot)."""
    return state.reference - state.running_reference

  def calibrate(self, state: ProbeState, model: nnx.Module, eval_batches: Iterable[dict]) -> ProbeState:
    """Sets the thresholds from held-out batches (``tokens`` and optional ``weight``; weight-0 rows skipped).

    Args:
      state: the probe state.
      model: the current model.
      eval_batches: validation batches; at most ``spec.calibration_batches`` are read.

    Returns:
      The state with new ``low`` / ``high`` / ``upper`` / ``upper_restore`` and, for the memorization gap
      (:func:`govjax.probe.gap.heldout_update`), a new reference snapshot when the held-out loss is a new minimum
      or new gap thresholds otherwise (unchanged when there were no held-out rows).
    """
    values = calibration_statistics(model, eval_batches, layer=self.spec.layer, center=self.spec.center,
                                    max_batches=self.spec.calibration_batches)
    if values.shape[0] == 0:
      return state
    low, high = thresholds(values, self.spec.percentile, self.spec.restore_percentile)
    upper_restore, upper = thresholds(values, 100.0 - self.spec.restore_percentile, 100.0 - self.spec.percentile)
    state = state._replace(low=jnp.asarray(low), high=jnp.asarray(high), calibrations=state.calibrations + 1,
                           upper=jnp.asarray(upper), upper_restore=jnp.asarray(upper_restore))
    if state.running_reference is None:  # a state from before the memorization gap existed
      return state
    gap = heldout_update(best=array_to_host(state.best_heldout),
                         heldout_reference=array_to_host(state.heldout_reference),  # split across hosts under FSDP
                         heldout_loss=values[:, 0], percentile=self.spec.percentile,
                         restore_percentile=self.spec.restore_percentile, margin=self.spec.memorization_margin)
    if gap.improved and state.running_root is not None:
      state = state._replace(reference_root=jnp.where(state.seen > 0, state.running_root, jnp.nan))
    return state._replace(
        reference=jnp.where(state.seen > 0, state.running_reference, jnp.nan) if gap.improved else state.reference,
        heldout_reference=jnp.asarray(gap.heldout_reference), best_heldout=jnp.asarray(gap.best),
        gap_upper=jnp.asarray(gap.upper), gap_restore=jnp.asarray(gap.restore))

  def evidence(self, state: ProbeState) -> np.ndarray:
    """Per-example memorization score (higher = more memorized); NaN if unseen.

    ``low``: minus the EMA of the signal; ``high``: the EMA; ``both``: its distance from the middle of the
    calibrated band (``(low + upper) / 2``, in units of the band's width; the EMA itself before calibration).
    ``memorization_gap``: an estimate of the example's root loss without it minus its running root loss EMA
    (:mod:`govjax.probe.gap`). The estimate is its reference root loss (at the held-out optimum) averaged with
    its n-gram difficulty (:mod:`govjax.probe.reference`, when attached) put on the reference's scale (same
    mean and standard deviation over the examples that have both), two estimates with errors of different
    origin, equally weighted. In nats (:meth:`gap_nats`) for a state from before the root loss existed; NaN
    before the first reference snapshot.
    """
    ema = np.asarray(state.ema[:, self.signal_index], np.float64)
    if self.gap and state.running_root is not None:
      reference = np.asarray(state.reference_root, np.float64)
      if state.difficulty is not None:
        reference = with_difficulty(reference, np.asarray(state.difficulty, np.float64))
      score = reference - np.asarray(state.running_root, np.float64)
    elif self.gap:
      score = np.asarray(self.gap_nats(state), np.float64)
    elif self.spec.side == "low":
      score = -ema
    elif self.spec.side == "high":
      score = ema
    else:
      low = float(state.low[self.signal_index])
      upper = float(state.upper[self.signal_index]) if state.upper is not None else np.inf
      score = np.abs(ema - (low + upper) / 2) / (upper - low) if np.isfinite(low) and np.isfinite(upper) else ema
    return np.where(np.asarray(state.seen) > 0, score, np.nan)


def with_difficulty(reference: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
  """``(reference + difficulty on the reference's scale) / 2`` where both are finite, else ``reference``.

  The difficulty is mapped linearly to the mean and standard deviation of the reference over the examples that
  have both (unchanged: fewer than two such examples, or a constant column).

  Example:
    >>> with_difficulty(np.array([1.0, 2.0, 3.0, np.nan]), np.array([30.0, 10.0, 20.0, 5.0])).round(2).tolist()
    [2.0, 1.5, 2.5, nan]
  """
  reference, difficulty = np.asarray(reference, np.float64), np.asarray(difficulty, np.float64)
  both = np.isfinite(reference) & np.isfinite(difficulty)
  if both.sum() < 2 or np.std(difficulty[both]) == 0 or np.std(reference[both]) == 0:
    return reference
  mapped = reference[both].mean() + reference[both].std() * (difficulty - difficulty[both].mean()) / (
      difficulty[both].std())
  return np.where(both, (reference + mapped) / 2, reference)


def calibration_statistics(model: nnx.Module, batches: Iterable[dict], *, layer: int = -1,
                           max_batches: int | None = None, center: bool = True) -> np.ndarray:
  """Statistics ``[n, 3]`` of the rows (weight > 0) of up to ``max_batches`` batches."""
  rows = []
  for index, batch in enumerate(batches):
    if max_batches is not None and index >= max_batches:
      break
    stats = np.asarray(batch_statistics(model, batch["tokens"], layer=layer, center=center))
    weight = np.asarray(batch.get("weight", np.ones(stats.shape[0], np.float32)))
    rows.append(stats[weight > 0])
  return np.concatenate(rows) if rows else np.zeros((0, len(STATISTICS)), np.float32)


def thresholds(values: np.ndarray, percentile: float, restore_percentile: float) -> tuple[np.ndarray, np.ndarray]:
  """``(low, high)`` float32 ``[3]``: the two percentiles of each statistic's column (NaNs ignored)."""
  values = np.asarray(values, np.float64)
  if values.ndim != 2 or values.shape[0] == 0:
    raise ValueError(f"thresholds need a non-empty [n, statistics] array, got shape {values.shape}")
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, mapped to +-inf below
    low = np.nanpercentile(values, percentile, axis=0)
    high = np.nanpercentile(values, restore_percentile, axis=0)
  low = np.where(np.isnan(low), -np.inf, low)
  high = np.where(np.isnan(high), np.inf, high)
  return low.astype(np.float32), high.astype(np.float32)


def direction_from_heldout(memorized, heldout, *, percentile: float = 5.0, level: float = 0.95) -> dict:
  """Which tail of the held-out distribution memorized examples fall into more often than held-out ones do.

  The held-out values set the two tails (below the ``percentile``-th and above the ``100 - percentile``-th
  percentile; each holds ``percentile``% of held-out windows by construction). A side is chosen when the share
  of memorized windows in that tail has an exact (Clopper-Pearson) lower bound above ``percentile``%.

  Args:
    memorized: values of the statistic on windows known to be memorized (e.g. counterfactually, on a
      calibration split).
    heldout: values on never-trained windows of the same split.
    percentile: the tail size.
    level: the interval's coverage.

  Returns:
    ``{"direction": "low" | "high" | "both" | "none", "share_low", "share_high", "ci_low", "ci_high"}``.
  """
  memorized = np.asarray(memorized, np.float64)
  memorized = memorized[np.isfinite(memorized)]
  heldout = np.asarray(heldout, np.float64)
  if memorized.size == 0 or heldout.size == 0:
    raise ValueError("direction_from_heldout needs memorized and held-out values")
  lo, hi = np.percentile(heldout, [percentile, 100.0 - percentile])
  n_low, n_high = int(np.sum(memorized < lo)), int(np.sum(memorized > hi))
  ci_low = clopper_pearson(n_low, memorized.size, level=level)
  ci_high = clopper_pearson(n_high, memorized.size, level=level)
  sides = [name for name, ci in (("low", ci_low), ("high", ci_high)) if ci[0] > percentile / 100.0]
  direction = "both" if len(sides) == 2 else sides[0] if sides else "none"
  return {"direction": direction, "share_low": n_low / memorized.size, "share_high": n_high / memorized.size,
          "ci_low": ci_low, "ci_high": ci_high}


def depth_histogram(state: ProbeState, num_groups: int) -> dict[int, int]:
  """``{depth: number of examples}`` for depths 0..num_groups."""
  counts = np.bincount(np.asarray(state.depth), minlength=num_groups + 1)
  return {d: int(c) for d, c in enumerate(counts)}


def make_probe_plugin(spec: ProbeSpec, num_groups: int, *, surface: str = "output") -> ProbePlugin:
  """Validates ``spec`` and builds the plugin.

  Args:
    spec: the probe config.
    num_groups: the model's number of depth groups.
    surface: which end a lowered depth keeps (``governance.surface``): "output" or "input".

  Returns:
    A :class:`ProbePlugin`.
  """
  if spec.signal != "memorization_gap":
    statistic_index(spec.signal)
  if not 0.0 <= spec.ema < 1.0:
    raise ValueError(f"ProbeSpec.ema must be in [0, 1), got {spec.ema}")
  if not 0.0 <= spec.percentile < spec.restore_percentile <= 100.0:
    raise ValueError(f"ProbeSpec needs 0 <= percentile ({spec.percentile}) < restore_percentile "
                     f"({spec.restore_percentile}) <= 100")
  if not 0 <= spec.min_depth <= num_groups:
    raise ValueError(f"ProbeSpec.min_depth must be in [0, {num_groups}], got {spec.min_depth}")
  if spec.calibrate_every < 1 or spec.calibration_batches < 1 or spec.min_seen < 1:
    raise ValueError("ProbeSpec.calibrate_every, calibration_batches and min_seen must be positive")
  if not -(num_groups - 1) <= spec.layer < num_groups - 1:
    raise ValueError(f"ProbeSpec.layer {spec.layer} is out of range for {num_groups - 1} hidden states")
  if surface not in SURFACES:
    raise ValueError(f"probe: surface must be one of {SURFACES}, got {surface!r}")
  return ProbePlugin(spec, num_groups, surface)
