"""Faults in a run directory: refused commands change nothing, one writer at a time, damaged checkpoints are
skipped, and a killed training resumes bitwise with each step logged once."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

from govjax.core.checkpoint import CheckpointError, CheckpointWarning
from govjax.core.config import ModelSpec, TrainConfig, from_dict
from govjax.core.rundir import ConfigMismatchError, RunDir, RunDirWarning, RunLockedError
from govjax.train.loop import restore_model, train
from tests.train.synthetic import synthetic_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 8


def tiny_config(**kw):
  base = dict(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=16), batch_size=8, num_steps=NUM_STEPS,
              learning_rate=1e-2, warmup_steps=2, eval_every=4, checkpoint_every=2, max_to_keep=3, seed=3)
  base.update(kw)
  return TrainConfig(**base)


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state))]


def snapshot(root):
  """Every file (path -> sha256) and directory under ``root``."""
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
          for p in sorted(root.rglob("*"))}


def logged_steps(workdir):
  """The step of every line of both logs, as written (duplicates included)."""
  return {name: [json.loads(line)["step"] for line in (workdir / name).read_text().splitlines()]
          for name in ("metrics.jsonl", "routing_log.jsonl")}


def assert_complete(workdir, result, straight):
  assert logged_steps(workdir) == {"metrics.jsonl": list(range(1, NUM_STEPS + 1)),
                                   "routing_log.jsonl": list(range(1, NUM_STEPS + 1))}
  assert int(result.state.step) == NUM_STEPS and not (workdir / "writer.lock").exists()
  for a, b in zip(leaves(straight), leaves(result.state), strict=True):
    np.testing.assert_array_equal(a, b)


def array_data_files(step_dir):
  """The array data Orbax wrote for a checkpoint: the OCDBT data files under ``state/`` (some of them are copies
  that a read does not touch, so the tests damage them all)."""
  return sorted(p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p))


def flip(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """The final state of the run trained straight through."""
  return train(tiny_config(), tmp_path_factory.mktemp("straight") / "run", data=synthetic_data(),
               progress=False).state


@pytest.fixture(scope="module")
def stopped_at_6(tmp_path_factory):
  """A run stopped after step 6 (checkpoints 2, 4, 6); tests damage copies of it."""
  workdir = tmp_path_factory.mktemp("stopped") / "run"
  train(tiny_config(), workdir, data=synthetic_data(), stop_at=6, progress=False)
  assert RunDir(workdir).checkpoint_steps() == [2, 4, 6]
  return workdir


def test_a_refused_resume_leaves_the_workdir_byte_identical(stopped_at_6, tmp_path):
  workdir = shutil.copytree(stopped_at_6, tmp_path / "run")
  before = snapshot(workdir)
  with pytest.raises(ConfigMismatchError, match="another config"):
    train(tiny_config(seed=4), workdir, data=synthetic_data(), progress=False)
  assert snapshot(workdir) == before
  assert from_dict(RunDir(workdir).read_config()) == tiny_config()


def test_a_damaged_newest_checkpoint_is_skipped_by_sample_and_resume(stopped_at_6, tmp_path, straight):
  workdir = shutil.copytree(stopped_at_6, tmp_path / "run")
  for path in array_data_files(workdir / "checkpoints" / "6"):
    flip(path)
  before = snapshot(workdir)
  with pytest.warns(CheckpointWarning, match=r"checkpoint 6 is (corrupt|unreadable): .*; using checkpoint 4"):
    _, config, meta = restore_model(workdir)
  assert meta["step"] == 4 and config == tiny_config()
  assert snapshot(workdir) == before  # a reader changes nothing
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = train(tiny_config(), workdir, data=synthetic_data(), progress=False)
  messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning | RunDirWarning)]
  assert len(messages) == 2 and "\n" not in messages[0]
  assert re.match(rf"checkpoint 6 is (corrupt|unreadable): {workdir}/checkpoints/6/state\S*: .*; using checkpoint 4",
                  messages[0])
  assert messages[1] == f"{workdir}: moved damaged checkpoint 6 to {workdir}/checkpoints.corrupt/6"
  assert result.steps_run == 4
  assert_complete(workdir, result, straight)
  assert RunDir(workdir).checkpoint_steps() == [4, 6, 8]
  assert (workdir / "checkpoints.corrupt" / "6" / "state").is_dir()


@pytest.mark.parametrize("name", ["meta/metadata", "state/_METADATA"])
def test_a_deleted_checkpoint_file_is_named(stopped_at_6, tmp_path, name):
  workdir = shutil.copytree(stopped_at_6, tmp_path / "run")
  (workdir / "checkpoints" / "6" / name).unlink()
  with pytest.warns(CheckpointWarning, match=rf"checkpoint 6 is incomplete: {workdir}/checkpoints/6/{name} is "
                                             "missing; using checkpoint 4"):
    assert restore_model(workdir)[2]["step"] == 4
  with pytest.raises(CheckpointError, match=rf"^checkpoint 6 is incomplete: .*6/{name} is missing$"):
    restore_model(workdir, step=6)


def test_no_intact_checkpoint_refuses_with_the_command_that_recovers(stopped_at_6, tmp_path, straight):
  workdir = shutil.copytree(stopped_at_6, tmp_path / "run")
  for step in (2, 4, 6):
    flip(workdir / "checkpoints" / str(step) / "meta" / "metadata")
  before = snapshot(workdir)
  with pytest.raises(CheckpointError, match="no intact checkpoint") as error:
    train(tiny_config(), workdir, data=synthetic_data(), progress=False)
  assert snapshot(workdir) == before
  message = str(error.value)
  assert "\n" not in message and all(f"checkpoint {s} is corrupt" in message for s in (2, 4, 6))
  with pytest.raises(CheckpointError, match="no intact checkpoint"):
    restore_model(workdir)
  command = re.search(r"`mv (\S+) (\S+)`", message)
  assert command and command.group(1) == str(workdir / "checkpoints")
  os.rename(command.group(1), command.group(2))  # what the command does
  result = train(tiny_config(), workdir, data=synthetic_data(), progress=False)
  assert result.steps_run == NUM_STEPS
  assert_complete(workdir, result, straight)


CHILD = """
import json, os, signal, sys
from govjax.core.config import from_dict
from govjax.train.loop import train
from tests.train.synthetic import synthetic_data

