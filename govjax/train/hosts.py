"""Several hosts: ``jax.distributed`` start-up, per-host data loading, checkpoints of a multi-device run.

Start-up. :func:`initialize_distributed` takes the coordinator address, process count and process id from its
arguments or from ``GOVJAX_COORDINATOR`` / ``GOVJAX_NUM_PROCESSES`` / ``GOVJAX_PROCESS_ID``; with none of them
it lets ``jax.distributed.initialize()`` detect the cluster (TPU pod slices, SLURM, Open MPI). It selects the gloo
CPU collectives first, so the same code forms a multi-process mesh of CPU devices (tests, laptops).

Per-host data loading. The training batches are random access by step (``ds[s]`` is the global batch of step
``s``, a pure function of ``(data, seed, s)``), so hosts need no coordination to agree on the data: process ``p``
of ``P`` takes rows ``[p * B / P, (p + 1) * B / P)`` of the global batch of step ``s`` (the rows its devices
hold in the mesh, :func:`govjax.core.mesh.process_rows`) and passes them to
:func:`govjax.core.mesh.shard_batch`. :func:`host_train_dataset` builds this with grain from the works so a
host reads (windows) only its rows: its element ``s`` equals rows ``[p * b, (p + 1) * b)`` of
``make_train_dataset(...)[s]``. :class:`HostBatches` slices any random-access global dataset (e.g.
``TrainBatches.train``) the same way. The prepared TFDS data source is shared (same files, e.g. on a network
filesystem or copied to every host); every host builds the same window table from it.

Checkpoints. Every process calls :meth:`govjax.core.checkpoint.Checkpoints.save` with the state, replicated or
sharded (Orbax writes each array, or each shard, once and coordinates the processes);
:func:`restore_on_one_device` reads such a checkpoint back onto a single device (e.g. for evaluation on a laptop)
and :func:`restore_on_mesh` onto a mesh, replicated or sharded.

Example:
  >>> import numpy as np
  >>> class Global:
  ...   def __getitem__(self, step):
  ...     return {"tokens": np.arange(8).reshape(4, 2) + 100 * step, "example_id": np.arange(4)}
  >>> HostBatches(Global(), process_index=1, process_count=2)[3]["example_id"].tolist()
  [2, 3]
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding

from govjax.core.checkpoint import Checkpoints
from govjax.core.mesh import replicated
from govjax.data.loader import _WindowLookup, as_work, build_window_table

ENV_COORDINATOR = "GOVJAX_COORDINATOR"
ENV_NUM_PROCESSES = "GOVJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "GOVJAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
  text = os.environ.get(name)
  if text in (None, ""):
    return None
  try:
    return int(text)
  except ValueError as error:
    raise ValueError(f"environment variable {name}={text!r} is not an integer") from error


def distributed_settings(coordinator_address: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None) -> dict:
  """The ``jax.distributed.initialize`` settings: arguments first, then the ``GOVJAX_*`` environment.

  Returns:
    Dict with ``coordinator_address``, ``num_processes``, ``process_id`` (None where unset: auto-detected).
  """
  settings = {
      "coordinator_address": coordinator_address or os.environ.get(ENV_COORDINATOR) or None,
      "num_processes": num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES),
      "process_id": process_id if process_id is not None else _env_int(ENV_PROCESS_ID),
  }
  n, i = settings["num_processes"], settings["process_id"]
  if n is not None and n < 1:
    raise ValueError(f"num_processes must be positive, got {n}")
  if n is not None and i is not None and not 0 <= i < n:
    raise ValueError(f"process_id {i} outside 0..{n - 1}")
  return settings


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, **kwargs: Any) -> dict:
  """Joins this process to the job (call before any other JAX work).

  Args:
    coordinator_address: ``host:port`` of process 0 (default ``$GOVJAX_COORDINATOR``).
    num_processes: number of processes (default ``$GOVJAX_NUM_PROCESSES``).
    process_id: this process's id (default ``$GOVJAX_PROCESS_ID``).
    **kwargs: passed on to ``jax.distributed.initialize`` (e.g. ``local_device_ids``, timeouts).

  Returns:
    Dict with the settings used plus ``process_index``, ``process_count``, ``local_devices``, ``devices``.
  """
  settings = distributed_settings(coordinator_address, num_processes, process_id)
  # CPU devices need a collectives backend to talk across processes; GPUs/TPUs ignore this setting.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**{k: v for k, v in settings.items() if v is not None}, **kwargs)
  return {**settings, "process_index": jax.process_index(), "process_count": jax.process_count(),
          "local_devices": jax.local_device_count(), "devices": jax.device_count()}


def host_rows(global_batch_size: int, process_index: int, process_count: int) -> tuple[int, int]:
  """``(start, stop)``: the contiguous block of a global batch that process ``process_index`` loads."""
  if global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by {process_count} processes")
  local = global_batch_size // process_count
  return process_index * local, (process_index + 1) * local


class HostBatches:
  """This process's rows of every global batch of a random-access dataset.

  Args:
    dataset: ``dataset[s]`` -> dict of ``[B, ...]`` arrays (the global batch of step ``s``).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).
  """

  def __init__(self, dataset: Any, *, process_index: int | None = None, process_count: int | None = None):
    self.dataset = dataset
    self.process_index = jax.process_index() if process_index is None else int(process_index)
    self.process_count = jax.process_count() if process_count is None else int(process_count)

  def __getitem__(self, step: int) -> dict:
    batch = self.dataset[step]
    size = len(next(iter(batch.values())))
    start, stop = host_rows(size, self.process_index, self.process_count)
    return {name: np.asarray(value)[start:stop] for name, value in batch.items()}


class _Strided:
  """Element ``s`` of a host's dataset is element ``s * count + index`` of the per-host-batched dataset."""

  def __init__(self, batched: Any, index: int, count: int):
    self._batched, self._index, self._count = batched, index, count

  def __getitem__(self, step: int) -> dict:
    return self._batched[int(step) * self._count + self._index]


