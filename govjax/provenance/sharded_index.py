"""Sharded influence indexing: every device featurizes its share of the training set, every host writes an index
shard, a merge gives the index queries read.

:func:`sharded_map_examples` runs a per-example function ``fn(params, batch) -> [b, ...]`` over ``N`` examples
in chunks of ``per_device_batch`` rows per device, split along the mesh's ``data`` axis (parameters
replicated). Each process reads only the rows its devices hold (``examples`` may be memory-mapped) and gets back
those rows' results. The function must treat rows independently (per-example gradients, projections), so the
result does not depend on the number of devices.

Index shards. :func:`write_index_shard` stores one process's rows as ``shards/shard-PPPPP-of-QQQQQ.npz``
(``example_ids`` plus named arrays whose example axis is ``axis``); :func:`merge_index_shards` reads all of them,
checks that every one of the ``N`` examples appears exactly once and returns the arrays in example order.
:func:`build_sharded_index` does this for :func:`govjax.provenance.index.build_index`: the merged
:class:`~govjax.provenance.index.InfluenceIndex` equals the single-device one (queries read it as usual).

Example:
  >>> import jax.numpy as jnp, numpy as np, tempfile
  >>> from govjax.core.mesh import data_mesh
  >>> mesh = data_mesh()
  >>> x = np.arange(10, dtype=np.float32).reshape(5, 2)
  >>> rows, out = sharded_map_examples(lambda p, b: b["x"] * p, {"x": x}, mesh, params=jnp.float32(2.0))
  >>> rows.tolist(), out[:, 0].tolist()
  ([0, 1, 2, 3, 4], [0.0, 4.0, 8.0, 12.0, 16.0])
  >>> d = tempfile.mkdtemp()
  >>> _ = write_index_shard(d, 0, 1, rows, {"out": out})
  >>> merge_index_shards(d, num_examples=5)["out"][:, 1].tolist()
  [2.0, 6.0, 10.0, 14.0, 18.0]
"""

from __future__ import annotations

import inspect
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from govjax.core.mesh import DATA_AXIS, data_size, replicate, replicated
from govjax.provenance.featurize import checkpoint_preconditioner, divide_rows
from govjax.provenance.index import InfluenceIndex, dataset_fingerprint

SHARD_DIR = "shards"


