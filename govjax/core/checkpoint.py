"""Orbax checkpoints of the train state with per-checkpoint JSON metadata, verified when they are read.

Each checkpoint holds two items: ``state`` (the :class:`~govjax.train.step.TrainState` pytree) and ``meta`` (JSON:
step, learning rate at that step, config hash, and whatever the caller adds, e.g. the routing log's location).
Saves are asynchronous; :meth:`Checkpoints.close` (or ``wait``) waits for them.

Every save also records a checksum of each array of the state in the meta (``state_sha256``); every restore checks
the metadata files Orbax reads, translates Orbax / TensorStore failures and compares the restored arrays with those
checksums, so a damaged checkpoint is never used silently: it raises :class:`CheckpointError`, one line naming the
step and the file (``checkpoint 4 is corrupt: runs/x/checkpoints/4/meta/metadata: not valid JSON ...``).
:meth:`Checkpoints.restore_newest_intact` falls back to the newest intact checkpoint with a warning.

With ``read_only=True`` the manager never creates, cleans up or deletes anything (for readers of a run).

Example:
  >>> import tempfile, jax.numpy as jnp
  >>> from govjax.core.config import TrainConfig, ModelSpec
  >>> from govjax.train.step import create_train_state
  >>> cfg = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=8))
  >>> graphdef, state, tx, schedule = create_train_state(cfg, vocab_size=10)
  >>> directory = tempfile.mkdtemp()
  >>> with Checkpoints(directory, max_to_keep=2) as ckpts:
  ...   ckpts.save(state, {"step": 0})
  ...   ckpts.wait()
  ...   restored, meta = ckpts.restore(state)
  >>> meta["step"], bool(jnp.all(restored.rng == state.rng))
  (0, True)
  >>> with Checkpoints(directory, read_only=True) as view:
  ...   view.all_steps(), view.meta(0)
  ([0], {'step': 0})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from govjax.core.errors import RunDirError
from govjax.core.trees import path_key

__all__ = ["DIGEST_KEY", "CheckpointError", "CheckpointParams", "CheckpointWarning", "Checkpoints",
           "NoCheckpointError", "state_digest"]

DIGEST_KEY = "state_sha256"
# JSON files Orbax writes in a step directory (relative paths; the glob patterns may match several files).
_JSON_FILES = {"meta": ("_CHECKPOINT_METADATA", "meta/metadata"),
               "state": ("state/_METADATA", "state/_sharding", "state/array_metadatas/*")}
_REQUIRED = {"meta": ("meta/metadata",), "state": ("state/_METADATA", "state/manifest.ocdbt")}


class _DropReadOnlyNotice(logging.Filter):
  """Orbax logs a warning for every read-only manager; for govjax's readers that is the normal case."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Given directory is read only")


class CheckpointError(RunDirError):
  """A checkpoint that cannot be used: a file is missing, unreadable or does not match the checksums saved with it.

  Attributes:
    step: the checkpoint's step (None when the error is about the whole directory).
    path: the file or directory at fault.
  """

  def __init__(self, message: str, *, step: int | None = None, path: str | os.PathLike | None = None):
    super().__init__(message)
    self.step = step
    self.path = None if path is None else pathlib.Path(path)


class NoCheckpointError(RunDirError, FileNotFoundError):
  """The checkpoint directory is missing or holds no finished checkpoint (also a ``FileNotFoundError``)."""


class CheckpointWarning(UserWarning):
  """A damaged checkpoint was skipped in favour of an older, intact one."""


def _host_array(leaf: Any) -> np.ndarray | None:
  """The value of a leaf as a NumPy array on this host; None when this process holds only part of it."""
  if isinstance(leaf, jax.Array):
    if leaf.is_fully_addressable:
      return np.asarray(leaf)
    if leaf.is_fully_replicated:
      return np.asarray(leaf.addressable_data(0))
    return None
  return np.asarray(leaf)


