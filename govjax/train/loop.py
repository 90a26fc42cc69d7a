"""The training loop: resumable, logged, checkpointed.

``train(config, workdir)`` builds (or takes) the training data, restores the latest checkpoint in
``workdir/checkpoints`` if there is one, and runs until ``config.num_steps``. The batch for step ``s`` is
``data.batches.train[s]`` and the step's randomness is ``fold_in(rng, s)``, so a run interrupted and resumed produces
bitwise the same parameters as one run straight through. Metrics go to ``workdir/metrics.jsonl``; the routing log
(which example trained at which depth, per step) to ``workdir/routing_log.jsonl``.

The run directory is a :class:`govjax.core.rundir.RunDir`: ``train`` holds its writer lock (a second training in
the same workdir fails at once), refuses a workdir of another config before writing anything, resumes from the
newest intact checkpoint (a damaged newer one is reported, set aside in ``checkpoints.corrupt/`` and trained
again), cuts both logs back to the restored step (each step is logged once) and writes ``config.json`` /
``data_report.json`` atomically once the run is validated.

Example (needs ``govjax prepare chorales``; see ``experiments/configs/demo.py``)::

    from govjax.core.config import load_config
    result = train(load_config("experiments/configs/tiny.py"), "/tmp/govjax-doc")
    round(result.val_nll, 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from govjax.core.checkpoint import NoCheckpointError
from govjax.core.config import TrainConfig, config_hash, from_dict
from govjax.core.mesh import process_rows
from govjax.core.rundir import ROUTING_LOG, RunDir
from govjax.data.tokenizer import PAD, VOCAB_SIZE
from govjax.models.transformer import drop_region
from govjax.train.data import TrainBatches, TrainingData, build_training_data
from govjax.train.governance import governance_components
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.step import (
    TrainState,
    attach_plugin_references,
    calibrate_due_plugins,
    create_train_state,
    make_eval_step,
)

DEVICE_KEYS = ("tokens", "example_id", "work_index", "region")


def calibrate_plugins(plugins, extras: dict, graphdef, params, data: TrainBatches, step: int,
                      max_batches: int) -> dict:
  """Runs ``plugin.calibrate`` for plugins that have one and are due at ``step`` (0 and every
  ``calibrate_every`` steps), on the calibration batches (validation batches when the data have none); returns the
  updated extras."""
  source = data.calibration or data.validation  # disjoint from val NLL and audit non-members
  if source is None:
    return extras
  return calibrate_due_plugins(plugins, extras, graphdef, params, step, lambda: source(max_batches))


@dataclasses.dataclass
class TrainResult:
  """What ``train`` returns.

  Attributes:
    state: final train state.
    graphdef: the model's graph definition (``nnx.merge(graphdef, state.params)`` gives the model).
    val_nll: validation negative log-likelihood per scored token (nats), or None without validation data.
    steps_run: steps run in this call (0 when the run was already complete).
    wall_s: seconds spent in this call.
    data: the training data used.
  """

  state: TrainState
  graphdef: object
  val_nll: float | None
  steps_run: int
  wall_s: float
  data: TrainingData


def evaluate_nll(eval_step, params, batches) -> float | None:
  """Validation NLL per scored token over ``batches`` (an iterable of batch dicts)."""
  total, count = 0.0, 0.0
  for batch in batches:
    loss_sum, n = eval_step(params, {k: v for k, v in batch.items() if k in ("tokens", "weight")})
    total += float(np.sum(loss_sum))
    count += float(np.sum(n))
  return total / count if count else None


def _jsonable(metrics: dict) -> dict:
  out = {}
  for key, value in metrics.items():
    value = np.asarray(value)
    out[key] = value.tolist() if value.ndim else value.item()
  return out


def attach_references(plugins, extras: dict, data: TrainingData) -> dict:
  """``extras`` with the n-gram reference of the training windows attached to every plugin that takes one (the
  memorization probe with ``reference_order`` > 0, :meth:`govjax.probe.monitor.ProbePlugin.attach_reference`);
  unchanged without a window table."""
  table = data.catalogue.window_table
  if table is None:
    return extras
  return attach_plugin_references(plugins, extras, data.catalogue.all_window_tokens, np.asarray(table.work_index),
                                  vocab_size=data.batches.vocab_size, pad=PAD)


def train(
    config: TrainConfig,
    workdir: str | pathlib.Path,
    *,
    data: TrainingData | None = None,
    stop_at: int | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict, np.ndarray, dict], None] | None = None,
    mesh=None,
) -> TrainResult:
  """Trains (or resumes training) a model as ``config`` says.

  Args:
    config: the training config.
    workdir: run directory: ``checkpoints/``, ``metrics.jsonl``, ``routing_log.jsonl``, ``config.json``.
    data: prebuilt training data; built from ``config`` when None.
    stop_at: stop after this global step (for interrupt/resume tests); defaults to ``config.num_steps``.
    progress: show a progress bar with loss and step time.
    on_step: optional callback ``(step, batch, group_mask, metrics)`` after every step.
    mesh: a ``jax.sharding.Mesh`` with a ``data`` axis (``govjax.core.mesh.data_mesh``): train data-parallel
      on it, the state replicated or sharded (``config.param_sharding``) and each process feeding its rows of the
      global batch (the result equals the single-device run). Only process 0 writes the run's JSON files; Orbax
      coordinates the checkpoints.

  Returns:
    A :class:`TrainResult`.
  """
  start_time = time.perf_counter()
  run = RunDir(workdir)
  is_main = jax.process_index() == 0
  chash = config_hash(config)
  with contextlib.ExitStack() as stack:
    if is_main:
      stack.enter_context(run.lock())  # one writer per run directory
    stack.enter_context(run)  # closes the checkpoint manager (waits for its saves)
    run.check_config(chash)  # a run of another config is refused before anything is built or written
    if data is None:
      data = build_training_data(config)
    components = governance_components(config)
    extras = attach_references(components.plugins,
                               {p.name: p.init(data.batches.num_examples) for p in components.plugins}, data)
    graphdef, state, tx, schedule = create_train_state(
        config, vocab_size=data.batches.vocab_size, tx=components.tx, extras=extras)
    if mesh is None:
      train_step = components.train_step(graphdef)
      rows = None
    else:
      state = place_state(state, mesh, config.param_sharding)
      train_step = sharded_train_step(graphdef, tx, components.loss_fn, components.plugins, mesh,
                                      gradients=components.gradients, state_like=state,
                                      param_sharding=config.param_sharding)
      rows = process_rows(mesh, config.batch_size)
    eval_step = make_eval_step(graphdef)
    end = config.num_steps if stop_at is None else min(stop_at, config.num_steps)
    # Read-only until here; a damaged newest checkpoint falls back to the newest intact one (with a warning).
    resumed = run.restore_for_resume(state, config_hash=chash)
    start = 0
    if resumed is not None:
      state, _, faults = resumed
      start = int(state.step)
    # Validated: now the run directory is written (the logs cut back to the restored step: each step logged once).
    logs = stack.enter_context(run.open_logs(start, enabled=is_main))
    if is_main:
      run.write_record(config.to_dict(), config_hash=chash, vocab_size=int(data.batches.vocab_size))
      run.write_data_report(data.catalogue.report)
    ckpts = run.checkpoints(read_only=False, max_to_keep=config.max_to_keep)
    if resumed is not None:
      run.set_aside(faults)

    def save(step: int) -> None:
      meta = {"step": step, "learning_rate": float(schedule(step)), "config_hash": chash,
              "routing_log": ROUTING_LOG, "num_examples": int(data.batches.num_examples)}
      ckpts.save(state, meta, step=step)

    bar = tqdm(total=end, initial=start, disable=not (progress and is_main), desc="train", unit="step",
               dynamic_ncols=True)
    val_nll = None
    try:
      for step in range(start, end):
        if components.plugins:
          extras = calibrate_plugins(components.plugins, state.extras, graphdef, state.params, data.batches, step,
                                     config.eval_max_batches)
          if extras is not state.extras:
            state = state._replace(extras=extras)
        t0 = time.perf_counter()
        batch = data.batches.train[step]
        group_mask = data.batches.group_mask(batch)
        device_batch = {k: v for k, v in batch.items() if k in DEVICE_KEYS}
        if rows is not None:
          device_batch = {k: np.asarray(v)[rows[0]:rows[1]] for k, v in device_batch.items()}
          state, metrics = train_step(state, device_batch, group_mask[rows[0]:rows[1]])
        else:
          state, metrics = train_step(state, device_batch, group_mask)
        loss = float(metrics["loss"])
        step_s = time.perf_counter() - t0
        record = {"step": step + 1, "loss": loss, "grad_norm": float(metrics["grad_norm"]),
                  "learning_rate": float(schedule(step)), "step_s": step_s,
                  "contributors_per_group": np.asarray(metrics["contributors"]).tolist()}
        record.update({k: _jsonable({k: v})[k] for k, v in metrics.items() if "/" in k})
        effective_mask = np.asarray(metrics["group_mask"])
        logs.routing({
            "step": step + 1,
            "example_id": np.asarray(batch["example_id"]).tolist(),
            "work_index": np.asarray(batch["work_index"]).tolist(),
            "mask": effective_mask.round(4).tolist(),
        })
        if on_step is not None:
          on_step(step + 1, batch, group_mask, _jsonable(metrics))
        done = step + 1
        if data.batches.validation is not None and (done % config.eval_every == 0 or done == end):
          val_nll = evaluate_nll(eval_step, state.params, data.batches.validation(config.eval_max_batches))
          record["val_nll"] = val_nll
        logs.metrics(record)
        bar.set_postfix(loss=f"{loss:.3f}", step_s=f"{step_s:.3f}")
        bar.update(1)
        if done % config.checkpoint_every == 0 or done == end:
          logs.sync()
          save(done)
    finally:
      bar.close()
    if val_nll is None and data.batches.validation is not None:
      val_nll = evaluate_nll(eval_step, state.params, data.batches.validation(config.eval_max_batches))
  jax.block_until_ready(state.params)
  return TrainResult(state=state, graphdef=graphdef, val_nll=val_nll, steps_run=max(end - start, 0),
                     wall_s=time.perf_counter() - start_time, data=data)


def restore_model(workdir: str | pathlib.Path, *, step: int | None = None, keep_region: bool = False):
  """Loads the trained model of a run directory, as deployed: a removable region is dropped unless asked.

  Args:
    workdir: a directory written by :func:`train`.
    step: checkpoint step; the latest when None.
    keep_region: keep the removable region (``model.region_width > 0``) instead of dropping it.

  Returns:
    ``(model, config, meta)``.

  Raises:
    NotARunError: ``workdir`` holds no run; NoCheckpointError: no checkpoint (at ``step``).
    CheckpointError: the checkpoint asked for is damaged, or, with ``step`` None, none is intact (a damaged newest
      checkpoint is skipped with a warning, and the newest intact one loaded).
  """
  with RunDir(workdir) as run:
    record = run.read_record()
    config = from_dict(record["config"])
    components = governance_components(config)
    built = {}

    def like_from_meta(meta: dict):
      extras = {p.name: p.init(int(meta.get("num_examples", 0))) for p in components.plugins}
      built["graphdef"], like, _, _ = create_train_state(config, vocab_size=record.get("vocab_size", VOCAB_SIZE),
                                                         tx=components.tx, extras=extras)
      return like

    ckpts = run.checkpoints(read_only=True)
    if not ckpts.all_steps():
      raise NoCheckpointError(f"{run.checkpoint_dir}: no checkpoint yet; train first (`govjax train --config "
                              f"CONFIG --workdir {run.path}`)")
    if step is None:
      state, meta, _ = ckpts.restore_newest_intact(like_from_meta=like_from_meta)
    else:
      state, meta = ckpts.restore(like_from_meta(ckpts.meta(step)), step=step)
  graphdef = built["graphdef"]
  model = nnx.merge(graphdef, state.params)
  if config.model.region_width and not keep_region:

    model = drop_region(model)
  return model, config, meta
