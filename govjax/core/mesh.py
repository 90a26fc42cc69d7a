"""The device mesh and how govjax's arrays are laid out on it.

A :func:`data_mesh` has two named axes: ``data`` (data parallelism: batches, their ``[B, G]`` group masks and
per-example metadata are split along it) and ``model`` (size 1 unless asked: with parameter sharding a second
dimension of large parameters is split along it). Parameters, optimizer state and the per-example plugin state
(e.g. the adaptive depth, keyed by ``example_id``) are either replicated (every device holds the same copy) or
sharded FSDP-style (:mod:`govjax.train.sharding`); :func:`place` puts a host pytree on the mesh with any
shardings. Either way a step's update to the per-example state is computed from the gathered per-example results
of the whole global batch, which keeps every device and every host consistent.

The mesh uses ``AxisType.Auto`` axes, so the existing single-device step code runs unchanged under ``jax.jit``
with shardings and XLA's partitioner inserts the collectives (the gradient all-reduce, the gathers).

Multi-host: every process passes only its own rows to :func:`shard_batch` (``jax.make_array_from_process_local_
data``); :func:`process_rows` says which rows of the global batch those are (a contiguous block per process).

Example:
  >>> import numpy as np
  >>> mesh = data_mesh(1)
  >>> dict(mesh.shape)
  {'data': 1, 'model': 1}
  >>> batch = shard_batch({"tokens": np.ones((4, 8), np.int32)}, mesh)
  >>> batch["tokens"].shape, batch["tokens"].sharding.spec
  ((4, 8), P('data', None))
  >>> process_rows(mesh, 4)
  (0, 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
MODEL_AXIS = "model"


def data_mesh(num_devices: int | None = None, *, model_parallel: int = 1, devices=None) -> Mesh:
  """A ``(data, model)`` mesh over the first ``num_devices`` devices (all of them, on all hosts, when None).

  Args:
    num_devices: devices to use; must divide evenly by ``model_parallel``.
    model_parallel: size of the ``model`` axis (1: pure data parallelism).
    devices: explicit device list (default ``jax.devices()``, which spans every process).

  Returns:
    A ``jax.sharding.Mesh`` with axis names ``("data", "model")`` and ``AxisType.Auto`` axes.
  """
  devices = list(jax.devices() if devices is None else devices)
  num_devices = len(devices) if num_devices is None else int(num_devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"data_mesh: num_devices={num_devices} but {len(devices)} device(s) are available")
  if model_parallel < 1 or num_devices % model_parallel:
    raise ValueError(f"data_mesh: model_parallel={model_parallel} does not divide num_devices={num_devices}")
  return jax.make_mesh(
      (num_devices // model_parallel, model_parallel),
      (DATA_AXIS, MODEL_AXIS),
      axis_types=(jax.sharding.AxisType.Auto,) * 2,
      devices=devices[:num_devices],
  )


def data_size(mesh: Mesh) -> int:
  """Number of data-parallel shards."""
  return int(mesh.shape[DATA_AXIS])


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of a value every device holds whole (params, optimizer and plugin state, metrics)."""
  return NamedSharding(mesh, PartitionSpec())