def state_digest(tree: Any) -> dict[str, str]:
  """Checksums of a pytree's arrays: ``{path: sha256 of dtype, shape and bytes (16 hex digits)}``.

  Paths are :func:`govjax.core.trees.path_key` strings, the same for a typed state and for the nested dicts Orbax
  restores without a target. Arrays this process holds only a part of are left out.

  Args:
    tree: a pytree of arrays.

  Returns:
    The checksums.

  Example:
    >>> import numpy as np
    >>> digest = state_digest({"w": np.zeros(3, np.float32), "b": [np.ones(2)]})
    >>> sorted(digest), len(digest["w"])
    (['b/0', 'w'], 16)
  """
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    value = _host_array(leaf)
    if value is None:
      continue
    sha = hashlib.sha256(f"{value.dtype.name}{tuple(value.shape)}".encode())
    sha.update(np.ascontiguousarray(value).tobytes())
    out[path_key(path)] = sha.hexdigest()[:16]
  return out


def _is_abandoned_read_callback(unraisable: Any) -> bool:
  """Whether an unraisable exception is a TensorStore read completing after Orbax closed its event loop."""
  error = getattr(unraisable, "exc_value", None)
  if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
    return False
  tb = getattr(unraisable, "exc_traceback", None)
  while tb is not None:
    if tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
      return True
    tb = tb.tb_next
  return False


def _quiet_abandoned_reads() -> None:
  """Keeps the noise of a failed restore off stderr.

  When one array of a checkpoint cannot be read, Orbax stops and closes its event loop while TensorStore still
  completes the other reads; each completion then tries to wake the closed loop and Python prints it as an
  unraisable ``RuntimeError: Event loop is closed`` (one traceback per array, hiding the one-line error). This
  wraps ``sys.unraisablehook`` (once) to drop exactly those and pass everything else on.
  """
  previous = sys.unraisablehook
  if getattr(previous, "govjax_quiet_abandoned_reads", False):
    return

  def hook(unraisable):
    if not _is_abandoned_read_callback(unraisable):
      previous(unraisable)

  hook.govjax_quiet_abandoned_reads = True
  sys.unraisablehook = hook


def _error_chain(error: BaseException) -> list[BaseException]:
  chain, seen = [], set()
  while error is not None and id(error) not in seen:
    chain.append(error)
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return chain


def _describe(error: BaseException, fallback: pathlib.Path) -> tuple[pathlib.Path, str]:
  """The file and a one-line reason for an Orbax / TensorStore failure (whose own messages span many lines)."""
  chain = _error_chain(error)
  for item in chain:
    line = str(item).strip().split("\n")[0].split(" [tensorstore_spec")[0]
    files = re.findall(r'local file "([^"]+)"', line)
    if not files:
      continue
    code = re.match(r"([A-Z_]+): ", line)
    key = re.search(r'Error reading "([^"]+)"', line)
    detail = line.rsplit(f'local file "{files[-1]}"', 1)[1].lstrip(": ").strip()
    notes = [code.group(1)] if code else []
    if key:
      notes.append(f"reading array {key.group(1).rsplit('/', 1)[0].replace('.', '/')}")
    reason = (detail[:200] or ("missing" if code and code.group(1) == "NOT_FOUND" else "unreadable"))
    reason += f" ({', '.join(notes)})" if notes else ""
    return pathlib.Path(files[-1]), reason
  last = chain[-1]
  line = str(last).strip().split("\n")[0][:200]
  return fallback, f"{type(last).__name__}: {line}" if line else type(last).__name__


