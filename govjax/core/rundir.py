"""A training run's directory, with one owner: every writer and reader of a run goes through :class:`RunDir`.

Layout::

    config.json           the run's record: {"config": {...}, "config_hash": "...", "vocab_size": N}
    data_report.json      what the training data held (works, exclusions, windows)
    metrics.jsonl         one line per training step (1-based "step": the step after the update)
    routing_log.jsonl     one line per step: which examples trained with which group mask
    checkpoints/          Orbax checkpoints (:class:`~govjax.core.checkpoint.Checkpoints`)
    checkpoints.corrupt/  damaged checkpoints that a resume set aside
    writer.lock           exists while a training writes here: the holder's pid, host and start time

Rules:

- Nothing is written before it is validated: a refused command (another config, no intact checkpoint, the lock
  held) leaves the directory as it was. The records are written atomically (a temporary file in the same folder,
  fsync, ``os.replace``), and only when they change.
- One writer: :meth:`RunDir.lock` creates ``writer.lock`` with ``O_CREAT | O_EXCL``; a second writer fails at once
  with :class:`RunLockedError` naming the holder. A lock whose holder is no longer running on this host is stale:
  it is removed with a :class:`RunDirWarning`.
- Each step once: on resume, :meth:`RunDir.open_logs` cuts both logs back to the restored step (the steps after
  it are trained, and logged, again); readers (:meth:`RunDir.read_metrics`, :func:`read_step_log`) see each step
  once, the last line of a step winning, and ignore a last line cut short by a crash.
- Readers open the checkpoints read-only (:meth:`RunDir.checkpoints`): nothing is created or deleted.

The config is a plain dict here (the core layer knows nothing of the trainer): ``RunDir(path).read_config()``
returns it; ``govjax.core.config.from_dict`` makes it a ``TrainConfig``.

Example:
  >>> import tempfile
  >>> run = RunDir(tempfile.mkdtemp())
  >>> with run.lock():
  ...   run.write_record({"name": "demo", "num_steps": 3}, config_hash="0123abcd", vocab_size=12)
  ...   with run.open_logs(0) as logs:
  ...     for step in (1, 2, 3):
  ...       logs.metrics({"step": step, "loss": 1.0 / step})
  True
  >>> run.read_config()["name"], run.config_hash(), run.is_run(), run.lock_file.exists()
  ('demo', '0123abcd', True, False)
  >>> with run.open_logs(2) as logs:  # resumed from step 2: step 3 is trained, and logged, again
  ...   logs.metrics({"step": 3, "loss": 0.3})
  >>> [(row["step"], row["loss"]) for row in run.read_metrics()]
  [(1, 1.0), (2, 0.5), (3, 0.3)]
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import pathlib
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterable
from typing import Any

from govjax.core.checkpoint import CheckpointError, Checkpoints, NoCheckpointError
from govjax.core.errors import RunDirError

__all__ = ["CHECKPOINTS", "CONFIG", "CORRUPT_CHECKPOINTS", "DATA_REPORT", "LOCK", "METRICS", "ROUTING_LOG",
           "ConfigMismatchError", "NotARunError", "RunDir", "RunDirWarning", "RunFileError", "RunLockedError",
           "RunLogs", "WriterLock", "atomic_write_text", "read_step_log", "truncate_step_log"]

CONFIG = "config.json"
DATA_REPORT = "data_report.json"
METRICS = "metrics.jsonl"
ROUTING_LOG = "routing_log.jsonl"
CHECKPOINTS = "checkpoints"
CORRUPT_CHECKPOINTS = "checkpoints.corrupt"
LOCK = "writer.lock"
# A lock file that cannot be parsed is being written (for microseconds) or was left by a crash; after this long it
# is stale.
UNREADABLE_LOCK_STALE_S = 10.0
# A process that started this long after a lock was taken cannot be its holder (the pid was reused).
PID_REUSE_MARGIN_S = 5.0
_HELD: set[str] = set()  # tokens of the locks this process holds


class NotARunError(RunDirError, FileNotFoundError):
  """The directory holds no run (no ``config.json``); also a ``FileNotFoundError``."""


class RunFileError(RunDirError, ValueError):
  """A file of the run is malformed (the message names the file, line and field); also a ``ValueError``."""


class ConfigMismatchError(RunDirError, ValueError):
  """The run directory holds a run of another config; also a ``ValueError``."""


class RunLockedError(RunDirError):
  """Another training holds the run directory's writer lock."""


