"""Banding LSH: band choice meets its recall target, queries and candidate pairs; the false-positive bound."""

from __future__ import annotations

import numpy as np
import pytest

from govjax.documentation import lsh


def test_choose_bands_is_the_tightest_banding_meeting_the_target():
  bands, rows = lsh.choose_bands(128, 0.45)
  assert bands * rows <= 128
  assert 1 - (1 - 0.45 ** rows) ** bands >= 0.995
  assert 1 - (1 - 0.45 ** (rows + 1)) ** (128 // (rows + 1)) < 0.995


def test_banded_lsh_query_and_pairs():
  index = lsh.BandedLSH(num_perm=8, bands=4, rows=2)
  index.insert("a", np.arange(8, dtype=np.uint32))
  index.insert("b", np.arange(8, dtype=np.uint32) + 100)
  index.insert("c", np.array([0, 1, 50, 51, 52, 53, 54, 55], np.uint32))
  assert index.query(np.array([0, 1, 9, 9, 9, 9, 9, 9], np.uint32)) == {"a", "c"}
  assert index.candidate_pairs() == {("a", "c")}
  with pytest.raises(ValueError, match="signature shape"):
    index.query(np.zeros(4, np.uint32))


def test_false_positive_bound_matches_clopper_pearson():
  from scipy import stats as scipy_stats

  assert lsh.false_positive_bound(1000) == pytest.approx(1 - 0.05 ** (1 / 1000))
  for n, k in ((100, 5), (200, 1)):
    assert lsh.false_positive_bound(n, k) == pytest.approx(scipy_stats.beta.ppf(0.95, k + 1, n - k), rel=1e-6)