def sharded_map_examples(
    fn: Callable[[Any, Mapping[str, jax.Array]], jax.Array],
    examples: Mapping[str, Any],
    mesh: Mesh,
    *,
    params: Any = None,
    per_device_batch: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
  """Applies a per-example function to ``N`` examples, data-parallel over ``mesh``.

  Args:
    fn: ``fn(params, batch) -> [b, ...]`` with every ``batch`` leaf ``[b, ...]``; rows must be independent.
    examples: dict of arrays (or array-likes supporting row slicing, e.g. memmaps) with a leading ``[N]`` axis.
    mesh: a :func:`~govjax.core.mesh.data_mesh`.
    params: replicated argument of ``fn`` (a pytree, identical on every process).
    per_device_batch: rows per device per call.

  Returns:
    ``(rows, values)``: int64 ``[n]`` example indices this process computed (ascending; all ``N`` on one host)
    and their results ``[n, ...]``.
  """
  sizes = {name: len(value) for name, value in examples.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"sharded_map_examples: example fields disagree on N: {sizes}")
  n = next(iter(sizes.values()))
  chunk = per_device_batch * data_size(mesh)
  rows_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  params = replicate(params, mesh) if params is not None else None
  jitted = jax.jit(fn, in_shardings=(replicated(mesh), rows_sharding), out_shardings=rows_sharding)
  out_rows, out_values = [], []
  for base in range(0, n, chunk):

    def read(index, field, base=base):
      rows = np.arange(base, base + chunk)[index[0]]
      rows = np.minimum(rows, n - 1)  # padding rows of the last chunk repeat the last example
      return np.asarray(examples[field][rows[0]:rows[-1] + 1])[rows - rows[0]][(slice(None),) + index[1:]]

    batch = {}
    for field, value in examples.items():
      shape = (chunk,) + tuple(np.shape(value[0:1])[1:])
      batch[field] = jax.make_array_from_callback(shape, NamedSharding(
          mesh, PartitionSpec(DATA_AXIS, *([None] * (len(shape) - 1)))), lambda index, f=field: read(index, f))
    result = jitted(params, batch)
    for shard in result.addressable_shards:
      if shard.replica_id != 0:
        continue
      rows = base + np.arange(chunk)[shard.index[0]]
      keep = rows < n
      out_rows.append(rows[keep])
      out_values.append(np.asarray(shard.data)[keep])
  if not out_rows:
    return np.zeros((0,), np.int64), np.zeros((0,), np.float32)
  rows = np.concatenate(out_rows).astype(np.int64)
  values = np.concatenate(out_values)
  order = np.argsort(rows, kind="stable")
  return rows[order], values[order]


# --------------------------------------------------------------------------------------------- shard files


def shard_path(directory: str | pathlib.Path, shard: int, num_shards: int) -> pathlib.Path:
  return pathlib.Path(directory) / SHARD_DIR / f"shard-{shard:05d}-of-{num_shards:05d}.npz"


def write_index_shard(directory: str | pathlib.Path, shard: int, num_shards: int, example_ids: np.ndarray,
                      arrays: Mapping[str, np.ndarray], *, axis: int = 0,
                      metadata: Mapping[str, Any] | None = None) -> pathlib.Path:
  """Writes one shard: ``example_ids`` ``[n]`` and ``arrays`` whose axis ``axis`` runs over those examples.

  Returns:
    The shard file's path.
  """
  if not 0 <= shard < num_shards:
    raise ValueError(f"shard {shard} outside 0..{num_shards - 1}")
  example_ids = np.asarray(example_ids, np.int64)
  for name, value in arrays.items():
    if np.shape(value)[axis] != len(example_ids):
      raise ValueError(f"index shard {shard}: array {name!r} has {np.shape(value)[axis]} rows on axis {axis}, "
                       f"expected {len(example_ids)} (one per example id)")
  path = shard_path(directory, shard, num_shards)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.npz")
  header = json.dumps({"shard": shard, "num_shards": num_shards, "axis": axis, "metadata": dict(metadata or {})})
  np.savez(tmp, example_ids=example_ids, _header=np.frombuffer(header.encode(), np.uint8),
           **{f"a_{name}": np.asarray(value) for name, value in arrays.items()})
  tmp.replace(path)
  return path


def merge_index_shards(directory: str | pathlib.Path, *, num_examples: int | None = None) -> dict[str, np.ndarray]:
  """Reads every shard of ``directory`` and returns its arrays in example order.

  Args:
    directory: where :func:`write_index_shard` wrote.
    num_examples: ``N``; when given every id in ``[0, N)`` must appear exactly once.

  Returns:
    Dict with ``example_ids`` (sorted) and each array, concatenated over shards along its example axis.

  Raises:
    FileNotFoundError: no shards, or a shard of the announced count is missing.
    ValueError: shards disagree, an example appears twice, or (with ``num_examples``) one is missing.
  """
  files = sorted((pathlib.Path(directory) / SHARD_DIR).glob("shard-*-of-*.npz"))
  if not files:
    raise FileNotFoundError(f"no index shards in {pathlib.Path(directory) / SHARD_DIR}")
  counts = {int(f.stem.split("-of-")[1]) for f in files}
  if len(counts) != 1:
    raise ValueError(f"index shards of different runs in {directory}: shard counts {sorted(counts)}")
  total = counts.pop()
  missing = [str(p) for p in (shard_path(directory, s, total) for s in range(total)) if not p.is_file()]
  if missing:
    raise FileNotFoundError(f"index shard(s) missing: {missing[:3]} ({len(missing)} of {total})")
  ids, parts, axis = [], {}, None
  for f in files:
    with np.load(f, allow_pickle=False) as data:
      header = json.loads(bytes(data["_header"]).decode())
      axis = header["axis"] if axis is None else axis
      if header["axis"] != axis:
        raise ValueError(f"{f}: example axis {header['axis']} differs from the other shards' {axis}")
      ids.append(data["example_ids"])
      names = {k[2:] for k in data.files if k.startswith("a_")}
      if parts and names != set(parts):
        raise ValueError(f"{f}: arrays {sorted(names)} differ from the other shards' {sorted(parts)}")
      for name in names:
        parts.setdefault(name, []).append(data[f"a_{name}"])
  example_ids = np.concatenate(ids)
  order = np.argsort(example_ids, kind="stable")
  example_ids = example_ids[order]
  duplicated = example_ids[1:][example_ids[1:] == example_ids[:-1]]
  if duplicated.size:
    raise ValueError(f"example id(s) {np.unique(duplicated)[:5].tolist()} appear in more than one index shard")
  if num_examples is not None:
    absent = np.setdiff1d(np.arange(num_examples), example_ids)
    if absent.size or len(example_ids) != num_examples:
      raise ValueError(f"index shards cover {len(example_ids)} examples, expected {num_examples}; missing ids "
                       f"{absent[:5].tolist()}")
  merged = {"example_ids": example_ids}
  for name, values in parts.items():
    merged[name] = np.take(np.concatenate(values, axis=axis), order, axis=axis)
  return merged


# --------------------------------------------------------------------------------------- influence index


def featurizer_fn(featurizer: Any) -> Callable[[Any, Mapping[str, jax.Array]], jax.Array]:
  """``fn((params, preconditioner, sketch), batch)`` for :func:`sharded_map_examples` from a provenance
  ``Featurizer`` (the jittable feature computation behind ``Featurizer.__call__``); ``batch`` holds the
  featurizer's inputs plus ``mask`` ``[b, G]``."""
  takes_sketch = "sketch" in inspect.signature(featurizer._features_impl).parameters

  def fn(replicated_args, batch):
    params, preconditioner, sketch = replicated_args
    inputs = {k: v for k, v in batch.items() if k != "mask"}
    if takes_sketch:
      out = featurizer._features_impl(params, inputs, batch["mask"], preconditioner, sketch)
    else:
      out = featurizer._features_impl(params, inputs, batch["mask"], preconditioner)
    return out.sum(axis=1) if out.ndim == 3 else out  # [b, G, k] per-group projections -> the feature [b, k]

  return fn


def featurizer_sketch(featurizer: Any, params: Any) -> Any:
  """The featurizer's precomputed sparse-projection arrays (None for dense projections or older featurizers)."""
  if featurizer.config.projection != "sparse" or not hasattr(featurizer, "_sketch"):
    return None
  return jax.tree.map(np.asarray, featurizer._sketch(params))


def build_sharded_index(
    featurizer: Any,
    checkpoints: Sequence[Any],
    inputs: Mapping[str, np.ndarray],
    masks: np.ndarray,
    *,
    example_work: np.ndarray,
    works: Sequence[Mapping[str, Any]],
    mesh: Mesh,
    directory: str | pathlib.Path,
    metadata: Mapping[str, Any] | None = None,
    per_device_batch: int = 16,
) -> Any:
  """:func:`govjax.provenance.index.build_index`, sharded over the devices and hosts of ``mesh``.

  Every process featurizes its rows at every checkpoint and writes ``directory/shards/shard-p-of-P.npz``; after
  a barrier, every process merges the shards (``directory`` must be on a filesystem all hosts share) into the
  :class:`~govjax.provenance.index.InfluenceIndex` the single-device ``build_index`` returns.

  Args:
    featurizer, checkpoints, inputs, masks, example_work, works, metadata: as for ``build_index``.
    mesh: the mesh.
    directory: index directory (shards go to its ``shards/`` subdirectory; the caller saves the merged index).
    per_device_batch: rows per device per call.

  Returns:
    The merged ``InfluenceIndex`` (not yet saved).
  """

  config = featurizer.config
  masks = np.asarray(masks, np.float32)
  n = len(next(iter(inputs.values())))
  if masks.shape != (len(checkpoints), n, featurizer.num_groups):
    raise ValueError(f"masks has shape {masks.shape}, expected {(len(checkpoints), n, featurizer.num_groups)} "
                     "(checkpoints, examples, groups)")
  fn = featurizer_fn(featurizer)
  rows, per_checkpoint, norms = None, [], []
  for c, ckpt in enumerate(checkpoints):
    precond = checkpoint_preconditioner(ckpt, config)
    precond = None if precond is None else {k: np.asarray(v) for k, v in precond.items()}
    args = (ckpt.params, precond, featurizer_sketch(featurizer, ckpt.params))
    rows_c, phi = sharded_map_examples(fn, {**inputs, "mask": masks[c]}, mesh, params=args,
                                       per_device_batch=per_device_batch)
    rows = rows_c if rows is None else rows
    if config.normalize:
      # Divided by the norm of the unmasked gradient (as build_index): masking keeps lowering the norm.
      _, full = sharded_map_examples(fn, {**inputs, "mask": np.ones_like(masks[c])}, mesh, params=args,
                                     per_device_batch=per_device_batch)
      norms.append(np.linalg.norm(full, axis=1))
    per_checkpoint.append(phi)
  phi = np.stack(per_checkpoint) if per_checkpoint else np.zeros((0, 0, config.k), np.float32)
  lrs = np.asarray([c.learning_rate for c in checkpoints], np.float64)
  self_influence = np.einsum("c,cn->n", lrs, np.sum(phi.astype(np.float64) ** 2, axis=2))
  if config.normalize:
    phi = np.stack([divide_rows(p, m) for p, m in zip(phi, norms, strict=True)]) if norms else phi
  write_index_shard(directory, jax.process_index(), jax.process_count(), rows,
                    {"features": phi, "self_influence": self_influence[None]}, axis=1)
  if jax.process_count() > 1:

    multihost_utils.sync_global_devices("govjax_index_shards_written")
  merged = merge_index_shards(directory, num_examples=n)
  features = merged["features"]
  example_work = np.asarray(example_work, np.int64)
  meta = dict(metadata or {})
  meta.setdefault("dataset_fingerprint", dataset_fingerprint({**inputs, "example_work": example_work}))
  meta.setdefault("num_groups", featurizer.num_groups)
  meta["index_shards"] = jax.process_count()
  return InfluenceIndex(
      features=features,
      self_influence=merged["self_influence"][0],
      learning_rates=lrs,
      steps=np.asarray([c.step for c in checkpoints], np.int64),
      example_work=example_work,
      example_depth=(masks.max(axis=0) > 0).sum(axis=1).astype(np.int64),
      works=[dict(w) for w in works],
      feature_config=config,
      metadata=meta,
  )