class RunDirWarning(UserWarning):
  """Something in the run directory was repaired: a stale lock removed, a damaged checkpoint set aside."""


def _fsync_dir(directory: pathlib.Path) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` so that readers see the old or the new content, never a part.

  A temporary file in the same folder is written, flushed to disk and renamed over ``path``.

  Args:
    path: the file.
    text: its new content.

  Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> atomic_write_text(path, "{}")
    >>> path.read_text(), [p.name for p in path.parent.iterdir()]
    ('{}', ['a.json'])
  """
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  _fsync_dir(path.parent)


def _log_lines(path: pathlib.Path) -> tuple[list[tuple[int, str, dict]], int]:
  """The complete lines of a step log as ``(line number, text, row)``, and how many torn lines were left out."""
  try:
    text = path.read_bytes().decode("utf-8")
  except UnicodeDecodeError as error:
    raise RunFileError(f"{path}: not UTF-8 text ({error})") from error
  lines = text.split("\n")
  torn = 1 if lines[-1].strip() else 0  # the last line lacks its newline: a write cut short
  out = []
  for number, line in enumerate(lines[:-1], 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as error:
      raise RunFileError(f"{path}:{number}: not valid JSON ({error})") from error
    if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
      raise RunFileError(f"{path}:{number}: missing field 'step' (an integer)")
    out.append((number, line, row))
  return out, torn


def read_step_log(path: str | os.PathLike) -> list[tuple[int, dict]]:
  """Reads a JSON Lines log with one row per step (``metrics.jsonl``, ``routing_log.jsonl``): each step once.

  When a step appears more than once (a run resumed by an older govjax logged replayed steps again) the last line
  wins: it is what later checkpoints saw. A last line without its newline (a write cut short) is left out.

  Args:
    path: the file.

  Returns:
    ``(line number, row)`` per step, ascending by step.

  Raises:
    FileNotFoundError: no such file.
    RunFileError: a line that is not JSON or has no integer ``step`` (the message gives file and line).

  Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> _ = path.write_text('{"step": 1, "loss": 2.0}\\n{"step": 2, "loss": 1.5}\\n{"step": 2, "loss": 1.4}\\n{"st')
    >>> read_step_log(path)
    [(1, {'step': 1, 'loss': 2.0}), (3, {'step': 2, 'loss': 1.4})]
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such log (written by `govjax train`)")
  rows: dict[int, tuple[int, dict]] = {}
  for number, _, row in _log_lines(path)[0]:
    rows[row["step"]] = (number, row)
  return [rows[step] for step in sorted(rows)]


def _plan_truncation(path: pathlib.Path, step: int) -> str | None:
  """The content ``path`` should have to hold steps ``<= step`` once each; None when it already does."""
  if not path.is_file():
    return None
  lines, torn = _log_lines(path)
  keep: dict[int, str] = {}
  for _, line, row in lines:
    if row["step"] <= step:
      keep[row["step"]] = line
  if not torn and [row["step"] for _, _, row in lines] == sorted(keep):
    return None
  return "".join(keep[s] + "\n" for s in sorted(keep))


def truncate_step_log(path: str | os.PathLike, step: int) -> bool:
  """Cuts a step log back to the steps ``<= step``, each once (atomically); returns whether it changed.

  Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "routing_log.jsonl"
    >>> _ = path.write_text("".join(f'{{"step": {s}}}\\n' for s in (1, 2, 3, 2, 3)))
    >>> truncate_step_log(path, 2), path.read_text()
    (True, '{"step": 1}\\n{"step": 2}\\n')
  """
  path = pathlib.Path(path)
  content = _plan_truncation(path, step)
  if content is None:
    return False
  atomic_write_text(path, content)
  return True


# ------------------------------------------------------------------------------------------------------ lock


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:  # a zombie (killed, not yet reaped) is not running
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def _process_start(pid: int) -> float | None:
  """When process ``pid`` started (Unix time), from ``/proc``; None where that is not available."""
  try:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    boot = next(float(line.split()[1]) for line in pathlib.Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError, StopIteration):
    return None


def _read_lock(path: pathlib.Path) -> dict | None:
  """The lock's content; ``{}`` when it cannot be parsed; None when there is no lock file."""
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    return None
  except (OSError, UnicodeDecodeError):
    return {}
  try:
    info = json.loads(text)
  except json.JSONDecodeError:
    return {}
  return info if isinstance(info, dict) else {}


def _describe_holder(info: dict) -> str:
  if not info:
    return "an unknown holder (the lock file is unreadable)"
  command = f" ({info['command']})" if info.get("command") else ""
  return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}{command}"


class WriterLock:
  """The writer lock of a run directory (a context manager; see the module docstring).

  Args:
    path: the lock file (``RUN/writer.lock``).

  Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "writer.lock"
    >>> with WriterLock(path):
    ...   try:
    ...     WriterLock(path).acquire()
    ...   except RunLockedError as error:
    ...     print(str(error).split(":")[1].strip())
    another training writes to this run directory
    >>> path.exists()
    False
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self.info: dict | None = None

  def __enter__(self) -> WriterLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()

  def _stale(self, holder: dict) -> str | None:
    """Why the lock ``holder`` describes is stale, or None when it may be held."""
    if not holder:
      try:
        age = time.time() - self.path.stat().st_mtime
      except FileNotFoundError:
        return "it is gone"
      return f"the lock file is unreadable and {age:.0f} s old" if age > UNREADABLE_LOCK_STALE_S else None
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
      return None  # another host: whether its holder runs cannot be told from here
    pid = holder["pid"]
    if pid == os.getpid():
      return None if holder.get("token") in _HELD else f"pid {pid} is this process, which does not hold it"
    if not _pid_alive(pid):
      return f"its holder, pid {pid}, is no longer running"
    started, since = _process_start(pid), holder.get("started_unix")
    if started is not None and isinstance(since, int | float) and started > since + PID_REUSE_MARGIN_S:
      return f"pid {pid} now belongs to a process started after the lock was taken"
    return None

  def _remove_stale(self, holder: dict, reason: str) -> None:
    aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return
    if _read_lock(aside) != holder:  # a new holder took the lock in the meantime: give it back
      try:
        os.link(aside, self.path)
      except FileExistsError:
        pass
      aside.unlink(missing_ok=True)
      return
    aside.unlink(missing_ok=True)
    warnings.warn(f"{self.path}: removed a stale writer lock of {_describe_holder(holder)}: {reason}",
                  RunDirWarning, stacklevel=3)

  def acquire(self) -> WriterLock:
    """Takes the lock.

    Raises:
      RunLockedError: another writer holds it (the message names the holder and how to proceed).
    """
    for _ in range(5):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = _read_lock(self.path)
        if holder is None:
          continue
        reason = self._stale(holder)
        if reason is None:
          raise RunLockedError(
              f"{self.path}: another training writes to this run directory: {_describe_holder(holder)}; wait for "
              f"it to finish, or, if it is no longer running, delete {self.path}") from None
        self._remove_stale(holder, reason)
        continue
      now = time.time()
      info = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
              "started_unix": now, "command": " ".join(sys.argv)[:300], "token": uuid.uuid4().hex}
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(info))
        f.flush()
        os.fsync(f.fileno())
      self.info = info
      _HELD.add(info["token"])
      atexit.register(self.release)  # also when the interpreter exits without reaching release()
      return self
    raise RunLockedError(f"{self.path}: could not take the writer lock (other writers keep taking it)")

  def release(self) -> None:
    """Releases the lock (only if this object holds it, and never from a forked child of the holder)."""
    if self.info is None or self.info["pid"] != os.getpid():
      return
    token = self.info["token"]
    _HELD.discard(token)
    self.info = None
    atexit.unregister(self.release)
    if (_read_lock(self.path) or {}).get("token") == token:
      self.path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------------ logs


class RunLogs:
  """Appends to a run's metrics and routing logs, a line per step (flushed per line; fsync with :meth:`sync`).

  Made by :meth:`RunDir.open_logs`; with ``enabled=False`` (processes other than 0) it writes nothing.
  """

  def __init__(self, run: RunDir, *, enabled: bool = True):
    self._files = {}
    if enabled:
      for name in (METRICS, ROUTING_LOG):
        self._files[name] = open(run.path / name, "a", buffering=1, encoding="utf-8")

  def __enter__(self) -> RunLogs:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _write(self, name: str, row: dict) -> None:
    if name in self._files:
      self._files[name].write(json.dumps(row) + "\n")

  def metrics(self, row: dict) -> None:
    """Appends a line to ``metrics.jsonl`` (``row["step"]``: the step after the update)."""
    self._write(METRICS, row)

  def routing(self, row: dict) -> None:
    """Appends a line to ``routing_log.jsonl``."""
    self._write(ROUTING_LOG, row)

  def sync(self) -> None:
    """Flushes both logs to disk (before a checkpoint is saved, so it never gets ahead of them)."""
    for f in self._files.values():
      f.flush()
      os.fsync(f.fileno())

  def close(self) -> None:
    for f in self._files.values():
      f.close()
    self._files = {}


# --------------------------------------------------------------------------------------------------- run dir


class RunDir:
  """A training run's directory: its paths, records, checkpoints, logs and writer lock.

  Args:
    path: the run directory (``--workdir``); nothing is created until a writer asks.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self._checkpoints: Checkpoints | None = None

  def __repr__(self) -> str:
    return f"RunDir({str(self.path)!r})"

  def __enter__(self) -> RunDir:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if self._checkpoints is not None:
      ckpts, self._checkpoints = self._checkpoints, None
      ckpts.__exit__(exc_type, exc, tb)

  def close(self) -> None:
    """Closes the checkpoint manager (waits for pending saves)."""
    self.__exit__(None, None, None)

  # paths
  @property
  def config_file(self) -> pathlib.Path:
    return self.path / CONFIG

  @property
  def data_report_file(self) -> pathlib.Path:
    return self.path / DATA_REPORT

  @property
  def metrics_file(self) -> pathlib.Path:
    return self.path / METRICS

  @property
  def routing_log_file(self) -> pathlib.Path:
    return self.path / ROUTING_LOG

  @property
  def checkpoint_dir(self) -> pathlib.Path:
    return self.path / CHECKPOINTS

  @property
  def corrupt_dir(self) -> pathlib.Path:
    return self.path / CORRUPT_CHECKPOINTS

  @property
  def lock_file(self) -> pathlib.Path:
    return self.path / LOCK

  # records
  def is_run(self) -> bool:
    """Whether the directory holds a run (its ``config.json``)."""
    return self.config_file.is_file()

  def _read_json(self, path: pathlib.Path) -> Any:
    try:
      return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
      raise RunFileError(f"{path}: not valid JSON ({error})") from error

  def read_record(self) -> dict:
    """The run's record (``config.json``): ``config`` (a dict), ``config_hash``, ``vocab_size``, ...

    Raises:
      NotARunError: there is no ``config.json``.
      RunFileError: it is malformed.
    """
    if not self.is_run():
      raise NotARunError(f"{self.path} is not a govjax run directory (no {CONFIG}); run `govjax train --config "
                         f"CONFIG --workdir {self.path}` first")
    record = self._read_json(self.config_file)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
      raise RunFileError(f"{self.config_file}: field 'config' is missing or not an object")
    return record

  def read_config(self) -> dict:
    """The run's config as a dict (``govjax.core.config.from_dict`` makes it a ``TrainConfig``)."""
    return dict(self.read_record()["config"])

  def config_hash(self) -> str | None:
    """The hash of the run's config, as recorded."""
    return self.read_record().get("config_hash")

  def vocab_size(self) -> int | None:
    """The vocabulary size the run trained with, as recorded."""
    value = self.read_record().get("vocab_size")
    return None if value is None else int(value)

  def check_config(self, config_hash: str) -> bool:
    """Whether the directory already records a run of this config (False: no record yet). Writes nothing.

    Raises:
      ConfigMismatchError: it records another config.
    """
    if not self.is_run():
      return False
    recorded = self.read_record().get("config_hash")
    if recorded != config_hash:
      raise ConfigMismatchError(
          f"{self.config_file}: this run directory holds a run of another config (hash {recorded}; the config "
          f"given has hash {config_hash}); use a fresh --workdir, or the run's own config to resume it")
    return True

  def _write_json(self, path: pathlib.Path, value: Any) -> bool:
    text = json.dumps(value, indent=2, default=str)
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
      return False
    self.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return True

  def write_record(self, config: dict, *, config_hash: str, vocab_size: int, **fields) -> bool:
    """Writes ``config.json`` atomically (only when it changes; call it once the run is validated).

    Args:
      config: the config as a dict (``TrainConfig.to_dict()``).
      config_hash: its hash (``govjax.core.config.config_hash``).
      vocab_size: the vocabulary size of the training data.
      **fields: further JSON-able fields.

    Returns:
      Whether the file was written.
    """
    return self._write_json(self.config_file, {"config": dict(config), "config_hash": config_hash,
                                               "vocab_size": int(vocab_size), **fields})

  def read_data_report(self) -> dict | None:
    """``data_report.json``, or None when the run has none."""
    return self._read_json(self.data_report_file) if self.data_report_file.is_file() else None

  def write_data_report(self, report: dict) -> bool:
    """Writes ``data_report.json`` atomically (only when it changes); returns whether it was written."""
    return self._write_json(self.data_report_file, report)

  # checkpoints
  def checkpoints(self, *, read_only: bool = True, max_to_keep: int | None = 5,
                  keep_period: int | None = None) -> Checkpoints:
    """The run's checkpoint manager, built once and kept until :meth:`close`.

    Args:
      read_only: for readers: nothing is created or deleted (the default). A writer asks with False (after
        validating the run); a read-only manager opened before is closed then, and a writable one, once open, also
        serves readers.
      max_to_keep, keep_period: the writer's retention (see :class:`~govjax.core.checkpoint.Checkpoints`).

    Returns:
      The :class:`~govjax.core.checkpoint.Checkpoints`.
    """
    current = self._checkpoints
    if current is not None and (read_only or not current.read_only):
      return current
    if current is not None:
      current.close()
    self._checkpoints = Checkpoints(self.checkpoint_dir, max_to_keep=max_to_keep, keep_period=keep_period,
                                    read_only=read_only)
    return self._checkpoints

  def checkpoint_steps(self) -> list[int]:
    """Steps with a finished checkpoint, ascending (read-only; no manager is left open by this call)."""
    if self._checkpoints is not None:
      return self._checkpoints.all_steps()
    with Checkpoints(self.checkpoint_dir, read_only=True) as view:
      return view.all_steps()

  def restore_for_resume(self, like: Any, *, config_hash: str) -> tuple[Any, dict, list[CheckpointError]] | None:
    """The newest intact checkpoint to resume from, checked against the config; writes nothing.

    Args:
      like: the train state to restore into (structure, shapes, dtypes, shardings).
      config_hash: the hash of the config being trained.

    Returns:
      ``(state, meta, faults)`` (``faults``: newer damaged checkpoints, skipped with a warning; hand them to
      :meth:`set_aside` once the writer goes ahead), or None when there is no checkpoint yet.

    Raises:
      CheckpointError: no checkpoint is intact (the message gives the command that recovers).
      ConfigMismatchError: the checkpoint is of another config.
    """
    try:
      state, meta, faults = self.checkpoints(read_only=True).restore_newest_intact(like)
    except NoCheckpointError:
      return None
    if meta.get("config_hash") != config_hash:
      raise ConfigMismatchError(
          f"{self.checkpoint_dir}: holds checkpoints of another config (hash {meta.get('config_hash')}, this one "
          f"{config_hash}); use a fresh --workdir")
    return state, meta, faults

  def set_aside(self, faults: Iterable[CheckpointError]) -> list[pathlib.Path]:
    """Moves damaged checkpoints to ``checkpoints.corrupt/STEP`` (with a warning), so their steps can be saved
    again; needs the writable manager."""
    ckpts = self.checkpoints(read_only=False)
    moved = []
    for fault in faults:
      if fault.step is None or fault.step not in ckpts.all_steps():
        continue
      target = ckpts.set_aside(fault.step, self.corrupt_dir / str(fault.step))
      warnings.warn(f"{self.path}: moved damaged checkpoint {fault.step} to {target}", RunDirWarning,
                    stacklevel=2)
      moved.append(target)
    return moved

  # logs
  def read_metrics(self) -> list[dict]:
    """The rows of ``metrics.jsonl``, one per step, ascending (``[]`` when there is none yet)."""
    if not self.metrics_file.is_file():
      return []
    return [row for _, row in read_step_log(self.metrics_file)]

  def read_routing_log(self) -> list[tuple[int, dict]]:
    """The rows of ``routing_log.jsonl`` with their line numbers, one per step, ascending."""
    return read_step_log(self.routing_log_file)

  def open_logs(self, step: int, *, enabled: bool = True) -> RunLogs:
    """Opens the logs for appending after cutting both back to the steps ``<= step`` (the step resumed from).

    Both logs are checked before either is changed.

    Args:
      step: the restored step (0 for a fresh run).
      enabled: False on processes that do not write the logs.

    Returns:
      The :class:`RunLogs`.
    """
    if enabled:
      plans = {path: _plan_truncation(path, step) for path in (self.metrics_file, self.routing_log_file)}
      self.path.mkdir(parents=True, exist_ok=True)
      for path, content in plans.items():
        if content is not None:
          atomic_write_text(path, content)
    return RunLogs(self, enabled=enabled)

  # lock
  def lock(self) -> WriterLock:
    """The writer lock (``with run.lock(): ...``); creates the directory if needed."""
    self.path.mkdir(parents=True, exist_ok=True)
    return WriterLock(self.lock_file)