class Checkpoints:
  """A thin wrapper over ``ocp.CheckpointManager`` for (state, meta) pairs, with integrity checks.

  Args:
    directory: where checkpoints live (created if missing, unless ``read_only``).
    max_to_keep: how many to keep (None keeps all; provenance needs several).
    keep_period: additionally keep every checkpoint whose step is a multiple of this.
    read_only: never create, clean up or delete anything (``save`` raises); for readers of a run.
  """

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int | None = 5, keep_period: int | None = None,
               read_only: bool = False):
    self.directory = pathlib.Path(directory).absolute()
    self.read_only = bool(read_only)
    if self.read_only:
      options = ocp.CheckpointManagerOptions(create=False, read_only=True, save_interval_steps=0)
    else:
      options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, keep_period=keep_period, create=True)
    quiet, absl_logger = _DropReadOnlyNotice(), logging.getLogger("absl")
    absl_logger.addFilter(quiet)
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
    finally:
      absl_logger.removeFilter(quiet)

  def __enter__(self) -> Checkpoints:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
      return
    try:  # do not let a failing close hide the error that is already on its way out
      self.close()
    except Exception:
      pass

  def all_steps(self) -> list[int]:
    """Steps that have a finished checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def step_dir(self, step: int) -> pathlib.Path:
    """The directory of one checkpoint."""
    return self.directory / str(int(step))

  def save(self, state: Any, meta: dict, *, step: int | None = None) -> None:
    """Starts an asynchronous save of ``state`` with JSON ``meta`` at ``step`` (default ``meta['step']``).

    The meta saved also holds the checksums of the state's arrays (:func:`state_digest`).
    """
    if self.read_only:
      raise RunDirError(f"{self.directory}: opened read-only; cannot save checkpoint {step}")
    step = int(meta["step"] if step is None else step)
    meta = {**meta, DIGEST_KEY: state_digest(state)}
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )

  def check_files(self, step: int, items: tuple[str, ...] = ("state", "meta")) -> None:
    """Checks that the files Orbax reads for ``items`` of checkpoint ``step`` are present and parse.

    Raises:
      CheckpointError: naming the step and the first missing or malformed file.
    """
    root = self.step_dir(step)
    for item in items:
      for name in _REQUIRED[item]:
        if not (root / name).is_file():
          raise CheckpointError(f"checkpoint {step} is incomplete: {root / name} is missing", step=step,
                                path=root / name)
      for pattern in _JSON_FILES[item]:
        for path in sorted(root.glob(pattern)):
          try:
            json.loads(path.read_bytes().decode("utf-8"))
          except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"checkpoint {step} is corrupt: {path}: not valid JSON ({error})", step=step,
                                  path=path) from error
          except OSError as error:
            raise CheckpointError(f"checkpoint {step} is unreadable: {path}: {error.strerror}", step=step,
                                  path=path) from error

  def _read(self, step: int, args: Mapping[str, Any]) -> Any:
    """``manager.restore`` of ``args`` (item name -> restore args), failures as :class:`CheckpointError`."""
    self.check_files(step, tuple(args))
    _quiet_abandoned_reads()
    try:
      return self._manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as error:  # Orbax and TensorStore raise many types; all mean "unreadable"
      path, reason = _describe(error, self.step_dir(step))
      raise CheckpointError(f"checkpoint {step} is unreadable: {path}: {reason}", step=step, path=path) from error

  def _verify(self, step: int, tree: Any, meta: dict) -> dict:
    """Compares ``tree`` with the checksums saved in ``meta``; returns ``meta`` without them."""
    meta = dict(meta)
    expected = meta.pop(DIGEST_KEY, None)
    if expected:
      actual = state_digest(tree)
      for key, value in expected.items():
        if key in actual and actual[key] != value:
          state_dir = self.step_dir(step) / "state"
          raise CheckpointError(
              f"checkpoint {step} is corrupt: {state_dir}: array {key} does not match the checksum saved with it "
              f"in {self.step_dir(step) / 'meta' / 'metadata'}", step=step, path=state_dir)
    return meta

  def _step_or_latest(self, step: int | None) -> int:
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise NoCheckpointError(f"no checkpoint in {self.directory}")
    if step not in self._manager.all_steps():
      raise NoCheckpointError(f"no checkpoint {step} in {self.directory} (it holds {self.all_steps()})")
    return step

  def restore(self, like: Any, *, step: int | None = None) -> tuple[Any, dict]:
    """Restores the state (shaped like ``like``: a concrete or abstract pytree) and meta, verified.

    Args:
      like: a pytree with the target structure, shapes, dtypes (and shardings).
      step: which checkpoint; the latest when None.

    Returns:
      ``(state, meta)``.

    Raises:
      NoCheckpointError: no such checkpoint.
      CheckpointError: the checkpoint is damaged (one line naming the step and file).
    """
    step = self._step_or_latest(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self._read(step, {"state": ocp.args.StandardRestore(abstract), "meta": ocp.args.JsonRestore()})
    return out.state, self._verify(step, out.state, dict(out.meta))

  def restore_raw(self, step: int | None = None) -> tuple[Any, dict]:
    """Restores a checkpoint without a target (nested dicts of arrays, as saved) and its meta, verified."""
    step = self._step_or_latest(step)
    out = self._read(step, {"state": ocp.args.StandardRestore(), "meta": ocp.args.JsonRestore()})
    return out.state, self._verify(step, out.state, dict(out.meta))

  def restore_newest_intact(self, like: Any = None, *, like_from_meta: Callable[[dict], Any] | None = None,
                            recovery: str | None = None) -> tuple[Any, dict, list[CheckpointError]]:
    """Restores the newest checkpoint that is intact, warning about each newer damaged one it skips.

    Args:
      like: the target pytree (see :meth:`restore`).
      like_from_meta: instead of ``like``, a function of a checkpoint's meta giving its target.
      recovery: what to tell the user when no checkpoint is intact (default: move the directory aside and train
        again).

    Returns:
      ``(state, meta, faults)``: ``faults`` are the errors of the newer checkpoints that were skipped.

    Raises:
      NoCheckpointError: there is no checkpoint at all.
      CheckpointError: none is intact (one line listing each step's fault and the command that recovers).
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise NoCheckpointError(f"no checkpoint in {self.directory}")
    faults: list[CheckpointError] = []
    for step in steps:
      try:
        target = like_from_meta(self.meta(step)) if like_from_meta is not None else like
        state, meta = self.restore(target, step=step)
      except CheckpointError as fault:
        faults.append(fault)
        continue
      for fault in faults:
        warnings.warn(f"{fault}; using checkpoint {step}, the newest intact one", CheckpointWarning, stacklevel=2)
      return state, meta, faults
    if recovery is None:
      aside = f"{self.directory}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
      recovery = (f"to start over from step 0, move them aside with `mv {self.directory} {aside}` and run the "
                  "same `govjax train` command again")
    raise CheckpointError(f"no intact checkpoint in {self.directory}: " + "; ".join(str(f) for f in faults)
                          + f"; {recovery}", path=self.directory)

  def meta(self, step: int) -> dict:
    """Reads only the JSON metadata of a checkpoint (without the state checksums)."""
    step = self._step_or_latest(step)
    out = self._read(step, {"meta": ocp.args.JsonRestore()})
    meta = out.meta
    if not isinstance(meta, Mapping):
      path = self.step_dir(step) / "meta" / "metadata"
      raise CheckpointError(f"checkpoint {step} is corrupt: {path}: not a JSON object", step=step, path=path)
    meta = dict(meta)
    meta.pop(DIGEST_KEY, None)
    return meta

  def set_aside(self, step: int, target: str | pathlib.Path) -> pathlib.Path:
    """Moves a (damaged) checkpoint out of the managed directory, to ``target``; returns where it went.

    Every process of a multi-process job calls it; process 0 moves the files.
    """
    if self.read_only:
      raise RunDirError(f"{self.directory}: opened read-only; cannot move checkpoint {step} aside")
    self._manager.wait_until_finished()
    target = pathlib.Path(target)
    if jax.process_index() == 0:
      base, suffix = target, 0
      while target.exists():
        suffix += 1
        target = base.with_name(f"{base.name}~{suffix}")
      target.parent.mkdir(parents=True, exist_ok=True)
      os.replace(self.step_dir(step), target)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes(f"govjax_set_aside_{step}")
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      self._manager.wait_until_finished()
    finally:
      self._manager.close()


@dataclasses.dataclass(frozen=True)
class CheckpointParams:
  """One checkpoint as featurizing needs it.

  Attributes:
    step: the checkpoint's step.
    learning_rate: its learning rate (the TracIn weight).
    params: the model parameters (whatever the featurizer's graphdef merges with).
    adam_nu: ``{path: array}`` Adam second moment (for preconditioned influence features); or None.
    adam_count: Adam's step count (bias correction), or None.
  """

  step: int
  learning_rate: float
  params: Any
  adam_nu: Mapping[str, np.ndarray] | None = None
  adam_count: int | None = None
