"""Half-subset retrains for counterfactual memorization labels (Zhang et al. 2021), with equal training frequency.

``K`` models are trained, each on a random half of the works (:func:`complementary_subsets`: models come in pairs
that split the works into complementary halves, so every work is in exactly ``K / 2`` models and every model has
the same number of works). A window's counterfactual memorization is its mean loss in the models that did *not*
train on it minus its mean loss in those that did (:func:`counterfactual_scores`; leave-one-out when the signal
comes from one of the in-models, so that a label never shares that model's noise).

Training is by epochs (:func:`epoch_batches`): every epoch is a fresh permutation of the model's rows, so each
row is trained exactly as often as every other (a row listed ``r`` times is trained ``r`` times as often: the
only way frequency differs). :func:`train_and_measure` trains one model and measures every signal of
:mod:`govjax.probe.signals` on a fixed set of windows at chosen steps (fresh measurements, not moving averages),
plus each trained row's loss at its first and last sighting.

Example:
  >>> subsets = complementary_subsets(6, 4, seed=0)
  >>> subsets.sum(axis=0).tolist(), subsets.sum(axis=1).tolist()
  ([2, 2, 2, 2, 2, 2], [3, 3, 3, 3])
  >>> losses = np.array([[0.1, 2.0], [2.0, 0.2]])   # [models, windows]
  >>> counterfactual_scores(losses, np.array([[True, False], [False, True]])).tolist()
  [1.9, 1.8]
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.config import TrainConfig
from govjax.probe.signals import window_signals
from govjax.train.step import (
    attach_plugin_references,
    calibrate_due_plugins,
    create_train_state,
    make_train_step,
    plain_loss,
)

__all__ = ["complementary_subsets", "counterfactual_scores", "epoch_batches", "leave_one_out_scores",
           "top_quantile_labels", "Trainer", "train_and_measure", "within_model_ranks"]


def complementary_subsets(num_works: int, num_models: int, *, seed: int) -> np.ndarray:
  """bool ``[num_models, num_works]``: model ``2j`` trains a random half of the works, model ``2j + 1`` the rest.

  Args:
    num_works: works (even, so that halves are equal).
    num_models: models (even).
    seed: the draw.

  Returns:
    The membership matrix.
  """
  if num_models < 2 or num_models % 2 or num_works < 2 or num_works % 2:
    raise ValueError(f"complementary_subsets needs an even number of models and works, got {num_models}, "
                     f"{num_works}")
  rng = np.random.default_rng(seed)
  out = np.zeros((num_models, num_works), bool)
  for pair in range(num_models // 2):
    half = rng.permutation(num_works)[:num_works // 2]
    out[2 * pair, half] = True
    out[2 * pair + 1] = ~out[2 * pair]
  return out


def counterfactual_scores(losses: np.ndarray, member: np.ndarray) -> np.ndarray:
  """Mean loss where not trained minus mean loss where trained, per window.

  Args:
    losses: ``[K, N]`` each model's loss on each window.
    member: bool ``[K, N]``: model ``k`` trained on window ``n``.

  Returns:
    float64 ``[N]`` (NaN where a window is in all or none of the models).
  """
  losses, member = np.asarray(losses, np.float64), np.asarray(member, bool)
  with np.errstate(invalid="ignore", divide="ignore"):
    out_mean = np.where(~member, losses, 0).sum(0) / (~member).sum(0)
    in_mean = np.where(member, losses, 0).sum(0) / member.sum(0)
  return out_mean - in_mean


def leave_one_out_scores(losses: np.ndarray, member: np.ndarray) -> np.ndarray:
  """``[K, N]``: entry ``(k, n)`` is the counterfactual score of window ``n`` computed without model ``k``."""
  losses, member = np.asarray(losses, np.float64), np.asarray(member, bool)
  out = np.full(losses.shape, np.nan)
  for k in range(losses.shape[0]):
    keep = np.arange(losses.shape[0]) != k
    out[k] = counterfactual_scores(losses[keep], member[keep])
  return out


def top_quantile_labels(scores: np.ndarray, quantile: float) -> np.ndarray:
  """bool: ``scores`` in their own top ``quantile`` (the threshold is fixed before any signal is looked at)."""
  scores = np.asarray(scores, np.float64)
  return scores >= np.nanquantile(scores, 1.0 - quantile)


def within_model_ranks(values: np.ndarray, model: np.ndarray) -> np.ndarray:
  """Each model's values as percentile ranks in ``(0, 1]`` (NaN stays NaN), so pooled AUCs compare within models."""
  values = np.asarray(values, np.float64)
  model = np.asarray(model)
  out = np.full(values.shape, np.nan)
  for k in np.unique(model):
    rows = (model == k) & np.isfinite(values)
    order = np.argsort(np.argsort(values[rows], kind="stable"), kind="stable")
    ranks = order.astype(np.float64)
    # average ranks of ties so that a constant signal scores 0.5
    _, inverse, counts = np.unique(values[rows], return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    out[rows] = (sums[inverse] / counts[inverse] + 1.0) / max(rows.sum(), 1)
  return out


def epoch_batches(rows: np.ndarray, batch_size: int, num_steps: int, *, seed: int):
  """Yields ``num_steps`` index batches: consecutive slices of a fresh permutation of ``rows`` per epoch.

  Args:
    rows: the row indices of one epoch (a row listed ``r`` times is trained ``r`` times per epoch).
    batch_size: must divide ``len(rows)`` (so no row is trained more often than another).
    num_steps: batches to yield.
    seed: the permutation seed.
  """
  rows = np.asarray(rows, np.int64)
  if rows.size % batch_size:
    raise ValueError(f"epoch_batches: batch_size {batch_size} must divide the {rows.size} rows of an epoch")
  per_epoch = rows.size // batch_size
  order = rows
  for step in range(num_steps):
    if step % per_epoch == 0:
      order = np.random.default_rng([seed, step // per_epoch]).permutation(rows)
    start = (step % per_epoch) * batch_size
    yield order[start:start + batch_size]


class Trainer:
  """One compiled train step for a model shape and schedule, reused across seeds and subsets.

  Attributes:
    config: the config it was built for (the init seed does not matter).
    vocab_size: token vocabulary.
    graphdef: the model's graph.
    plugins: step plugins riding along (e.g. the memorization probe, observing).
    step: the jitted train step.
  """

  def __init__(self, config: TrainConfig, vocab_size: int, plugins: tuple = ()):
    graphdef, _, tx, _ = create_train_state(config, vocab_size=vocab_size)
    self.config, self.graphdef, self.vocab_size, self.plugins = config, graphdef, vocab_size, tuple(plugins)
    self.step = make_train_step(graphdef, tx, plain_loss, plugins=self.plugins)

  def compatible(self, config: TrainConfig, vocab_size: int) -> bool:
    """Whether ``config`` trains with this compiled step (everything but the seed equal)."""
    return vocab_size == self.vocab_size and dataclasses.replace(config, seed=0) == dataclasses.replace(
        self.config, seed=0)


def calibrate_due(trainer: Trainer, extras: dict, params, step: int, heldout: np.ndarray | None) -> dict:
  """Calibrates the plugins that have a ``calibrate`` and are due at ``step`` (0 and every ``calibrate_every``
  steps, as in the training loop) on the held-out windows ``heldout`` (int ``[M, T]``, batches of 64)."""
  if heldout is None or not len(heldout):
    return extras
  return calibrate_due_plugins(
      trainer.plugins, extras, trainer.graphdef, params, step,
      lambda: [{"tokens": np.asarray(heldout[i:i + 64], np.int32)} for i in range(0, len(heldout), 64)])


def train_and_measure(config: TrainConfig, windows: np.ndarray, rows: np.ndarray, *, vocab_size: int,
                      measure_at: tuple[int, ...], data_seed: int, trainer: Trainer | None = None,
                      heldout: np.ndarray | None = None, works: np.ndarray | None = None) -> dict:
  """Trains one model on ``windows[rows]`` by epochs and measures every signal of every window at given steps.

  Args:
    config: model shape, optimizer, ``num_steps``, ``batch_size`` and the init ``seed``.
    windows: int ``[N, T]``: every window measured (trained or not).
    rows: indices into ``windows`` of one epoch (repeats allowed).
    vocab_size: token vocabulary.
    measure_at: steps after which the signals are measured (``num_steps`` = the final model).
    data_seed: seed of the epoch permutations.
    trainer: a :class:`Trainer` built for the same shape and schedule (saves a compilation); None: a new one.
    heldout: int ``[M, T]`` never-trained windows that calibrate the trainer's plugins (:func:`calibrate_due`);
      None: no calibration.
    works: ``[N]`` each window's work: plugins that take a reference (the memorization probe with
      ``reference_order`` > 0) get the n-gram reference of ``windows[rows]`` with each work's own windows left
      out (:func:`govjax.train.step.attach_plugin_references`); None: none.

  Returns:
    ``{"signals": {step: {name: [N]}}, "first_loss": [N], "last_loss": [N]`` (NaN for rows never trained),
    ``"train_s"``, ``"measure_s"``}.
  """
  if trainer is None or not trainer.compatible(config, vocab_size):
    trainer = Trainer(config, vocab_size)
  extras = {plugin.name: plugin.init(windows.shape[0]) for plugin in trainer.plugins}
  if works is not None:
    extras = attach_plugin_references(trainer.plugins, extras, lambda: windows, works, vocab_size=vocab_size,
                                      train_rows=rows)
  _, state, _, _ = create_train_state(config, vocab_size=vocab_size, extras=extras)
  groups = config.model.num_layers + 2
  mask = jnp.ones((config.batch_size, groups), jnp.float32)
  first = np.full(windows.shape[0], np.nan)
  last = np.full(windows.shape[0], np.nan)
  step_ids = np.zeros((config.num_steps, config.batch_size), np.int32)
  step_loss = np.zeros((config.num_steps, config.batch_size), np.float32)
  signals, extras_at, train_s, measure_s = {}, {}, 0.0, 0.0
  t0 = time.perf_counter()
  for step, ids in enumerate(epoch_batches(rows, config.batch_size, config.num_steps, seed=data_seed)):
    if trainer.plugins and heldout is not None:
      extras = calibrate_due(trainer, state.extras, state.params, step, heldout)
      state = state._replace(extras=extras) if extras is not state.extras else state
    batch = {"tokens": jnp.asarray(windows[ids], jnp.int32), "example_id": jnp.asarray(ids, jnp.int32)}
    state, metrics = trainer.step(state, batch, mask)
    losses = np.asarray(metrics["per_example_loss"], np.float64)
    step_ids[step], step_loss[step] = ids, losses
    fresh = np.isnan(first[ids])
    first[ids[fresh]] = losses[fresh]
    last[ids] = losses
    if step + 1 in measure_at:
      jax.block_until_ready(state.params)
      train_s += time.perf_counter() - t0
      t1 = time.perf_counter()
      model = nnx.merge(trainer.graphdef, state.params)
      signals[step + 1] = window_signals(model, windows, batch_size=64)
      extras_at[step + 1] = jax.device_get(state.extras)  # the step donates its input state
      measure_s += time.perf_counter() - t1
      t0 = time.perf_counter()
  jax.block_until_ready(state.params)
  train_s += time.perf_counter() - t0
  return {"signals": signals, "first_loss": first, "last_loss": last, "step_ids": step_ids, "step_loss": step_loss,
          "train_s": train_s, "measure_s": measure_s, "extras": state.extras, "extras_at": extras_at}
