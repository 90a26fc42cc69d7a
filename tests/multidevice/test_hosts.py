import jax
import numpy as np
import pytest

from govjax.core.checkpoint import Checkpoints
from govjax.core.mesh import data_mesh, process_rows
from govjax.train.hosts import (
  HostBatches,
  distributed_settings,
  host_train_dataset,
  restore_on_mesh,
  restore_on_one_device,
)
from govjax.train.parallel_step import place_state, sharded_train_step
from govjax.train.step import create_train_state
from tests.multidevice.common import AdaptiveDepthPlugin, tiny_config, tiny_data


def test_checkpoint_of_4_device_run_restores_on_one_device(tmp_path):
  config = tiny_config()
  data = tiny_data()
  plugin = AdaptiveDepthPlugin(num_groups=3)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size,
                                              extras={plugin.name: plugin.init(data.batches.num_examples)})
  mesh = data_mesh(4)
  step = sharded_train_step(graphdef, tx, plugins=(plugin,), mesh=mesh)
  par = place_state(state, mesh)
  for s in range(2):
    par, _ = step(par, data.batches.train[s], data.batches.group_mask(data.batches.train[s]))
  with Checkpoints(tmp_path / "ckpt") as ckpts:
    ckpts.save(par, {"step": 2})
  device = jax.devices()[3]
  restored, meta = restore_on_one_device(tmp_path / "ckpt", state, device=device)
  assert meta["step"] == 2
  for a, b in zip(jax.tree.leaves(par), jax.tree.leaves(restored), strict=True):
    assert b.sharding.device_set == {device}
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  again, _ = restore_on_mesh(tmp_path / "ckpt", state, mesh)
  assert all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 4 for x in jax.tree.leaves(again))


def test_host_slices_reassemble_the_global_batch():
  data = tiny_data()
  hosts = [HostBatches(data.batches.train, process_index=p, process_count=2) for p in range(2)]
  for s in (0, 5):
    glued = {k: np.concatenate([h[s][k] for h in hosts]) for k in data.batches.train[s]}
    for k, v in data.batches.train[s].items():
      np.testing.assert_array_equal(glued[k], v)
  assert process_rows(data_mesh(4), 8) == (0, 8)  # one process holds every row


def test_grain_host_dataset_reads_its_rows_of_make_train_dataset():
  from govjax.data.loader import make_train_dataset

  rng = np.random.default_rng(0)
  works = [{"work_id": f"w{i}", "title": "", "composer": "", "collection": "", "source_path": "", "sha256": "",
            "key": "", "tokens": rng.integers(3, 60, size=4 * (8 + 3 * i)).astype(np.int32),
            "length": 4 * (8 + 3 * i)} for i in range(5)]
  full = make_train_dataset(works, context=16, batch_size=6, seed=4, stride=8)
  per_host = [host_train_dataset(works, context=16, global_batch_size=6, seed=4, stride=8, process_index=p,
                                 process_count=3) for p in range(3)]
  for s in (0, 1, 7):
    for k, v in full[s].items():
      np.testing.assert_array_equal(np.concatenate([h[s][k] for h in per_host]), v)


def test_distributed_settings_from_env(monkeypatch):
  monkeypatch.setenv("GOVJAX_COORDINATOR", "10.0.0.1:1234")
  monkeypatch.setenv("GOVJAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("GOVJAX_PROCESS_ID", "2")
  assert distributed_settings() == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 2}
  assert distributed_settings(process_id=0)["process_id"] == 0
  monkeypatch.setenv("GOVJAX_PROCESS_ID", "x")
  with pytest.raises(ValueError, match="GOVJAX_PROCESS_ID"):
    distributed_settings()
  with pytest.raises(ValueError, match="outside"):
    distributed_settings(num_processes=2, process_id=2)
