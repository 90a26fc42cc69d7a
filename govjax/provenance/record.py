"""What TracIn needs from a training run: checkpoints, their learning rates, and how each example trained.

TracIn-CP (Pruthi et al. 2020) approximates the influence of a training example ``z`` on an output ``z'`` by
``sum_c lr_c * <g_c(z), g_c(z')>`` over saved checkpoints ``c``. Under gradient routing an example's gradient
reaches only some depth groups, and the adaptive probe may lower that mask during training; so the credit an
example can receive at checkpoint ``c`` must go only through the groups it actually trained in the interval
that ``c`` stands for. This module reads that from a run directory written by :func:`govjax.train.loop.train`, through
:class:`govjax.core.rundir.RunDir` (read-only; each step of the log once; damaged checkpoints raise
``CheckpointError`` naming the step and file):

- ``checkpoints/``: Orbax checkpoints whose JSON meta holds ``step`` and ``learning_rate``;
- ``routing_log.jsonl``: one line per step, ``{"step", "example_id": [B], "work_index": [B], "mask": [B][G]}``
  with the *effective* group mask each row trained with.

Per checkpoint ``c`` with interval ``(c_prev, c]`` (``c_prev`` = the previous kept checkpoint, or 0), an
example's mask is (``aggregate="interval"``) the union (elementwise max) of the masks it trained with in that
interval; an example not seen in the interval falls back to its most recent earlier mask, then to its earliest
later one. ``aggregate="union"`` uses the union over the whole run at every checkpoint. An example never seen
in the log gets an all-zero mask (it never trained, so it gets no credit) and is counted in the report.

Each group's effective learning rate enters as ``group_weights[c, g]``: with the ``contributors`` normaliser a
group's update is the sum of its contributors' gradients divided by their count ``N_g = sum_b mask[b, g]``
instead of the batch size ``B``, so each contributor's step in group ``g`` is ``B / N_g`` times a plain step's
(a deep group that few examples reach moves each of them further). ``group_weights[c, g]`` is the mean of
``B / N_g`` over the steps of checkpoint ``c``'s interval in which ``g`` had contributors (1 with the ``batch``
normaliser); the schedule enters through each checkpoint's learning rate. :meth:`TrainingRecord.credit_masks`
multiplies the masks by these weights: the masks the featurizer is given.

Example:
  >>> log = RoutingLog(steps=np.array([1, 2]), example_id=np.array([[0, 1], [1, 2]]),
  ...                  work_index=np.array([[0, 0], [0, 1]]),
  ...                  mask=np.array([[[1, 1], [0, 1]], [[1, 1], [0, 1]]], np.float32))
  >>> rec = training_record(log, [CheckpointInfo(2, 0.1)], num_examples=4)
  >>> rec.masks[0].tolist()
  [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
  >>> rec.report["never_trained"]
  1
  >>> training_record(log, [CheckpointInfo(2, 0.1)], normaliser="contributors").group_weights.tolist()
  [[2.0, 1.0]]
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from govjax.core.checkpoint import NoCheckpointError
from govjax.core.config import from_dict
from govjax.core.rundir import RunDir, RunFileError, read_step_log
from govjax.core.trees import path_key
from govjax.models.transformer import Transformer
from govjax.train.step import model_config

AGGREGATES = ("interval", "union")
NORMALISERS = ("batch", "contributors")


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
  """One checkpoint as TracIn sees it: its step and the learning rate it stands for."""

  step: int
  learning_rate: float
  config_hash: str | None = None


@dataclasses.dataclass(frozen=True)
class RoutingLog:
  """The routing log as arrays (one row per logged step, deduplicated by step).

  Attributes:
    steps: int ``[S]`` global step after the update (1-based), ascending.
    example_id: int ``[S, B]``.
    work_index: int ``[S, B]``.
    mask: float32 ``[S, B, G]`` effective group mask of each row.
  """

  steps: np.ndarray
  example_id: np.ndarray
  work_index: np.ndarray
  mask: np.ndarray

  @property
  def num_groups(self) -> int:
    return int(self.mask.shape[-1])


def read_routing_log(path: str | pathlib.Path) -> RoutingLog:
  """Reads ``routing_log.jsonl``.

  A resumed run logs each step once (the log is cut back to the restored step); a log written by an older govjax
  may hold a replayed step twice: the last line of each step wins, which is what the parameters in later
  checkpoints saw (:func:`govjax.core.rundir.read_step_log`).

  Args:
    path: the JSON Lines file.

  Returns:
    A :class:`RoutingLog`.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a malformed line (a ``RunFileError``: the message gives the file, line number and field).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"routing log not found: {path} (written by govjax.train.loop.train)")
  return _routing_log(path, read_step_log(path))


