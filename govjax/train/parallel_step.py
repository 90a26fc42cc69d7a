"""The governed train step, data-parallel over a device mesh (state replicated or sharded), equal to one device.

:func:`sharded_train_step` wraps :func:`govjax.train.step.make_train_step` (the same loss, optimizer chain and
step plugins) in a ``jax.jit`` with shardings: the batch and its ``[B, G]`` group mask are split along the mesh's
``data`` axis, the metrics are replicated, and the train state (parameters, optimizer state, plugin state in
``extras``) is replicated or, with ``param_sharding="fsdp"``, split over the mesh (:mod:`govjax.train.sharding`:
each device holds a slice; XLA gathers a parameter where it is used and reduce-scatters its gradient).
XLA's partitioner turns the batch-mean loss into per-device partial sums plus an all-reduce of the gradient, so
the update is the one the single-device step computes for the same global batch (up to the order of
floating-point additions). Per-example plugin state (keyed by ``example_id``) is updated from the gathered
per-example results of the whole global batch, so every device and every host holds the same copy.

On several hosts every process calls the step with the same replicated state and only its own rows of the batch
(see :mod:`govjax.train.hosts`); the returned metrics are replicated and readable on every process.

Example:
  >>> import jax, numpy as np
  >>> from govjax.core.mesh import data_mesh
  >>> from govjax.core.config import TrainConfig, ModelSpec
  >>> from govjax.train.step import create_train_state, plain_loss
  >>> cfg = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=8), num_steps=2)
  >>> graphdef, state, tx, _ = create_train_state(cfg, vocab_size=10)
  >>> mesh = data_mesh()
  >>> step = sharded_train_step(graphdef, tx, plain_loss, (), mesh)
  >>> state = place_state(state, mesh)
  >>> batch = {"tokens": np.ones((4, 8), np.int32), "example_id": np.arange(4, dtype=np.int32)}
  >>> state, metrics = step(state, batch, np.ones((4, 3), np.float32))
  >>> int(state.step), metrics["per_example_loss"].shape
  (1, (4,))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from govjax.core.mesh import DATA_AXIS, data_mesh, place, replicate, replicated, shard_batch, shard_rows
from govjax.train.gradients import GradientStrategy
from govjax.train.sharding import MIN_ELEMENTS, state_shardings
from govjax.train.step import LossFn, StepPlugin, TrainState, make_train_step, plain_loss


def place_state(state: TrainState, mesh: Mesh, param_sharding: str = "replicated", *,
                min_elements: int = MIN_ELEMENTS) -> TrainState:
  """Puts a train state (identical on every process) on the mesh, replicated or sharded.

  Args:
    state: a :class:`~govjax.train.step.TrainState` (host or single-device arrays).
    mesh: the mesh.
    param_sharding: ``"replicated"`` or ``"fsdp"`` (parameters, optimizer and plugin state split over the mesh,
      see :mod:`govjax.train.sharding`).
    min_elements: leaves with fewer elements stay replicated under ``"fsdp"``.

  Returns:
    The state with every leaf a global ``jax.Array`` laid out as :func:`~govjax.train.sharding.state_shardings`
    says.
  """
  if param_sharding == "replicated":
    return replicate(state, mesh)
  return place(state, state_shardings(state, mesh, param_sharding, min_elements=min_elements))


def _on_mesh(x: Any, mesh: Mesh) -> bool:
  return isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh


def _as_global_rows(x: Any, mesh: Mesh) -> Any:
  """Batch pytrees: arrays already on the mesh pass through, host arrays are this process's rows."""
  if isinstance(x, dict):
    if all(_on_mesh(v, mesh) for v in x.values()):
      return x
    return shard_batch({k: np.asarray(v) for k, v in x.items()}, mesh)
  if _on_mesh(x, mesh):
    return x
  return shard_rows(np.asarray(x, np.float32), mesh)


def sharded_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn = plain_loss,
    plugins: Sequence[StepPlugin] = (),
    mesh: Mesh | None = None,
    *,
    gradients: GradientStrategy | None = None,
    donate: bool = True,
    state_like: TrainState | None = None,
    param_sharding: str = "replicated",
    min_elements: int = MIN_ELEMENTS,
) -> Callable[[TrainState, Any, Any], tuple[TrainState, dict]]:
  """Builds ``step(state, batch, group_mask) -> (state, metrics)`` running data-parallel on ``mesh``.

  Args:
    graphdef: from ``create_train_state``.
    tx: the optimizer chain (called with ``group_mask=``).
    loss_fn: ``loss_fn(model, batch, group_mask, rng) -> (loss, aux)`` (as for ``make_train_step``).
    plugins: step plugins; their state in ``state.extras`` stays replicated.
    mesh: a :func:`~govjax.core.mesh.data_mesh` (all devices when None).
    gradients: the gradient strategy (:mod:`govjax.train.gradients`; batch gradients when None): DP-SGD and the
      exact router run data-parallel like every other method.
    donate: donate the input state's buffers.
    state_like: a train state (concrete or abstract) whose structure gives the state's shardings; needed with
      ``param_sharding="fsdp"``.
    param_sharding: ``"replicated"`` or ``"fsdp"`` (:mod:`govjax.train.sharding`): the layout of parameters,
      optimizer and plugin state, kept from step to step.
    min_elements: leaves with fewer elements stay replicated under ``"fsdp"`` (as for :func:`place_state`).

  Returns:
    The step. ``state`` must be on the mesh with the same layout (:func:`place_state`); ``batch`` (dict of ``[B, ...]``)
    and ``group_mask`` ``[B, G]`` may be global arrays from :func:`~govjax.core.mesh.shard_batch` or host
    arrays holding this process's rows (the whole batch on one host). Metrics are those of ``make_train_step``,
    replicated (``per_example_loss`` and ``group_mask`` cover the global batch).
  """
  if mesh is None:

    mesh = data_mesh()
  inner = make_train_step(graphdef, tx, loss_fn, gradients=gradients, plugins=plugins, donate=False)
  rows = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  same = replicated(mesh)
  if param_sharding == "replicated":
    layout = same
  elif state_like is None:
    raise ValueError(f"sharded_train_step: param_sharding={param_sharding!r} needs state_like (the train state or "
                     "its abstract shapes) to lay the state out")
  else:
    layout = state_shardings(state_like, mesh, param_sharding, min_elements=min_elements)

  def step(state: TrainState, batch: dict, group_mask: jax.Array) -> tuple[TrainState, dict]:
    return inner(state, batch, group_mask)

  jitted = jax.jit(step, in_shardings=(layout, rows, rows), out_shardings=(layout, same),
                   donate_argnums=(0,) if donate else ())

  def run(state: TrainState, batch: Any, group_mask: Any) -> tuple[TrainState, dict]:
    batch = _as_global_rows(dict(batch), mesh)
    group_mask = _as_global_rows(group_mask, mesh)
    rows_in_batch = {v.shape[0] for v in batch.values()}
    if rows_in_batch != {group_mask.shape[0]}:
      raise ValueError(f"group_mask has {group_mask.shape[0]} rows but the batch fields have {rows_in_batch}")
    return jitted(state, batch, group_mask)

  run.jitted = jitted
  run.mesh = mesh
  run.state_shardings = layout
  return run
