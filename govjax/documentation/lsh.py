"""Banding LSH over MinHash signatures, and the confidence bound used for false-positive rates.

A pair of signatures with Jaccard similarity J shares at least one of ``bands`` bands of ``rows`` entries with
probability ``1 - (1 - J**rows)**bands``; :func:`choose_bands` picks the most rows per band (fewest spurious
candidates) that still finds pairs at a threshold with a given probability.

Example:
  >>> choose_bands(128, 0.45)
  (64, 2)
  >>> round(false_positive_bound(1000), 5)
  0.00299
"""

from __future__ import annotations

import math

import numpy as np


def choose_bands(num_perm: int, threshold: float, *, min_probability: float = 0.995) -> tuple[int, int]:
  """``(bands, rows)`` for banding LSH: the most rows per band (fewest spurious candidates) such that a pair
  with Jaccard ``threshold`` becomes a candidate with probability ``>= min_probability``."""
  for rows in range(num_perm, 0, -1):
    bands = num_perm // rows
    if 1.0 - (1.0 - threshold ** rows) ** bands >= min_probability:
      return bands, rows
  return num_perm, 1


class BandedLSH:
  """Banding LSH over MinHash signatures (uint32 ``[num_perm]``): ``bands`` buckets of ``rows`` entries.

  A pair is a candidate when any band is identical; probability ``1 - (1 - J**rows)**bands`` at Jaccard J.

  Example:
    >>> lsh = BandedLSH(num_perm=4, bands=2, rows=2)
    >>> lsh.insert("a", np.array([1, 2, 3, 4], np.uint32))
    >>> lsh.query(np.array([1, 2, 9, 9], np.uint32))
    {'a'}
  """

  def __init__(self, *, num_perm: int, bands: int, rows: int):
    if bands * rows > num_perm or bands < 1 or rows < 1:
      raise ValueError(f"bands ({bands}) x rows ({rows}) must be positive and fit in num_perm ({num_perm})")
    self.num_perm, self.bands, self.rows = num_perm, bands, rows
    self._tables: list[dict[bytes, list[str]]] = [{} for _ in range(bands)]

  def _keys(self, signature: np.ndarray) -> list[bytes]:
    signature = np.ascontiguousarray(signature, dtype=np.uint32)
    if signature.shape != (self.num_perm,):
      raise ValueError(f"signature shape {signature.shape} != ({self.num_perm},)")
    return [signature[b * self.rows:(b + 1) * self.rows].tobytes() for b in range(self.bands)]

  def insert(self, key: str, signature: np.ndarray) -> None:
    for table, band in zip(self._tables, self._keys(signature), strict=True):
      table.setdefault(band, []).append(key)

  def query(self, signature: np.ndarray) -> set[str]:
    found: set[str] = set()
    for table, band in zip(self._tables, self._keys(signature), strict=True):
      found.update(table.get(band, ()))
    return found

  def candidate_pairs(self) -> set[tuple[str, str]]:
    """All pairs of inserted keys sharing a band (sorted key pairs)."""
    pairs: set[tuple[str, str]] = set()
    for table in self._tables:
      for keys in table.values():
        unique = sorted(set(keys))
        pairs.update((a, b) for i, a in enumerate(unique) for b in unique[i + 1:])
    return pairs


def false_positive_bound(num_queries: int, num_false: int = 0, *, confidence: float = 0.95) -> float:
  """One-sided upper confidence bound on a rate from ``num_false`` events in ``num_queries`` (exact binomial,
  Clopper-Pearson; with zero events this is ``1 - (1 - confidence)**(1/n)``, about ``3/n``)."""
  if num_queries <= 0:
    return 1.0
  if num_false == 0:
    return 1.0 - (1.0 - confidence) ** (1.0 / num_queries)
  lo, hi = num_false / num_queries, 1.0
  for _ in range(60):  # bisection on the binomial CDF
    mid = (lo + hi) / 2
    cdf = sum(math.comb(num_queries, k) * mid ** k * (1 - mid) ** (num_queries - k)
              for k in range(num_false + 1))
    lo, hi = (mid, hi) if cdf > 1 - confidence else (lo, mid)
  return hi
