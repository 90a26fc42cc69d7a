"""Multi-device tests: run in their own pytest process with 4 fake CPU devices.

``make test`` runs ``XLA_FLAGS=--xla_force_host_platform_device_count=4 pytest tests/multidevice``. Collected
together with the rest of the suite (one device) every test here is skipped; run on their own with too few
devices they fail, so a misconfigured run cannot pass without testing anything.
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
  if all(str(item.fspath).startswith(here) for item in items):
    raise pytest.UsageError(f"tests/multidevice needs {NUM_DEVICES} devices, found {len(jax.devices())}: run "
                            f"XLA_FLAGS=--xla_force_host_platform_device_count={NUM_DEVICES} pytest tests/multidevice")
  for item in items:
    if str(item.fspath).startswith(here):
      item.add_marker(skip)
