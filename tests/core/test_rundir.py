"""The run directory: records written atomically and only when asked, logs holding each step once, one writer."""

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from govjax.core.checkpoint import Checkpoints
from govjax.core.errors import RunDirError
from govjax.core.rundir import (
  ConfigMismatchError,
  NotARunError,
  RunDir,
  RunDirWarning,
  RunFileError,
  RunLockedError,
  WriterLock,
  read_step_log,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def snapshot(root):
  """Every file (path -> sha256) and directory under ``root``."""
  out = {}
  for path in sorted(root.rglob("*")):
    key = str(path.relative_to(root))
    out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
  return out


def test_record_round_trip_written_atomically_and_only_when_it_changes(tmp_path):
  run = RunDir(tmp_path / "run")
  assert not run.is_run() and not run.path.exists()
  assert run.write_record({"name": "a", "num_steps": 3}, config_hash="aaaa", vocab_size=12)
  assert run.read_config() == {"name": "a", "num_steps": 3}
  assert (run.config_hash(), run.vocab_size()) == ("aaaa", 12)
  before = run.config_file.stat().st_mtime_ns
  time.sleep(0.01)
  assert not run.write_record({"name": "a", "num_steps": 3}, config_hash="aaaa", vocab_size=12)
  assert run.config_file.stat().st_mtime_ns == before
  assert run.write_data_report({"works": 3}) and run.read_data_report() == {"works": 3}
  assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "data_report.json"]  # no temp files left


def test_check_config_refuses_another_config_without_writing(tmp_path):
  run = RunDir(tmp_path)
  assert run.check_config("aaaa") is False  # no record yet
  run.write_record({"name": "a"}, config_hash="aaaa", vocab_size=12)
  assert run.check_config("aaaa") is True
  before = snapshot(tmp_path)
  with pytest.raises(ConfigMismatchError, match=r"config.json: .*another config \(hash aaaa; .* hash bbbb\)"):
    run.check_config("bbbb")
  assert snapshot(tmp_path) == before


def test_missing_or_malformed_record_is_a_one_line_user_error(tmp_path):
  with pytest.raises(NotARunError, match="not a govjax run directory") as error:
    RunDir(tmp_path).read_config()
  assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, RunDirError)
  (tmp_path / "config.json").write_text('{"config": ')
  with pytest.raises(RunFileError, match=r"config.json: not valid JSON") as error:
    RunDir(tmp_path).read_config()
  assert "\n" not in str(error.value)
  (tmp_path / "config.json").write_text('{"config_hash": "aaaa"}')
  with pytest.raises(RunFileError, match=r"config.json: field 'config' is missing"):
    RunDir(tmp_path).read_record()


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_cuts_both_logs_back_to_the_restored_step(tmp_path):
  run = RunDir(tmp_path)
  # A crash after step 5 (checkpoint at 4): step 5 logged in both logs, a torn line at the end of the metrics.
  run.metrics_file.write_text("".join(json.dumps({"step": s, "loss": s}) + "\n" for s in range(1, 6)) + '{"st')
  run.routing_log_file.write_text("".join(json.dumps({"step": s, "mask": [1]}) + "\n" for s in range(1, 6)))
  with run.open_logs(4) as logs:
    assert [r["step"] for r in _lines(run.metrics_file)] == [1, 2, 3, 4]
    assert [r["step"] for r in _lines(run.routing_log_file)] == [1, 2, 3, 4]
    for step in (5, 6):
      logs.metrics({"step": step, "loss": -step})
      logs.routing({"step": step, "mask": [0]})
  assert [(r["step"], r["loss"]) for r in run.read_metrics()] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, -5), (6, -6)]
  assert [r["step"] for r in _lines(run.routing_log_file)] == [1, 2, 3, 4, 5, 6]
  before = snapshot(tmp_path)
  run.open_logs(6).close()  # nothing to cut: the files are left as they are
  assert snapshot(tmp_path) == before


def test_readers_see_each_step_once_and_name_a_bad_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  # An older govjax logged replayed steps again: the last line of a step wins.
  path.write_text("".join(json.dumps({"step": s, "v": i}) + "\n" for i, s in enumerate([1, 2, 3, 2, 3, 4])))
  assert [(n, r["step"], r["v"]) for n, r in read_step_log(path)] == [(1, 1, 0), (4, 2, 3), (5, 3, 4), (6, 4, 5)]
  path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(RunFileError, match=r"metrics.jsonl:2: not valid JSON"):
    read_step_log(path)
  path.write_text('{"step": 1}\n{"loss": 2}\n')
  with pytest.raises(RunFileError, match=r"metrics.jsonl:2: missing field 'step'"):
    read_step_log(path)


