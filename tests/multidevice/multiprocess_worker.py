"""One process of a two-process test: ``python -m tests.multidevice.multiprocess_worker PORT ID OUT [LAYOUT]``.

Joins a 2-process CPU job (gloo collectives), loads only its half of every global batch, trains a few governed
steps with the sharded step and (process 0) writes the final state to ``OUT``. ``LAYOUT`` is ``replicated`` (the
default: one device per process, the state whole on both) or ``fsdp`` (the process is started with 2 fake CPU
devices: 4 in all, parameters, optimizer and plugin state split over all of them, each process holding only its
devices' slices; the state is gathered across processes before it is written). A ``+probe`` suffix trains with the
memorization probe (its default signal, the memorization gap) instead of the test plugin, calibrated before every
step on the validation batches as the training loop does.
"""

from __future__ import annotations

import sys

STEPS = 3
FSDP_MIN_ELEMENTS = 64  # the tiny model's leaves are small: shard everything but norms and biases


def main(port: str, process_id: str, out: str, layout: str = "replicated") -> None:
  from govjax.train.hosts import initialize_distributed

  info = initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id),
                                initialization_timeout=60)
  import jax
  import numpy as np

  from govjax.core.mesh import data_mesh, gather_to_host, process_rows, to_host
  from govjax.train.hosts import HostBatches
  from govjax.train.loop import calibrate_plugins
  from govjax.train.parallel_step import place_state, sharded_train_step
  from govjax.train.step import create_train_state
  from tests.multidevice.common import probe_config, step_plugins, tiny_data

  layout, _, probe = layout.partition("+")
  local_devices = 2 if layout == "fsdp" else 1
  assert info["process_count"] == 2 and jax.device_count() == 2 * local_devices, info
  config = probe_config(bool(probe))
  data = tiny_data()
  components, plugins = step_plugins(config)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size, tx=components.tx,
                                              extras={p.name: p.init(data.batches.num_examples) for p in plugins})
  mesh = data_mesh()
  assert process_rows(mesh, config.batch_size) == (4 * int(process_id), 4 * int(process_id) + 4)
  local = HostBatches(data.batches.train)
  kwargs = {} if layout == "replicated" else {"state_like": state, "param_sharding": layout,
                                               "min_elements": FSDP_MIN_ELEMENTS}
  step = sharded_train_step(graphdef, tx, components.loss_fn, plugins, mesh, **kwargs)
  state = place_state(state, mesh, layout, min_elements=FSDP_MIN_ELEMENTS)
  if layout == "fsdp":  # really split across the processes: no process can read a sharded kernel on its own
    assert any(not x.is_fully_addressable and not x.is_fully_replicated for x in jax.tree.leaves(state.params))
  losses = []
  for s in range(STEPS):
    if probe:
      state = state._replace(extras=calibrate_plugins(plugins, state.extras, graphdef, state.params, data.batches,
                                                      s, max_batches=2))
    batch = local[s]
    state, metrics = step(state, batch, data.batches.group_mask(batch))
    losses.append(float(to_host(metrics["loss"])))
  host = to_host(state) if layout == "replicated" else gather_to_host(state, mesh)
  if int(process_id) == 0:
    leaves = jax.tree.leaves(host)
    np.savez(out, losses=np.asarray(losses), **{f"leaf{i}": x for i, x in enumerate(leaves)})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:5])
