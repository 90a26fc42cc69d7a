"""LSH on datasketch: the banding meets its recall target, candidates are exactly the pairs sharing a band;
the Clopper-Pearson bound from scipy against known values."""

from __future__ import annotations

import math

import datasketch
import numpy as np
import pytest

from govjax.documentation import lsh


def test_choose_bands_is_the_tightest_banding_meeting_the_target():
  bands, rows = lsh.choose_bands(128, 0.45)
  assert (bands, rows) == (64, 2)
  assert 1 - (1 - 0.45 ** rows) ** bands >= 0.995
  assert 1 - (1 - 0.45 ** (rows + 1)) ** (128 // (rows + 1)) < 0.995
  assert lsh.choose_bands(128, 0.8) == (21, 6)


def _shares_a_band(a: np.ndarray, b: np.ndarray, bands: int, rows: int) -> bool:
  return any(np.array_equal(a[i * rows:(i + 1) * rows], b[i * rows:(i + 1) * rows]) for i in range(bands))


def test_datasketch_index_finds_exactly_the_pairs_sharing_a_band():
  rng = np.random.default_rng(0)
  base = rng.integers(0, 2 ** 32, size=128, dtype=np.uint64).astype(np.uint32)
  signatures = {}
  for i in range(30):  # copies of one signature with 20..120 of its 128 entries replaced
    noisy = base.copy()
    changed = rng.choice(128, size=int(rng.integers(20, 121)), replace=False)
    noisy[changed] = rng.integers(0, 2 ** 32, size=changed.size, dtype=np.uint64).astype(np.uint32)
    signatures[f"w{i:02d}"] = noisy
  index = lsh.signature_index(signatures, threshold=0.45)
  assert isinstance(index, datasketch.MinHashLSH) and (index.b, index.r) == (64, 2)
  bands, rows = lsh.choose_bands(128, 0.45)
  expected = {(a, b) for a in signatures for b in signatures
              if a < b and _shares_a_band(signatures[a], signatures[b], bands, rows)}
  assert 0 < len(expected) < 30 * 29 // 2
  assert lsh.candidate_pairs(index, signatures) == expected
  assert lsh.query(index, base) == {k for k, s in signatures.items() if _shares_a_band(base, s, bands, rows)}
  with pytest.raises(ValueError, match="signature of 4 permutations; the index has 128"):
    lsh.query(index, np.zeros(4, np.uint32))


def test_false_positive_bound_matches_known_clopper_pearson_values():
  assert lsh.false_positive_bound(3892) == pytest.approx(0.000769, abs=5e-7)  # the lookup bench: 0 of 3892
  assert lsh.false_positive_bound(10) == pytest.approx(0.2589, abs=1e-4)  # 1 - 0.05 ** (1 / 10)
  assert lsh.false_positive_bound(20, 1) == pytest.approx(0.2161, abs=1e-4)  # 90% two-sided interval's upper end
  bound = lsh.false_positive_bound(100, 5)
  assert bound == pytest.approx(0.1023, abs=1e-4)
  # the defining property: at the bound, seeing 5 or fewer events in 100 has probability 1 - confidence
  assert sum(math.comb(100, k) * bound ** k * (1 - bound) ** (100 - k) for k in range(6)) == pytest.approx(0.05)
  assert lsh.false_positive_bound(3892, 0, confidence=0.99) == pytest.approx(1 - 0.01 ** (1 / 3892), rel=1e-9)
  assert lsh.false_positive_bound(7, 7) == 1.0 and lsh.false_positive_bound(0) == 1.0
  with pytest.raises(ValueError, match="num_false must be in 0..num_queries"):
    lsh.false_positive_bound(5, 6)