def _routing_log(path: pathlib.Path, lines: list[tuple[int, dict]]) -> RoutingLog:
  """A :class:`RoutingLog` from the ``(line number, row)`` pairs of ``path``, one per step, ascending."""
  rows = []
  shape = None
  for number, row in lines:
    where = f"{path}:{number}"
    for field in ("step", "example_id", "work_index", "mask"):
      if field not in row:
        raise RunFileError(f"{where}: missing field {field!r}")
    ids = np.asarray(row["example_id"], np.int64)
    works = np.asarray(row["work_index"], np.int64)
    mask = np.asarray(row["mask"], np.float32)
    if ids.ndim != 1 or works.shape != ids.shape or mask.ndim != 2 or mask.shape[0] != ids.shape[0]:
      raise RunFileError(f"{where}: field 'mask' has shape {mask.shape}, 'example_id' {ids.shape}, "
                         f"'work_index' {works.shape}; expected [B, G], [B], [B]")
    if shape is not None and mask.shape != shape:
      raise RunFileError(f"{where}: field 'mask' has shape {mask.shape}, earlier lines {shape}")
    shape = mask.shape
    rows.append((int(row["step"]), ids, works, mask))
  if not rows:
    raise RunFileError(f"{path}: the routing log is empty")
  return RoutingLog(
      steps=np.asarray([r[0] for r in rows], np.int64),
      example_id=np.stack([r[1] for r in rows]),
      work_index=np.stack([r[2] for r in rows]),
      mask=np.stack([r[3] for r in rows]),
  )


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
  """Per checkpoint, the group mask each training example trained with.

  Attributes:
    checkpoints: the checkpoints, ascending by step.
    num_examples: ``N``; example ids range over ``[0, N)``.
    masks: float32 ``[C, N, G]``: ``masks[c, n, g] = 1`` if example ``n``'s credit at checkpoint ``c`` may go
      through group ``g``.
    occurrences: int ``[C, N]``: times example ``n`` was trained in checkpoint ``c``'s interval.
    work_index: int ``[N]`` work of each example as logged (-1 if never seen).
    aggregate: how the masks were aggregated (``interval`` or ``union``).
    report: JSON-able counts (never trained examples, steps after the last checkpoint, ...).
    group_weights: float32 ``[C, G]`` each group's per-contributor step relative to a plain step (see the module
      docstring); None = all 1.
  """

  checkpoints: tuple[CheckpointInfo, ...]
  num_examples: int
  masks: np.ndarray
  occurrences: np.ndarray
  work_index: np.ndarray
  aggregate: str
  report: dict
  group_weights: np.ndarray | None = None

  def credit_masks(self) -> np.ndarray:
    """float32 ``[C, N, G]``: the masks times each checkpoint's group weights (what each example's gradient
    contributed to each group's update, relative to a plain step)."""
    if self.group_weights is None:
      return self.masks
    return (self.masks * self.group_weights[:, None, :]).astype(np.float32)

  @property
  def num_groups(self) -> int:
    return int(self.masks.shape[-1])

  @property
  def steps(self) -> list[int]:
    return [c.step for c in self.checkpoints]

  @property
  def learning_rates(self) -> np.ndarray:
    return np.asarray([c.learning_rate for c in self.checkpoints], np.float64)


