"""Damaged checkpoints are reported in one line naming the step and file, never used silently."""

import asyncio
import shutil
import sys
import types

import numpy as np
import pytest

from govjax.core.checkpoint import CheckpointError, Checkpoints, CheckpointWarning, NoCheckpointError


def _tree(scale):
  rng = np.random.default_rng(0)
  return {"w": (scale * rng.normal(size=(64, 64))).astype(np.float32), "b": np.full(16, scale, np.float32),
          "step": np.asarray(scale, np.int32)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """Checkpoints 1 and 2 of different values (kept pristine; tests damage copies)."""
  directory = tmp_path_factory.mktemp("ckpt") / "checkpoints"
  with Checkpoints(directory, max_to_keep=None) as ckpts:
    ckpts.save(_tree(1), {"step": 1})
    ckpts.save(_tree(2), {"step": 2})
  return directory


def _copy(saved, tmp_path):
  return shutil.copytree(saved, tmp_path / "checkpoints")


def _array_data_file(step_dir):
  """The largest file Orbax wrote under ``state/`` for the arrays (OCDBT data)."""
  return max((p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)),
             key=lambda p: p.stat().st_size)


def _flip(path, at=0.5):
  data = bytearray(path.read_bytes())
  data[int(len(data) * at)] ^= 0xFF
  path.write_bytes(bytes(data))


def _restore_fails(directory, step=2):
  with Checkpoints(directory, read_only=True) as view:
    with pytest.raises(CheckpointError) as error:
      view.restore(_tree(0), step=step)
  message = str(error.value)
  assert "\n" not in message and message.startswith(f"checkpoint {step} is ")
  assert error.value.step == step
  return message


def test_intact_checkpoints_restore_exactly(saved):
  with Checkpoints(saved, read_only=True) as view:
    state, meta = view.restore(_tree(0), step=2)
  assert meta == {"step": 2}  # the checksums stay inside
  for key, value in _tree(2).items():
    np.testing.assert_array_equal(np.asarray(state[key]), value)


@pytest.mark.parametrize("name", ["meta/metadata", "state/_METADATA", "state/manifest.ocdbt", "_CHECKPOINT_METADATA"])
def test_flipped_metadata_names_the_file(saved, tmp_path, name):
  directory = _copy(saved, tmp_path)
  _flip(directory / "2" / name)
  message = _restore_fails(directory)
  assert str(directory / "2" / name) in message


def test_flipped_array_data_is_caught(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  data_file = _array_data_file(directory / "2")
  for at in (0.3, 0.5, 0.7):
    _flip(data_file, at)
    message = _restore_fails(directory)
    # TensorStore's own checks name the file; values that decode but differ fail the saved checksums.
    assert str(data_file) in message or "w does not match the checksum" in message, message


def test_values_that_differ_from_the_saved_checksums(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  shutil.copy(directory / "1" / "meta" / "metadata", directory / "2" / "meta" / "metadata")
  message = _restore_fails(directory)
  assert f"{directory / '2' / 'state'}: array b does not match the checksum saved with it in " in message


@pytest.mark.parametrize("name", ["meta/metadata", "state/_METADATA", "array data"])
def test_deleted_file(saved, tmp_path, name):
  directory = _copy(saved, tmp_path)
  path = _array_data_file(directory / "2") if name == "array data" else directory / "2" / name
  path.unlink()
  message = _restore_fails(directory)
  assert str(path if name != "array data" else directory / "2" / "state") in message


def test_falls_back_to_the_newest_intact_checkpoint(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  _flip(directory / "2" / "meta" / "metadata")
  with Checkpoints(directory, read_only=True) as view:
    with pytest.warns(CheckpointWarning, match=r"checkpoint 2 is corrupt: .*metadata.*; using checkpoint 1"):
      state, meta, faults = view.restore_newest_intact(_tree(0))
  assert meta["step"] == 1 and [f.step for f in faults] == [2]
  np.testing.assert_array_equal(np.asarray(state["w"]), _tree(1)["w"])


def test_no_intact_checkpoint_gives_the_command_that_recovers(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  (directory / "1" / "state" / "_METADATA").unlink()
  _flip(_array_data_file(directory / "2"))
  with Checkpoints(directory, read_only=True) as view, pytest.raises(CheckpointError) as error:
    view.restore_newest_intact(_tree(0))
  message = str(error.value)
  assert "\n" not in message and message.startswith(f"no intact checkpoint in {directory}: checkpoint 2 is ")
  assert "checkpoint 1 is incomplete" in message and f"`mv {directory} {directory}.corrupt-" in message
  with Checkpoints(tmp_path / "empty", read_only=True) as view, pytest.raises(NoCheckpointError):
    view.restore_newest_intact(_tree(0))
  assert not (tmp_path / "empty").exists()


def test_set_aside_moves_a_damaged_checkpoint_so_its_step_can_be_saved_again(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  with Checkpoints(directory, max_to_keep=None) as ckpts:
    target = ckpts.set_aside(2, tmp_path / "aside" / "2")
    assert ckpts.all_steps() == [1] and (target / "meta" / "metadata").is_file()
    ckpts.save(_tree(3), {"step": 2})
    ckpts.wait()
    state, _ = ckpts.restore(_tree(0), step=2)
  np.testing.assert_array_equal(np.asarray(state["b"]), _tree(3)["b"])


def _unraisable(error):
  return types.SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=error.__traceback__,
                               err_msg=None, object=None)


def test_a_failed_restore_prints_one_line_not_the_abandoned_reads(saved, tmp_path, monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  directory = _copy(saved, tmp_path)
  for path in (directory / "2" / "state").rglob("*"):
    if path.is_file() and "/d/" in str(path):
      _flip(path)
  _restore_fails(directory)
  # TensorStore reads completing after Orbax closed its event loop: dropped; any other unraisable error: reported.
  loop = asyncio.new_event_loop()
  loop.close()
  with pytest.raises(RuntimeError, match="Event loop is closed") as closed:
    loop.call_soon_threadsafe(print)
  sys.unraisablehook(_unraisable(closed.value))
  other = RuntimeError("Event loop is closed")
  sys.unraisablehook(_unraisable(other))
  assert [u.exc_value for u in seen if "Event loop is closed" in str(u.exc_value)] == [other]
