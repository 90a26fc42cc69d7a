"""Where the train state lives on a mesh: replicated, or sharded FSDP-style so a device holds only a slice.

``param_sharding="replicated"`` keeps parameters, optimizer state and plugin state (e.g. the probe's per-example
state) whole on every device: plain data parallelism, capped by one device's memory. ``"fsdp"`` splits every large
leaf of the same three parts along the mesh: one dimension over the ``data`` axis and, on a 2-D ``data x model``
mesh, another over the ``model`` axis. The rule is per leaf and generic (no per-layer table to keep in sync): a
leaf of at least ``min_elements`` elements is split along its largest dimension that the axis size divides; smaller
leaves, scalars (step, Adam's count) and the RNG key stay replicated. Adam's moments have their parameter's shape
and so its sharding. The train step is the same ``jax.jit`` with these shardings as its state's in and out
shardings (:func:`govjax.train.parallel_step.sharded_train_step`); on ``AxisType.Auto`` axes XLA gathers each
parameter where it is used and reduce-scatters its gradient, so the update equals the replicated (and the
single-device) one up to the order of float additions.

:func:`state_bytes_per_device` counts the bytes one device holds from the shardings of abstract arrays
(:func:`abstract_train_state` uses ``jax.eval_shape``), so the per-device footprint of a 1B-parameter config is
known without allocating it, on any machine (an ``AbstractMesh`` needs no devices).

Example:
  >>> import jax, numpy as np
  >>> mesh = jax.sharding.AbstractMesh((4, 1), ("data", "model"))
  >>> leaf_spec((512, 128), mesh), leaf_spec((3,), mesh), leaf_spec((130, 16), mesh, min_elements=1)
  (P('data',), P(), P(None, 'data'))
  >>> leaf_spec((512, 128), jax.sharding.AbstractMesh((2, 2), ("data", "model")))
  P('data', 'model')
  >>> tree = {"w": jax.ShapeDtypeStruct((512, 128), np.float32), "b": jax.ShapeDtypeStruct((128,), np.float32)}
  >>> tree_bytes_per_device(tree, tree_shardings(tree, mesh, "fsdp"))
  66048
  >>> tree_bytes_per_device(tree, tree_shardings(tree, mesh, "replicated"))
  262656
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from govjax.core.config import TrainConfig
from govjax.core.mesh import DATA_AXIS, MODEL_AXIS
from govjax.train.step import TrainState, create_train_state

__all__ = ["PARAM_SHARDINGS", "MIN_ELEMENTS", "abstract_train_state", "leaf_spec", "state_bytes_per_device",
           "state_shardings", "tree_bytes_per_device", "tree_shardings"]

PARAM_SHARDINGS = ("replicated", "fsdp")
MIN_ELEMENTS = 1024  # leaves below this many elements stay replicated (norm scales, biases: gathering costs more)


def _axis_size(mesh: Any, name: str) -> int:
  return int(dict(mesh.shape).get(name, 1))


def leaf_spec(shape: tuple[int, ...], mesh: Any, *, min_elements: int = MIN_ELEMENTS) -> PartitionSpec:
  """The FSDP partition of one array: its largest dimension divisible by an axis size is split along that axis.

  Args:
    shape: the array's shape.
    mesh: a ``Mesh`` or ``AbstractMesh`` with axes ``data`` and (optionally) ``model``.
    min_elements: arrays with fewer elements stay replicated.

  Returns:
    A ``PartitionSpec``: ``data`` on one dimension, ``model`` (when its size is above 1) on another; empty
    (replicated) for small arrays or when no dimension divides.
  """
  shape = tuple(int(d) for d in shape)
  if not shape or int(np.prod(shape)) < min_elements:
    return PartitionSpec()
  spec: list[Any] = [None] * len(shape)
  for axis in (DATA_AXIS, MODEL_AXIS):
    size = _axis_size(mesh, axis)
    if size <= 1:
      continue
    free = [d for d in range(len(shape)) if spec[d] is None and shape[d] % size == 0]
    if free:
      spec[max(free, key=lambda d: (shape[d], -d))] = axis
  while spec and spec[-1] is None:
    spec.pop()
  return PartitionSpec(*spec)


def tree_shardings(tree: Any, mesh: Any, mode: str = "fsdp", *, min_elements: int = MIN_ELEMENTS) -> Any:
  """A pytree of ``NamedSharding`` for the array leaves of ``tree`` (arrays or ``ShapeDtypeStruct``).

  Args:
    tree: pytree of arrays.
    mesh: the mesh (``Mesh`` or ``AbstractMesh``).
    mode: ``"fsdp"`` (:func:`leaf_spec` per leaf) or ``"replicated"``.
    min_elements: see :func:`leaf_spec`.

  Returns:
    The shardings, shaped like ``tree``.
  """
  if mode not in PARAM_SHARDINGS:
    raise ValueError(f"param_sharding must be one of {PARAM_SHARDINGS}, got {mode!r}")
  if mode == "replicated":
    return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree)
  return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), mesh, min_elements=min_elements)), tree)


def state_shardings(state: TrainState, mesh: Any, mode: str = "fsdp", *, min_elements: int = MIN_ELEMENTS
                    ) -> TrainState:
  """Shardings of a :class:`~govjax.train.step.TrainState`: ``step`` and ``rng`` replicated; ``params``,
  ``opt_state`` and ``extras`` (plugin state, e.g. the probe's per-example arrays) by ``mode``.

  Args:
    state: a train state (concrete or abstract).
    mesh: the mesh.
    mode: ``"replicated"`` or ``"fsdp"``.
    min_elements: see :func:`leaf_spec`.

  Returns:
    A ``TrainState`` of ``NamedSharding``.
  """
  same = NamedSharding(mesh, PartitionSpec())
  shard = lambda tree: tree_shardings(tree, mesh, mode, min_elements=min_elements)  # noqa: E731
  return TrainState(step=same, params=shard(state.params), opt_state=shard(state.opt_state), rng=same,
                    extras=shard(state.extras))


def tree_bytes_per_device(tree: Any, shardings: Any) -> int:
  """Bytes the most loaded device holds of ``tree`` laid out with ``shardings`` (from shapes only)."""
  total = 0
  for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
    shape = sharding.shard_shape(tuple(np.shape(leaf)))
    total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def abstract_train_state(config: TrainConfig, *, vocab_size: int, extras: dict | None = None,
                         tx: Any = None) -> TrainState:
  """The train state of ``config`` as ``jax.ShapeDtypeStruct`` leaves: no memory, so any size can be planned.

  Args:
    config: the training config (model shape, optimizer).
    vocab_size: tokenizer vocabulary size.
    extras: initial ``TrainState.extras`` (arrays or abstract arrays).
    tx: the optimizer chain (e.g. ``governance_components(config).tx``); ``make_optimizer(config)`` when None.

  Returns:
    A ``TrainState`` of ``ShapeDtypeStruct``.
  """
  return jax.eval_shape(lambda e: create_train_state(config, vocab_size=vocab_size, extras=e, tx=tx)[1],
                        extras or {})


def state_bytes_per_device(state: TrainState, mesh: Any, mode: str, *, min_elements: int = MIN_ELEMENTS) -> dict:
  """Per-device bytes of a train state laid out by ``mode`` on ``mesh``.

  Args:
    state: a train state (concrete or from :func:`abstract_train_state`).
    mesh: a ``Mesh`` or ``AbstractMesh``.
    mode: ``"replicated"`` or ``"fsdp"``.
    min_elements: see :func:`leaf_spec`.

  Returns:
    Dict ``params``, ``opt_state``, ``extras`` and ``total`` (bytes on the most loaded device).
  """
  shardings = state_shardings(state, mesh, mode, min_elements=min_elements)
  out = {part: tree_bytes_per_device(getattr(state, part), getattr(shardings, part))
         for part in ("params", "opt_state", "extras")}
  out["total"] = sum(out.values()) + tree_bytes_per_device((state.step, state.rng), (shardings.step, shardings.rng))
  return out
