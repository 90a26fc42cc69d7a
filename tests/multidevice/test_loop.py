"""`train(..., mesh=...)` on 4 fake devices equals the single-device run (governed, with checkpoints)."""

import dataclasses

import jax

from govjax.core.config import GovernanceSpec
from govjax.core.mesh import data_mesh
from govjax.train.loop import restore_model, train
from tests.multidevice.common import assert_states_close
from tests.train.synthetic import synthetic_data
from tests.train.test_loop import tiny_config


def test_data_parallel_loop_matches_single_device(tmp_path):
  config = dataclasses.replace(tiny_config(num_steps=4, checkpoint_every=2),
                               governance=GovernanceSpec(routing="depth"))
  depth = [4, 1, 2, 4]  # per synthetic work: full, surface, two groups, full
  single = train(config, tmp_path / "single", data=synthetic_data(depth=depth), progress=False)
  sharded = train(config, tmp_path / "sharded", data=synthetic_data(depth=depth), progress=False,
                  mesh=data_mesh(4))
  # Attention key biases have an exactly-zero gradient whose rounding noise Adam amplifies: bounded separately.
  assert_states_close(single.state, sharded.state, lr_bound=2 * config.num_steps * config.learning_rate)
  # The multi-device checkpoint restores on one device.
  model, _, meta = restore_model(tmp_path / "sharded")
  assert meta["step"] == 4
  leaves = jax.tree.leaves(model)
  assert all(len(x.devices()) == 1 for x in leaves if isinstance(x, jax.Array))
