"""Shared fixtures.

* ``prepared_data_dir``: a data dir with a tiny chorale dataset (``TINY_MAX_WORKS`` works, every split
  non-empty), prepared once per test session. ``govjax.data.chorales.load_chorales(prepared_data_dir, split)``
  reads it (the only config there, ``spq4_max12``).
* ``tiny_works``: the train split of that dataset as ``list[govjax.data.loader.Work]``, sorted by work_id (the
  order the loader's ``work_index`` refers to).
"""

from __future__ import annotations

import pytest

TINY_MAX_WORKS = 12  # 10 train, 1 validation, 1 test


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory):
  from govjax.data import chorales

  data_dir = tmp_path_factory.mktemp("govjax_data")
  chorales.prepare_chorales(data_dir, max_works=TINY_MAX_WORKS, progress=False)
  return data_dir


@pytest.fixture(scope="session")
def tiny_works(prepared_data_dir):
  from govjax.data import chorales

  return chorales.load_chorale_works(prepared_data_dir, "train")