def training_record(
    log: RoutingLog,
    checkpoints: Sequence[CheckpointInfo],
    *,
    num_examples: int | None = None,
    aggregate: str = "interval",
    normaliser: str = "batch",
) -> TrainingRecord:
  """Aggregates a routing log into per-checkpoint example masks.

  Args:
    log: the routing log.
    checkpoints: the checkpoints to use (any order; sorted by step).
    num_examples: number of training examples (default: 1 + the largest logged example id).
    aggregate: ``"interval"`` (per checkpoint interval, see the module docstring) or ``"union"``.
    normaliser: the run's ``governance.normaliser``, ``"batch"`` or ``"contributors"`` (sets ``group_weights``).

  Returns:
    A :class:`TrainingRecord`.
  """
  if aggregate not in AGGREGATES:
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
  if normaliser not in NORMALISERS:
    raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
  if not checkpoints:
    raise ValueError("training_record needs at least one checkpoint")
  checkpoints = tuple(sorted(checkpoints, key=lambda c: c.step))
  logged_max = int(log.example_id.max())
  n = logged_max + 1 if num_examples is None else int(num_examples)
  if logged_max >= n or int(log.example_id.min()) < 0:
    raise ValueError(f"routing log has example ids in [{int(log.example_id.min())}, {logged_max}], "
                     f"outside [0, {n})")
  num_groups = log.num_groups
  num_ckpt = len(checkpoints)
  # Interval index of every logged step: c such that prev < step <= checkpoints[c].step; C for later steps.
  bounds = np.asarray([c.step for c in checkpoints])
  interval = np.searchsorted(bounds, log.steps, side="left")
  ids = log.example_id.reshape(-1)
  rows_interval = np.repeat(interval, log.example_id.shape[1])
  rows_mask = log.mask.reshape(-1, num_groups)

  per_interval = np.zeros((num_ckpt + 1, n, num_groups), np.float32)
  np.maximum.at(per_interval, (rows_interval, ids), rows_mask)
  occurrences = np.zeros((num_ckpt + 1, n), np.int64)
  np.add.at(occurrences, (rows_interval, ids), 1)
  seen = occurrences.sum(axis=0) > 0

  if aggregate == "union":
    masks = np.repeat(per_interval.max(axis=0)[None], num_ckpt, axis=0)
  else:
    masks = np.zeros((num_ckpt, n, num_groups), np.float32)
    last = np.zeros((n, num_groups), np.float32)
    have_last = np.zeros(n, bool)
    for c in range(num_ckpt):
      here = occurrences[c] > 0
      last = np.where(here[:, None], per_interval[c], last)
      have_last |= here
      masks[c] = np.where(have_last[:, None], last, 0.0)
    # Examples not yet trained at checkpoint c take their earliest later mask (TracIn-CP credits every
    # example at every checkpoint); examples never trained stay zero.
    first = np.zeros((n, num_groups), np.float32)
    have_first = np.zeros(n, bool)
    for c in range(num_ckpt, -1, -1):
      here = occurrences[c] > 0
      first = np.where(here[:, None], per_interval[c], first)
      have_first |= here
      if c < num_ckpt:
        fill = ~(occurrences[: c + 1].sum(axis=0) > 0) & have_first
        masks[c] = np.where(fill[:, None], first, masks[c])

  work_index = np.full(n, -1, np.int64)
  work_index[ids] = log.work_index.reshape(-1)
  report = {
      "aggregate": aggregate,
      "num_examples": n,
      "num_groups": num_groups,
      "logged_steps": int(log.steps.size),
      "checkpoint_steps": [c.step for c in checkpoints],
      "never_trained": int((~seen).sum()),
      "steps_after_last_checkpoint": int((log.steps > bounds[-1]).sum()),
      "examples_with_no_group": int((masks.max(axis=(0, 2)) == 0).sum()),
  }
  weights = _group_weights(log, interval, num_ckpt) if normaliser == "contributors" else None
  if weights is not None:
    report["group_weights"] = np.round(weights, 4).tolist()
  return TrainingRecord(checkpoints=checkpoints, num_examples=n, masks=masks.astype(np.float32),
                        occurrences=occurrences[:num_ckpt], work_index=work_index, aggregate=aggregate,
                        report=report, group_weights=weights)


