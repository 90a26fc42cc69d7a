import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from govjax.train.loop import calibrate_plugins
from govjax.train.step import create_train_state, make_train_step
from tests.multidevice.common import probe_config, step_plugins, tiny_data
from tests.multidevice.multiprocess_worker import STEPS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two_processes(tmp_path, layout: str):
  port = _free_port()
  out = tmp_path / "state.npz"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process by default
  if layout.startswith("fsdp"):
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  procs = [subprocess.Popen([sys.executable, "-m", "tests.multidevice.multiprocess_worker", str(port), str(i),
                             str(out), layout], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=240)[0].decode(errors="replace"))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, log in zip(procs, logs, strict=True):
    assert p.returncode == 0, log[-3000:]
  return np.load(out)


def _single_process(probe: bool):
  """The same global batches on one process and one device."""
  config = probe_config(probe)
  data = tiny_data()
  components, plugins = step_plugins(config)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=data.batches.vocab_size, tx=components.tx,
                                              extras={p.name: p.init(data.batches.num_examples) for p in plugins})
  step = make_train_step(graphdef, tx, components.loss_fn, plugins=plugins, donate=False)
  losses = []
  for s in range(STEPS):
    if probe:
      state = state._replace(extras=calibrate_plugins(plugins, state.extras, graphdef, state.params, data.batches,
                                                      s, max_batches=2))
    state, metrics = step(state, data.batches.train[s], data.batches.group_mask(data.batches.train[s]))
    losses.append(float(metrics["loss"]))
  return config, state, losses


@pytest.fixture(scope="module")
def single_process():
  return _single_process(False)


@pytest.fixture(scope="module")
def single_process_probe():
  return _single_process(True)


def _assert_matches(got, config, state, losses) -> None:
  """The two-process losses and gathered state equal the single process's."""
  np.testing.assert_allclose(got["losses"], losses, rtol=1e-5)
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
  for i, (path, leaf) in enumerate(zip(paths, jax.tree.leaves(state), strict=True)):
    a, b = np.asarray(leaf), got[f"leaf{i}"]
    if "'key'" in path and "'bias'" in path and a.dtype.kind == "f":  # zero exact gradient, see common.py
      assert np.abs(a - b).max() <= 2 * STEPS * config.learning_rate
      continue
    np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6, err_msg=path, equal_nan=True)


@pytest.mark.parametrize("layout", ["replicated", "fsdp"])
def test_two_processes_with_gloo_agree_with_one_process(tmp_path, single_process, layout):
  """Replicated: 1 device per process. FSDP: 2 fake devices per process, the state split over all 4."""
  _assert_matches(_run_two_processes(tmp_path, layout), *single_process)


@pytest.mark.parametrize("layout", ["replicated", "fsdp"])
def test_two_processes_with_the_calibrated_probe_agree_with_one_process(tmp_path, single_process_probe, layout):
  """The memorization probe (gap signal) calibrated before every step: its host-side reads of the held-out state
  work when the state spans two processes, and the result equals one process."""
  got = _run_two_processes(tmp_path, layout + "+probe")
  config, state, losses = single_process_probe
  assert int(state.extras["probe"].calibrations) == STEPS and np.isfinite(float(state.extras["probe"].best_heldout))
  _assert_matches(got, config, state, losses)