def kill(step, *_):
  if step == int(sys.argv[3]):
    os.kill(os.getpid(), signal.SIGKILL)

train(from_dict(json.loads(sys.argv[2])), sys.argv[1], data=synthetic_data(), progress=False, on_step=kill)
"""


def test_a_killed_training_resumes_bitwise_with_each_step_logged_once(tmp_path, straight):
  workdir = tmp_path / "run"
  config = tiny_config()
  child = subprocess.run([sys.executable, "-c", CHILD, str(workdir), json.dumps(config.to_dict()), "7"], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=600)
  assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
  # Killed during step 7: its lock is left behind, and the logs run past the newest finished checkpoint.
  assert json.loads((workdir / "writer.lock").read_text())["pid"] != os.getpid()
  logged = logged_steps(workdir)
  assert max(logged["routing_log.jsonl"]) == 7 and max(RunDir(workdir).checkpoint_steps()) <= 6
  with pytest.warns(RunDirWarning, match="removed a stale writer lock .* no longer running"):
    result = train(config, workdir, data=synthetic_data(), progress=False)
  assert_complete(workdir, result, straight)


def test_a_second_writer_fails_at_once_and_an_exception_after_a_save_resumes(tmp_path, straight):
  workdir = tmp_path / "run"
  refused = []

  def second_writer_then_fail(step, *_):
    if step == 1:  # a second training of another config in the same workdir, while the first one runs
      with pytest.raises(RunLockedError, match=rf"writer.lock: another training .*pid {os.getpid()} on "):
        train(tiny_config(seed=4), workdir, data=synthetic_data(), progress=False)
      refused.append(step)
    if step == 5:
      raise RuntimeError("injected after the save of step 4")

  with pytest.raises(RuntimeError, match="injected"):
    train(tiny_config(), workdir, data=synthetic_data(), progress=False, on_step=second_writer_then_fail)
  assert refused == [1] and from_dict(RunDir(workdir).read_config()) == tiny_config()
  assert not (workdir / "writer.lock").exists()  # released on the way out
  assert logged_steps(workdir) == {"metrics.jsonl": [1, 2, 3, 4], "routing_log.jsonl": [1, 2, 3, 4, 5]}
  assert RunDir(workdir).checkpoint_steps() == [2, 4]
  result = train(tiny_config(), workdir, data=synthetic_data(), progress=False)
  assert result.steps_run == 4
  assert_complete(workdir, result, straight)
