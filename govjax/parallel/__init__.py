"""Data-parallel governed training and sharded influence indexing on JAX's own sharding and distributed runtime.

- :mod:`govjax.parallel.mesh`: the device mesh (``data`` axis, room for ``model``) and sharding helpers.
- :mod:`govjax.parallel.step`: the sharded governed train step (equal to the single-device step).
- :mod:`govjax.parallel.hosts`: ``jax.distributed`` start-up, per-host data loading, checkpoint helpers.
- :mod:`govjax.parallel.index`: per-example feature maps sharded over devices/hosts, index shard files and merging.
"""