def test_logs_are_checked_before_either_is_cut(tmp_path):
  run = RunDir(tmp_path)
  run.metrics_file.write_text('{"step": 1}\n{"step": 2}\n')
  run.routing_log_file.write_text('{"step": 1}\nbroken\n')
  before = snapshot(tmp_path)
  with pytest.raises(RunFileError, match=r"routing_log.jsonl:2"):
    run.open_logs(1)
  assert snapshot(tmp_path) == before


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
  run = RunDir(tmp_path / "run")
  with run.lock() as held:
    info = json.loads(run.lock_file.read_text())
    assert (info["pid"], info["host"]) == (os.getpid(), socket.gethostname()) and info["started"]
    assert held.info["token"] == info["token"]
    start = time.perf_counter()
    with pytest.raises(RunLockedError, match=rf"writer.lock: another training .*pid {os.getpid()} on "
                                              rf"{socket.gethostname()}, since {re.escape(info['started'])}"):
      RunDir(tmp_path / "run").lock().acquire()
    assert time.perf_counter() - start < 1.0
  assert not run.lock_file.exists()


def test_lock_is_released_when_the_writer_fails(tmp_path):
  run = RunDir(tmp_path)
  with pytest.raises(ZeroDivisionError), run.lock():
    1 / 0  # noqa: B018
  assert not run.lock_file.exists()
  run.lock().acquire().release()


def test_lock_held_by_another_process(tmp_path):
  child = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from govjax.core.rundir import RunDir\n"
       "lock = RunDir(sys.argv[1]).lock().acquire(); print('held', flush=True); time.sleep(120)", str(tmp_path)],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=rf"pid {child.pid} on "):
      RunDir(tmp_path).lock().acquire()
  finally:
    child.kill()
    child.wait()
  # Killed, the holder left its lock behind: the next writer removes it as stale, with a warning.
  assert RunDir(tmp_path).lock_file.exists()
  with pytest.warns(RunDirWarning, match=rf"removed a stale writer lock of pid {child.pid} .* no longer running"):
    lock = RunDir(tmp_path).lock().acquire()
  assert json.loads(lock.path.read_text())["pid"] == os.getpid()
  lock.release()


def test_lock_is_released_when_the_holder_exits_without_releasing_it(tmp_path):
  child = subprocess.run(
      [sys.executable, "-c", "import sys; from govjax.core.rundir import RunDir\n"
       "lock = RunDir(sys.argv[1]).lock().acquire(); assert lock.path.exists(); sys.exit(0)", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True)
  assert child.returncode == 0, child.stderr[-2000:]
  assert not RunDir(tmp_path).lock_file.exists()


def _write_lock(path, **fields):
  info = {"pid": 1, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00",
          "started_unix": time.time(), "command": "govjax train", "token": "x"}
  info.update(fields)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(info))


def test_stale_and_foreign_locks(tmp_path):
  path = tmp_path / "writer.lock"
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  _write_lock(path, pid=int(dead.stdout))
  with pytest.warns(RunDirWarning, match="no longer running"), WriterLock(path):
    assert json.loads(path.read_text())["pid"] == os.getpid()
  # Left by an earlier process that had this process's pid (a restarted container).
  _write_lock(path, pid=os.getpid(), token="not-ours")
  with pytest.warns(RunDirWarning, match="is this process"), WriterLock(path):
    pass
  # A live pid that started long after the lock was taken is not its holder.
  _write_lock(path, pid=os.getppid(), started_unix=0.0)
  with pytest.warns(RunDirWarning, match="started after the lock"), WriterLock(path):
    pass
  # Another host: whether its holder still runs cannot be told from here.
  _write_lock(path, host="elsewhere", pid=os.getpid())
  with pytest.raises(RunLockedError, match=r"pid \d+ on elsewhere.*delete .*writer.lock"):
    WriterLock(path).acquire()
  # An unreadable lock file: fresh, it may be being written; old, it is stale.
  path.write_text("{")
  with pytest.raises(RunLockedError, match="unknown holder"):
    WriterLock(path).acquire()
  os.utime(path, (time.time() - 60, time.time() - 60))
  with pytest.warns(RunDirWarning, match="unreadable"), WriterLock(path):
    pass
  assert not path.exists()


def test_readers_open_checkpoints_read_only_and_change_nothing(tmp_path, caplog):
  run = RunDir(tmp_path / "run")
  assert run.checkpoint_steps() == [] and not run.path.exists()  # nothing created for a reader
  tree = {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(3, np.int32)}
  with Checkpoints(run.checkpoint_dir, max_to_keep=None) as ckpts:
    ckpts.save(tree, {"step": 1, "learning_rate": 0.1})
    ckpts.save(tree, {"step": 2, "learning_rate": 0.05})
  before = snapshot(run.path)
  with RunDir(run.path) as reader, caplog.at_level(logging.WARNING):
    view = reader.checkpoints()
    assert [r.getMessage() for r in caplog.records] == []  # no warning for the normal case of a reader
    assert view.read_only and reader.checkpoints() is view  # built once
    assert view.all_steps() == [1, 2] and view.meta(2) == {"step": 2, "learning_rate": 0.05}
    raw, meta = view.restore_raw(1)
    np.testing.assert_array_equal(np.asarray(raw["w"]), tree["w"])
    with pytest.raises(RunDirError, match="read-only"):
      view.save(tree, {"step": 3})
  assert snapshot(run.path) == before
