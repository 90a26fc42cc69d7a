"""Orbax checkpoints of the train state with per-checkpoint JSON metadata.

Each checkpoint holds two items: ``state`` (the :class:`~govjax.train.step.TrainState` pytree) and ``meta`` (JSON:
step, learning rate at that step, config hash, the config itself, and whatever the caller adds, e.g. the routing
log's location). Saves are asynchronous; :meth:`Checkpoints.close` (or ``wait``) waits for them.

Example:
  >>> import tempfile, jax.numpy as jnp
  >>> from govjax.core.config import TrainConfig, ModelSpec
  >>> from govjax.train.step import create_train_state
  >>> cfg = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=8))
  >>> graphdef, state, tx, schedule = create_train_state(cfg, vocab_size=10)
  >>> with Checkpoints(tempfile.mkdtemp(), max_to_keep=2) as ckpts:
  ...   ckpts.save(state, {"step": 0})
  ...   ckpts.wait()
  ...   restored, meta = ckpts.restore(state)
  >>> meta["step"], bool(jnp.all(restored.rng == state.rng))
  (0, True)
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpoints:
  """A thin wrapper over ``ocp.CheckpointManager`` for (state, meta) pairs.

  Args:
    directory: where checkpoints live (created if missing).
    max_to_keep: how many to keep (None keeps all; provenance needs several).
    keep_period: additionally keep every checkpoint whose step is a multiple of this.
  """

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int | None = 5, keep_period: int | None = None):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, keep_period=keep_period, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def __enter__(self) -> Checkpoints:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def all_steps(self) -> list[int]:
    """Steps that have a finished checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, state: Any, meta: dict, *, step: int | None = None) -> None:
    """Starts an asynchronous save of ``state`` with JSON ``meta`` at ``step`` (default ``meta['step']``)."""
    step = int(meta["step"] if step is None else step)
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )

  def restore(self, like: Any, *, step: int | None = None) -> tuple[Any, dict]:
    """Restores the state (shaped like ``like``: a concrete or abstract pytree) and meta.

    Args:
      like: a pytree with the target structure, shapes, dtypes (and shardings).
      step: which checkpoint; the latest when None.

    Returns:
      ``(state, meta)``.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    )
    return out.state, dict(out.meta)

  def meta(self, step: int) -> dict:
    """Reads only the JSON metadata of a checkpoint."""
    out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out.meta)

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
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