def _group_weights(log: RoutingLog, interval: np.ndarray, num_ckpt: int) -> np.ndarray:
  """``[C, G]`` mean over each interval's steps of ``B / N_g`` (steps where group ``g`` had contributors)."""
  contributors = log.mask.sum(axis=1)  # [S, G]
  batch = float(log.mask.shape[1])
  ratio = np.where(contributors > 0, batch / np.maximum(contributors, 1e-12), 0.0)
  weights = np.ones((num_ckpt, log.num_groups), np.float32)
  for c in range(num_ckpt):
    rows = interval == c
    active = (contributors[rows] > 0).sum(axis=0)
    weights[c] = np.where(active > 0, ratio[rows].sum(axis=0) / np.maximum(active, 1), 1.0)
  return weights


# --------------------------------------------------------------------------------------------- checkpoints


def _checkpoint_infos(run: RunDir) -> list[CheckpointInfo]:
  ckpts = run.checkpoints(read_only=True)
  out = []
  for step in ckpts.all_steps():
    meta = ckpts.meta(step)
    if "learning_rate" not in meta:
      raise RunFileError(f"{ckpts.step_dir(step) / 'meta' / 'metadata'}: field 'learning_rate' is missing")
    out.append(CheckpointInfo(int(step), float(meta["learning_rate"]), meta.get("config_hash")))
  if not out:
    raise NoCheckpointError(f"{run.checkpoint_dir}: no checkpoint; run `govjax train` first")
  return out


def read_checkpoints(workdir: str | pathlib.Path) -> list[CheckpointInfo]:
  """The checkpoints of a run with their learning rates (from each checkpoint's JSON meta)."""
  with RunDir(workdir) as run:
    return _checkpoint_infos(run)


def read_training_record(
    workdir: str | pathlib.Path,
    *,
    num_examples: int | None = None,
    aggregate: str = "interval",
    steps: Iterable[int] | None = None,
) -> TrainingRecord:
  """Reads checkpoints and routing log of a run directory into a :class:`TrainingRecord`.

  Args:
    workdir: a directory written by :func:`govjax.train.loop.train`.
    num_examples: number of training examples (default: from the latest checkpoint meta, else the log).
    aggregate: see :func:`training_record`.
    steps: use only these checkpoint steps (default: all kept checkpoints).

  Returns:
    The record. For a run with ``governance.routing = "none"`` the logged masks (the policy's, not applied) are
    replaced by full masks; otherwise the run's ``governance.normaliser`` sets ``group_weights``.
  """
  with RunDir(workdir) as run:
    checkpoints = _checkpoint_infos(run)
    governance = run.read_config().get("governance", {})
    routing, normaliser = governance.get("routing", "none"), governance.get("normaliser", "batch")
    if steps is not None:
      wanted = {int(s) for s in steps}
      missing = wanted - {c.step for c in checkpoints}
      if missing:
        raise NoCheckpointError(f"{run.checkpoint_dir}: no checkpoint at step(s) {sorted(missing)} (it holds "
                                f"{[c.step for c in checkpoints]})")
      checkpoints = [c for c in checkpoints if c.step in wanted]
    if num_examples is None:
      num_examples = run.checkpoints().meta(checkpoints[-1].step).get("num_examples")
    if not run.routing_log_file.is_file():
      raise FileNotFoundError(f"routing log not found: {run.routing_log_file} (written by govjax.train.loop.train)")
    log = _routing_log(run.routing_log_file, run.read_routing_log())
  if routing == "none":
    # Unrouted training (vanilla and the baselines) logs the policy's masks without applying them: every trained
    # example reached every group, with a plain step.
    log = dataclasses.replace(log, mask=np.ones_like(log.mask))
    normaliser = "batch"
  record = training_record(log, checkpoints, num_examples=num_examples, aggregate=aggregate, normaliser=normaliser)
  record.report["routing"] = routing
  return record


