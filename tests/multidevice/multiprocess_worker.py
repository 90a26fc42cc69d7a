"""One process of the two-process test: ``python -m tests.multidevice.multiprocess_worker PORT ID OUT``.

Joins a 2-process CPU job (gloo collectives), loads only its half of every global batch, trains a few governed
steps with the sharded step and (process 0) writes the final state to ``OUT``.
"""

from __future__ import annotations

import sys

STEPS = 3


def main(port: str, process_id: str, out: str) -> None:
  from govjax.train.hosts import initialize_distributed

  info = initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id),
                                initialization_timeout=60)
  import jax
  import numpy as np

  from govjax.core.mesh import data_mesh, process_rows, to_host
  from govjax.train.hosts import HostBatches
  from govjax.train.parallel_step import place_state, sharded_train_step
  from govjax.train.step import create_train_state
  from tests.multidevice.common import AdaptiveDepthPlugin, governed_components, tiny_config, tiny_data

  assert info["process_count"] == 2 and jax.device_count() == 2, info
  config = tiny_config()
  data = tiny_data()
  components = governed_components(config)
  plugin = AdaptiveDepthPlugin(num_groups=3)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size, tx=components.tx,
                                              extras={plugin.name: plugin.init(data.batches.num_examples)})
  mesh = data_mesh()
  assert process_rows(mesh, config.batch_size) == (4 * int(process_id), 4 * int(process_id) + 4)
  local = HostBatches(data.batches.train)
  step = sharded_train_step(graphdef, tx, components.loss_fn, (plugin,), mesh)
  state = place_state(state, mesh)
  losses = []
  for s in range(STEPS):
    batch = local[s]
    state, metrics = step(state, batch, data.batches.group_mask(batch))
    losses.append(float(to_host(metrics["loss"])))
  host = to_host(state)
  if int(process_id) == 0:
    leaves = jax.tree.leaves(host)
    np.savez(out, losses=np.asarray(losses), **{f"leaf{i}": x for i, x in enumerate(leaves)})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:4])
