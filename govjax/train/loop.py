"""The training loop: resumable, logged, checkpointed.

``train(config, workdir)`` builds (or takes) the training data, restores the latest checkpoint in
``workdir/checkpoints`` if there is one, and runs until ``config.num_steps``. The batch for step ``s`` is
``data.train[s]`` and the step's randomness is ``fold_in(rng, s)``, so a run interrupted and resumed produces
bitwise the same parameters as one run straight through. Metrics go to ``workdir/metrics.jsonl``; the routing log
(which example trained at which depth, per step) to ``workdir/routing_log.jsonl``.

Example (needs ``govjax prepare chorales``; see ``experiments/configs/demo.py``)::

    from govjax.core.config import load_config
    result = train(load_config("experiments/configs/tiny.py"), "/tmp/govjax-doc")
    round(result.val_nll, 2)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from govjax.core.checkpoint import Checkpoints
from govjax.core.config import TrainConfig, config_hash, from_dict
from govjax.core.mesh import process_rows
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.models.transformer import drop_region
from govjax.train.data import TrainingData, build_training_data
from govjax.train.governance import governance_components
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.step import TrainState, create_train_state, make_eval_step

DEVICE_KEYS = ("tokens", "example_id", "work_index", "region")


def calibrate_plugins(plugins, extras: dict, graphdef, params, data: TrainingData, step: int,
                      max_batches: int) -> dict:
  """Runs ``plugin.calibrate`` for plugins that have one and are due at ``step`` (0 and every
  ``calibrate_every`` steps), on validation batches; returns the updated extras."""
  def is_due(plugin) -> bool:
    every = int(getattr(plugin, "calibrate_every", 0) or 0)
    return hasattr(plugin, "calibrate") and (step == 0 or (every > 0 and step % every == 0))

  due = [p for p in plugins if is_due(p)]
  if not due or data.validation is None:
    return extras
  from flax import nnx

  model = nnx.merge(graphdef, params)
  extras = dict(extras)
  for plugin in due:
    extras[plugin.name] = plugin.calibrate(extras[plugin.name], model, list(data.validation(max_batches)))
  return extras


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
      on it, the state replicated and each process feeding its rows of the global batch (the result equals the
      single-device run). Only process 0 writes the run's JSON files; Orbax coordinates the checkpoints.

  Returns:
    A :class:`TrainResult`.
  """
  start_time = time.perf_counter()
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if data is None:
    data = build_training_data(config)
  components = governance_components(config, num_groups=config.model.num_layers + 2)
  extras = {p.name: p.init(data.num_train_examples) for p in components.plugins}
  graphdef, state, tx, schedule = create_train_state(
      config, vocab_size=data.vocab_size, tx=components.tx, extras=extras)
  if mesh is None:
    train_step = components.train_step(graphdef)
    rows = None
  else:

    if components.make_step is not None:
      raise ValueError(f"governance.baseline={config.governance.baseline!r} has no data-parallel step yet")
    state = place_state(state, mesh)
    train_step = sharded_train_step(graphdef, tx, components.loss_fn, components.plugins, mesh)
    rows = process_rows(mesh, config.batch_size)
  is_main = jax.process_index() == 0
  eval_step = make_eval_step(graphdef)
  chash = config_hash(config)
  if is_main:
    (workdir / "config.json").write_text(json.dumps({"config": config.to_dict(), "config_hash": chash,
                                                     "vocab_size": int(data.vocab_size)},
                                                    indent=2))
    (workdir / "data_report.json").write_text(json.dumps(data.report, indent=2, default=str))

  end = config.num_steps if stop_at is None else min(stop_at, config.num_steps)
  with Checkpoints(workdir / "checkpoints", max_to_keep=config.max_to_keep) as ckpts:
    start = 0
    if ckpts.latest_step() is not None:
      state, meta = ckpts.restore(state)
      if meta.get("config_hash") != chash:
        raise ValueError(
            f"{workdir} holds checkpoints of another config (hash {meta.get('config_hash')}, this one {chash}); "
            "use a fresh --workdir"
        )
      start = int(state.step)

    def save(step: int) -> None:
      meta = {"step": step, "learning_rate": float(schedule(step)), "config_hash": chash,
              "routing_log": "routing_log.jsonl", "num_examples": int(data.num_train_examples)}
      ckpts.save(state, meta, step=step)

    metrics_file = open(workdir / "metrics.jsonl" if is_main else os.devnull, "a")
    routing_file = open(workdir / "routing_log.jsonl" if is_main else os.devnull, "a")
    bar = tqdm(total=end, initial=start, disable=not (progress and is_main), desc="train", unit="step",
               dynamic_ncols=True)
    val_nll = None
    try:
      for step in range(start, end):
        if components.plugins:
          extras = calibrate_plugins(components.plugins, state.extras, graphdef, state.params, data, step,
                                     config.eval_max_batches)
          if extras is not state.extras:
            state = state._replace(extras=extras)
        t0 = time.perf_counter()
        batch = data.train[step]
        group_mask = data.group_mask(batch)
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
        routing_file.write(json.dumps({
            "step": step + 1,
            "example_id": np.asarray(batch["example_id"]).tolist(),
            "work_index": np.asarray(batch["work_index"]).tolist(),
            "mask": effective_mask.round(4).tolist(),
        }) + "\n")
        if on_step is not None:
          on_step(step + 1, batch, group_mask, _jsonable(metrics))
        done = step + 1
        if data.validation is not None and (done % config.eval_every == 0 or done == end):
          val_nll = evaluate_nll(eval_step, state.params, data.validation(config.eval_max_batches))
          record["val_nll"] = val_nll
        metrics_file.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{loss:.3f}", step_s=f"{step_s:.3f}")
        bar.update(1)
        if done % config.checkpoint_every == 0 or done == end:
          metrics_file.flush()
          routing_file.flush()
          save(done)
    finally:
      bar.close()
      metrics_file.close()
      routing_file.close()
    if val_nll is None and data.validation is not None:
      val_nll = evaluate_nll(eval_step, state.params, data.validation(config.eval_max_batches))
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
  """
  from flax import nnx


  workdir = pathlib.Path(workdir)
  config_file = workdir / "config.json"
  if not config_file.is_file():
    raise FileNotFoundError(f"{workdir} is not a govjax run directory (no config.json); run `govjax train` first")
  saved = json.loads(config_file.read_text())
  config = from_dict(saved["config"])

  components = governance_components(config, num_groups=config.model.num_layers + 2)
  with Checkpoints(workdir / "checkpoints", max_to_keep=None) as ckpts:
    chosen = ckpts.latest_step() if step is None else step
    if chosen is None:
      raise FileNotFoundError(f"{workdir} has no checkpoints yet")
    num_examples = int(ckpts.meta(chosen).get("num_examples", 0))
    extras = {p.name: p.init(num_examples) for p in components.plugins}
    graphdef, like, _, _ = create_train_state(config, vocab_size=saved.get("vocab_size", VOCAB_SIZE),
                                              tx=components.tx, extras=extras)
    state, meta = ckpts.restore(like, step=chosen)
  model = nnx.merge(graphdef, state.params)
  if config.model.region_width and not keep_region:

    model = drop_region(model)
  return model, config, meta