@dataclasses.dataclass
class RestoredCheckpoint:
  """A checkpoint's parameters (and Adam second moment) as featurizing needs them.

  Attributes:
    step: the checkpoint step.
    learning_rate: from its meta.
    params: ``nnx.State`` of the model's ``nnx.Param`` (merge with the run's graphdef).
    adam_nu: ``{path: array}`` Adam second moment per parameter (``"blocks/0/mlp/up/kernel"``), or None.
    adam_count: Adam's step count (for bias correction), or None.
  """

  step: int
  learning_rate: float
  params: Any
  adam_nu: dict[str, np.ndarray] | None
  adam_count: int | None


def _unwrap(node: Any) -> Any:
  if isinstance(node, Mapping) and set(node) == {"value"}:
    return node["value"]
  return node


def _lookup(tree: Any, path: Sequence[Any]) -> Any:
  node = tree
  for part in path:
    if isinstance(node, Mapping):
      key = part if part in node else str(part)
      if key not in node:
        return None
      node = node[key]
    elif isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node):
      node = node[part]
    else:
      return None
  return _unwrap(node)


def _find_adam(opt_state: Any) -> Mapping | None:
  """The first mapping with ``mu``, ``nu`` and ``count`` keys in a raw (restored without target) optax state."""
  if isinstance(opt_state, Mapping):
    if {"mu", "nu", "count"} <= set(opt_state):
      return opt_state
    children = opt_state.values()
  elif isinstance(opt_state, (list, tuple)):
    children = opt_state
  else:
    return None
  for child in children:
    found = _find_adam(child)
    if found is not None:
      return found
  return None


class RunCheckpoints:
  """Reads a run's checkpoints without knowing its vocabulary or plugins in advance.

  The state is restored without a target (plain nested dicts), the model's shape comes from ``config.json``
  and the vocabulary size from the saved embedding table, so runs on synthetic data restore as well. The run is
  opened read-only (:class:`govjax.core.rundir.RunDir`), its checkpoint manager built once; :meth:`close` (or a
  ``with`` block) releases it.

  Args:
    workdir: a directory written by :func:`govjax.train.loop.train`.

  Raises:
    NotARunError: ``workdir`` holds no run (a ``FileNotFoundError``).
  """

  def __init__(self, workdir: str | pathlib.Path):
    self.run = RunDir(workdir)
    self.workdir = self.run.path
    record = self.run.read_record()
    self.config = from_dict(record["config"])
    self.config_hash = record.get("config_hash")
    self._graphdef = None
    self._abstract = None
    self.model_config = None

  def __enter__(self) -> RunCheckpoints:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    """Closes the run's checkpoint manager."""
    self.run.close()

  def _raw(self, step: int) -> dict:
    state, meta = self.run.checkpoints(read_only=True).restore_raw(step)
    return {"state": state, "meta": meta}

  def _ensure_model(self, raw_params: Mapping) -> None:
    if self._graphdef is not None:
      return
    embedding = _lookup(raw_params, ("embed", "embedding"))
    if embedding is None:
      raise ValueError(f"{self.workdir}: checkpoint has no embed/embedding parameter")
    self.model_config = model_config(self.config, int(np.shape(embedding)[0]))
    abstract = nnx.eval_shape(lambda: Transformer(self.model_config, rngs=nnx.Rngs(0)))
    self._graphdef, self._abstract = nnx.split(abstract, nnx.Param)

  @property
  def graphdef(self):
    """The model's graphdef (available after the first :meth:`load`)."""
    if self._graphdef is None:
      self.load(_checkpoint_infos(self.run)[-1].step)
    return self._graphdef

  def load(self, step: int) -> RestoredCheckpoint:
    """Restores one checkpoint.

    Args:
      step: the checkpoint step.

    Returns:
      A :class:`RestoredCheckpoint`.

    Raises:
      CheckpointError: the checkpoint is damaged (one line naming the step and file).
    """
    raw = self._raw(step)
    state, meta = raw["state"], raw["meta"]
    self._ensure_model(state["params"])
    leaves = []
    for path, var in nnx.to_flat_state(self._abstract):
      value = _lookup(state["params"], path)
      if value is None:
        raise ValueError(f"{self.workdir}: checkpoint {step} lacks parameter {path_key(path)}")
      if tuple(np.shape(value)) != tuple(var.shape):
        raise ValueError(f"{self.workdir}: checkpoint {step} parameter {path_key(path)} has shape "
                         f"{np.shape(value)}, the model expects {var.shape}")
      leaves.append((path, var.replace(jax.numpy.asarray(value))))
    params = nnx.from_flat_state(leaves)
    adam = _find_adam(state.get("opt_state"))
    nu, count = None, None
    if adam is not None:
      nu = {}
      for path, _ in leaves:
        value = _lookup(adam["nu"], path)
        if value is not None:
          nu[path_key(path)] = np.asarray(value)
      count = int(np.asarray(_unwrap(adam["count"])))
    return RestoredCheckpoint(step=int(step), learning_rate=float(meta["learning_rate"]), params=params,
                              adam_nu=nu, adam_count=count)


