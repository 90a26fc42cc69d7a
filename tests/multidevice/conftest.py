"""Multi-device tests: run in their own pytest process with 4 fake CPU devices.

``make test`` runs ``XLA_FLAGS=--xla_force_host_platform_device_count=4 pytest tests/multidevice``; with fewer
devices (e.g. this directory collected together with the rest of the suite) every test here is skipped.
"""

from __future__ import annotations

import jax
import pytest

NUM_DEVICES = 4


def pytest_collection_modifyitems(config, items):
  del config
  if len(jax.devices()) >= NUM_DEVICES:
    return
  skip = pytest.mark.skip(reason=f"needs {NUM_DEVICES} devices: XLA_FLAGS=--xla_force_host_platform_device_count="
                          f"{NUM_DEVICES} pytest tests/multidevice (found {len(jax.devices())})")
  here = __file__.rsplit("/", 1)[0]
  for item in items:
    if str(item.fspath).startswith(here):
      item.add_marker(skip)
