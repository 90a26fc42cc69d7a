import json

import numpy as np
import pytest

from govjax.provenance.record import (
  CheckpointInfo,
  RoutingLog,
  read_checkpoints,
  read_routing_log,
  read_training_record,
  training_record,
)


def _log():
  # step 1: examples 0, 1 full mask / surface only; step 3: example 1 full; step 5: example 2 surface.
  return RoutingLog(steps=np.array([1, 3, 5]), example_id=np.array([[0, 1], [1, 1], [2, 2]]),
                    work_index=np.array([[0, 0], [0, 0], [1, 1]]),
                    mask=np.array([[[1, 1], [0, 1]], [[1, 1], [1, 1]], [[0, 1], [0, 1]]], np.float32))


def test_interval_masks_follow_the_log():
  rec = training_record(_log(), [CheckpointInfo(2, 0.1), CheckpointInfo(4, 0.1), CheckpointInfo(6, 0.05)],
                        num_examples=4)
  # checkpoint 2: example 1 trained surface only; example 2 not yet trained -> its first later mask.
  np.testing.assert_array_equal(rec.masks[0], [[1, 1], [0, 1], [0, 1], [0, 0]])
  # checkpoint 4: example 1 trained at full depth in (2, 4]; example 0 keeps its last mask.
  np.testing.assert_array_equal(rec.masks[1], [[1, 1], [1, 1], [0, 1], [0, 0]])
  np.testing.assert_array_equal(rec.occurrences[1], [0, 2, 0, 0])
  assert rec.report["never_trained"] == 1
  np.testing.assert_allclose(rec.learning_rates, [0.1, 0.1, 0.05])


def test_union_masks():
  rec = training_record(_log(), [CheckpointInfo(2, 0.1), CheckpointInfo(6, 0.1)], aggregate="union")
  np.testing.assert_array_equal(rec.masks[0], rec.masks[1])
  np.testing.assert_array_equal(rec.masks[0], [[1, 1], [1, 1], [0, 1]])


def test_routing_log_errors_name_line_and_field(tmp_path):
  path = tmp_path / "routing_log.jsonl"
  path.write_text(json.dumps({"step": 1, "example_id": [0], "mask": [[1, 1]]}) + "\n")
  with pytest.raises(ValueError, match=r"routing_log.jsonl:1: missing field 'work_index'"):
    read_routing_log(path)
  with pytest.raises(FileNotFoundError):
    read_routing_log(tmp_path / "nothing.jsonl")


def test_run_directory(tiny_run):
  infos = read_checkpoints(tiny_run.workdir)
  assert [c.step for c in infos] == [8, 16, 24]
  metrics = [json.loads(x) for x in (tiny_run.workdir / "metrics.jsonl").read_text().splitlines()]
  # the learning rate stored with checkpoint s is the schedule's value at s (that of step s + 1).
  assert infos[0].learning_rate == pytest.approx(metrics[8]["learning_rate"], rel=1e-5)
  rec = read_training_record(tiny_run.workdir)
  assert rec.masks.shape == (3, tiny_run.data.batches.num_examples, 3)
  assert rec.report["never_trained"] == 0
  depth = tiny_run.data.catalogue.per_work_depth[rec.work_index]
  np.testing.assert_array_equal(rec.masks[-1].sum(axis=1), depth)


def test_group_weights_are_the_training_normalisers_relative_to_a_plain_step():
  import jax.numpy as jnp

  from govjax.routing.transforms import group_normalisers

  log = _log()
  checkpoints = [CheckpointInfo(4, 0.1), CheckpointInfo(6, 0.1)]
  rec = training_record(log, checkpoints, normaliser="contributors")
  # Interval (0, 4]: steps 1 and 3; interval (4, 6]: step 5. Each step's factor is B * (1 / N_g) of training.
  per_step = [2 * np.asarray(group_normalisers(jnp.asarray(m), "contributors")) for m in log.mask]
  np.testing.assert_allclose(rec.group_weights[0], (per_step[0] + per_step[1]) / 2)
  np.testing.assert_allclose(rec.group_weights[1], [1.0, per_step[2][1]])  # group 0 idle in (4, 6]: weight 1
  np.testing.assert_allclose(rec.credit_masks()[0], rec.masks[0] * rec.group_weights[0])
  plain = training_record(log, checkpoints, normaliser="batch")
  assert plain.group_weights is None and np.array_equal(plain.credit_masks(), plain.masks)
  with pytest.raises(ValueError, match="normaliser must be one of"):
    training_record(log, checkpoints, normaliser="tokens")


def test_unrouted_runs_credit_every_group(tiny_run, tmp_path):
  import shutil

  copy = tmp_path / "run"
  shutil.copytree(tiny_run.workdir, copy)
  record = json.loads((copy / "config.json").read_text())
  record["config"]["governance"]["routing"] = "none"  # the same log, as a vanilla run would have written it
  (copy / "config.json").write_text(json.dumps(record))
  rec = read_training_record(copy)
  assert rec.report["routing"] == "none" and rec.group_weights is None
  assert (rec.masks == 1).all()  # the logged policy masks were never applied
  routed = read_training_record(tiny_run.workdir)
  assert routed.report["routing"] == "depth" and (routed.masks.sum(axis=2) < 3).any()