def data_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Split the leading (example) axis of an ``ndim``-dimensional array along ``data``."""
  if ndim < 1:
    return replicated(mesh)
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS, *([None] * (ndim - 1))))


def batch_shardings(mesh: Mesh, batch: Any) -> Any:
  """A pytree of shardings for a batch pytree (every leaf ``[B, ...]``, split along ``data``)."""
  return jax.tree.map(lambda x: data_sharding(mesh, np.ndim(x)), batch)


def replicated_shardings(mesh: Mesh, tree: Any) -> Any:
  """A pytree of replicated shardings shaped like ``tree``."""
  return jax.tree.map(lambda _: replicated(mesh), tree)


def process_rows(mesh: Mesh, global_batch_size: int) -> tuple[int, int]:
  """``(start, stop)``: the rows of a global batch whose data lives on this process's devices.

  Args:
    mesh: the mesh.
    global_batch_size: ``B``; must divide by the ``data`` axis size.

  Returns:
    The contiguous block of rows this process loads (all rows on a single host).
  """
  _check_divisible(mesh, global_batch_size, "batch")
  sharding = data_sharding(mesh, 1)
  spans = sorted({(idx[0].start or 0, global_batch_size if idx[0].stop is None else idx[0].stop)
                  for idx in sharding.addressable_devices_indices_map((global_batch_size,)).values()})
  start, stop = spans[0][0], spans[0][1]
  for lo, hi in spans[1:]:
    if lo != stop:
      raise ValueError(f"this process's devices hold non-contiguous rows {spans}; build the mesh with "
                       "devices ordered by process (the default)")
    stop = hi
  return int(start), int(stop)


def _check_divisible(mesh: Mesh, size: int, what: str) -> None:
  shards = data_size(mesh)
  if size % shards:
    raise ValueError(f"{what} size {size} is not divisible by the mesh's data axis ({shards} devices); "
                     f"use a global batch size that is a multiple of {shards}")


def shard_batch(local_batch: Mapping[str, Any], mesh: Mesh, *, global_batch_size: int | None = None) -> dict:
  """Puts this process's rows of a batch onto the mesh as global arrays split along ``data``.

  Args:
    local_batch: dict of arrays ``[b, ...]``: the whole batch on a single host, this process's rows
      (:func:`process_rows`) on several.
    mesh: the mesh.
    global_batch_size: ``B`` (default ``b * process_count``).

  Returns:
    Dict of ``jax.Array`` ``[B, ...]`` sharded along ``data``.
  """
  out = {}
  sizes = {name: np.shape(value)[0] if np.ndim(value) else None for name, value in local_batch.items()}
  local = {s for s in sizes.values() if s is not None}
  if len(local) != 1:
    raise ValueError(f"shard_batch: batch fields disagree on the batch size: {sizes}")
  b = local.pop()
  total = b * jax.process_count() if global_batch_size is None else int(global_batch_size)
  _check_divisible(mesh, total, "global batch")
  for name, value in local_batch.items():
    value = np.asarray(value)
    if value.ndim == 0:
      raise ValueError(f"shard_batch: field {name!r} is a scalar; batch fields must be [B, ...]")
    out[name] = jax.make_array_from_process_local_data(data_sharding(mesh, value.ndim), value,
                                                       (total,) + value.shape[1:])
  return out


def shard_rows(array: Any, mesh: Mesh, *, global_batch_size: int | None = None) -> jax.Array:
  """:func:`shard_batch` for a single array (e.g. the ``[B, G]`` group mask)."""
  return shard_batch({"x": array}, mesh, global_batch_size=global_batch_size)["x"]


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (identical on every process) on every device of the mesh.

  Works across hosts: each process fills only its own devices from its (identical) host copy.
  """
  return place(tree, replicated_shardings(mesh, tree))


def place(tree: Any, shardings: Any) -> Any:
  """Places a pytree (identical on every process) on a mesh with one sharding per leaf.

  Works across hosts: each process fills only its own devices, each with its slice of the (identical) host copy,
  so a sharded leaf never exists whole on any device. Arrays already spread over several processes are resharded
  with ``jax.device_put``.

  Args:
    tree: pytree of host or single-device arrays (or global arrays).
    shardings: pytree of ``NamedSharding`` shaped like ``tree``.

  Returns:
    The pytree of global ``jax.Array``.
  """

  def put(x, sharding):
    if isinstance(x, jax.Array) and x.is_fully_addressable is False:
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree, shardings)


def to_host(tree: Any) -> Any:
  """A pytree of replicated (or fully addressable) arrays as numpy, on any process."""

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.is_fully_replicated:
        raise ValueError("to_host: array is split across processes; gather it first (output it replicated, or "
                         "use gather_to_host)")
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)

  return jax.tree.map(get, tree)


def array_to_host(x: Any) -> np.ndarray:
  """One array, however it is laid out, as a whole numpy array on every process.

  An array split across processes is first gathered on its own mesh (a collective: every process must call this
  at the same point, as the training loop's calibrations do); replicated or process-local arrays are read
  directly.

  Args:
    x: a ``jax.Array`` (with a :class:`NamedSharding` when it is split across processes) or anything numpy reads.

  Returns:
    The whole array.

  Example:
    >>> array_to_host(jax.numpy.arange(3)).tolist()
    [0, 1, 2]
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
    if not isinstance(x.sharding, NamedSharding):
      raise ValueError(f"array_to_host: cannot gather an array with sharding {x.sharding!r} across processes")
    x = jax.device_put(x, NamedSharding(x.sharding.mesh, PartitionSpec()))
  return to_host(x)


def gather_to_host(tree: Any, mesh: Mesh) -> Any:
  """A pytree of arrays laid out in any way on ``mesh`` (sharded across processes too) as whole numpy arrays.

  Every process calls it (the gather is a collective); use it for small trees or tests, since each process then
  holds the whole tree.
  """
  return to_host(jax.device_put(tree, replicated_shardings(mesh, tree)))