def host_train_dataset(works: Sequence[Any], *, context: int, global_batch_size: int, seed: int,
                       stride: int | None = None, process_index: int | None = None,
                       process_count: int | None = None) -> Any:
  """This process's share of :func:`govjax.data.loader.make_train_dataset`, reading only its own windows.

  The global dataset shuffles the windows, repeats them and cuts the stream into batches of ``B``; batching the
  same stream into host batches of ``B / P`` makes host batch ``s * P + p`` exactly rows
  ``[p * B / P, (p + 1) * B / P)`` of global batch ``s``.

  Args:
    works: the ordered training works (``work_index`` refers to this order).
    context, seed, stride: as for ``make_train_dataset``.
    global_batch_size: ``B`` (divisible by the process count).
    process_index, process_count: default ``jax.process_index()`` / ``jax.process_count()``.

  Returns:
    Random access by step: ``ds[s]`` -> dict ``tokens`` ``[B / P, context]``, ``example_id``, ``work_index``.
  """
  import grain  # noqa: PLC0415 (grain imports JAX, which corpus-parsing workers do not need)


  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  start, stop = host_rows(global_batch_size, index, count)
  works = [as_work(w) for w in works]
  table = build_window_table(works, context=context, stride=stride)
  batched = (grain.MapDataset.range(len(table)).shuffle(seed=seed).repeat()
             .map(_WindowLookup(works, table)).batch(stop - start))
  return _Strided(batched, index, count)


# ------------------------------------------------------------------------------------------ checkpoints


def single_device_like(state: Any, device: jax.Device | None = None) -> Any:
  """Abstract arrays shaped like ``state`` placed on one device (the restore target on a single machine)."""
  sharding = SingleDeviceSharding(device or jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), state)


def mesh_like(state: Any, mesh: Mesh, shardings: Any = None) -> Any:
  """Abstract arrays shaped like ``state`` on ``mesh`` (the restore target of a multi-device run).

  Args:
    state: a pytree with the right structure, shapes and dtypes.
    mesh: the mesh.
    shardings: a pytree of shardings shaped like ``state`` (e.g. from
      :func:`govjax.train.sharding.state_shardings`); replicated when None.
  """
  if shardings is None:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=replicated(mesh)), state)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings)


def restore_on_one_device(directory: str | pathlib.Path, like: Any, *, step: int | None = None,
                          device: jax.Device | None = None) -> tuple[Any, Mapping]:
  """Restores a checkpoint (e.g. written by a multi-device or multi-host run) onto a single device.

  Args:
    directory: the ``checkpoints/`` directory.
    like: a state with the right structure, shapes and dtypes (e.g. from ``create_train_state``).
    step: which checkpoint (latest when None).
    device: target device (default: this process's first).

  Returns:
    ``(state, meta)``.
  """
  with Checkpoints(directory, max_to_keep=None, read_only=True) as ckpts:
    return ckpts.restore(single_device_like(like, device), step=step)


def restore_on_mesh(directory: str | pathlib.Path, like: Any, mesh: Mesh, *, step: int | None = None,
                    shardings: Any = None) -> tuple[Any, Mapping]:
  """Restores a checkpoint onto ``mesh`` (resuming a multi-device run; every process calls it).

  The layout is ``shardings`` (e.g. FSDP, :func:`govjax.train.sharding.state_shardings`; each process reads only
  its slices) or replicated when None, whatever layout the checkpoint was written from.
  """
  with Checkpoints(directory, max_to_keep=None, read_only=True) as ckpts:
    return ckpts.restore(mesh_like(like, mesh, shardings), step=step)