# ---------------------------------------------------------------------------------------------- examples


@dataclasses.dataclass(frozen=True)
class TrainingExamples:
  """The training examples (windows) of a run, in example-id order.

  Attributes:
    tokens: int32 ``[N, L]``.
    example_ids: int ``[N]`` (``arange(N)`` when built from a loader).
    work_index: int ``[N]`` index of each example's work in the run's ordered works.
  """

  tokens: np.ndarray
  example_ids: np.ndarray
  work_index: np.ndarray

  def __post_init__(self):
    n = len(self.example_ids)
    if self.tokens.ndim != 2 or self.tokens.shape[0] != n or self.work_index.shape != (n,):
      raise ValueError(f"TrainingExamples: tokens {self.tokens.shape}, example_ids {self.example_ids.shape}, "
                       f"work_index {self.work_index.shape} do not describe the same N examples")

  def __len__(self) -> int:
    return int(self.example_ids.shape[0])

  @classmethod
  def from_batches(cls, batches: Iterable[Mapping[str, Any]], *, num_examples: int | None = None):
    """Collects examples from batches (``tokens``, ``example_id``, ``work_index``; rows with ``weight`` 0 or
    ``example_id`` -1 are padding and skipped).

    Args:
      batches: e.g. ``govjax.data.loader.iterate_eval_batches(works, context=..., batch_size=..., stride=...)``.
      num_examples: stop once this many distinct ids are collected, and require ids ``0..N-1``.

    Returns:
      Examples sorted by id.
    """
    found: dict[int, tuple[np.ndarray, int]] = {}
    for batch in batches:
      ids = np.asarray(batch["example_id"]).reshape(-1)
      weight = np.asarray(batch.get("weight", np.ones(ids.shape)))
      for row, example_id in enumerate(ids):
        if example_id < 0 or weight[row] == 0:
          continue
        found.setdefault(int(example_id), (np.asarray(batch["tokens"][row]), int(batch["work_index"][row])))
      if num_examples is not None and len(found) >= num_examples:
        break
    if not found:
      raise ValueError("no training examples in the batches")
    ids = np.asarray(sorted(found), np.int64)
    if num_examples is not None and (len(ids) != num_examples or ids[-1] != num_examples - 1):
      raise ValueError(f"collected {len(ids)} distinct example ids, expected ids 0..{num_examples - 1}")
    return cls(tokens=np.stack([found[i][0] for i in ids]).astype(np.int32), example_ids=ids,
               work_index=np.asarray([found[i][1] for i in ids], np.int64))

  @classmethod
  def from_batches_by_step(cls, data: Any, *, max_steps: int | None = None):
    """Collects every example of a :class:`govjax.train.data.TrainBatches` by reading ``data.train[s]``.

    Batches are epoch permutations, so about ``N / batch_size + 1`` steps cover all ``N`` examples.
    """
    n = int(data.num_examples)
    limit = max_steps if max_steps is not None else 100 * n + 10

    def batches():
      for step in range(limit):
        yield data.train[step]

    return cls.from_batches(batches(), num_examples=n)
