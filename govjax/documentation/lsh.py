"""Candidate search over MinHash signatures (datasketch ``MinHashLSH``) and the bound on false-positive rates.

The manifest's fingerprints are stored as uint32 MinHash signatures; :func:`signature_index` puts them into a
``datasketch.MinHashLSH`` and :func:`query` / :func:`candidate_pairs` read candidates back. A pair of signatures
with Jaccard similarity J shares at least one of ``bands`` bands of ``rows`` entries with probability
``1 - (1 - J**rows)**bands``. datasketch chooses its bands by weighing false positives against false negatives,
which at a threshold of 0.45 and 128 permutations finds only 37% of the pairs exactly at the threshold; the
lookup must not miss a documented work, so :func:`choose_bands` passes datasketch the banding that finds such a
pair with probability >= 0.995 (the most rows per band, i.e. the fewest spurious candidates, that does). Every
candidate is re-scored from the signatures, so spurious candidates cost time, never a wrong match.

:func:`false_positive_bound` is the one-sided Clopper-Pearson upper bound (``scipy.stats.beta``).

Example:
  >>> choose_bands(128, 0.45)
  (64, 2)
  >>> index = signature_index({"a": np.array([1, 2, 3, 4], np.uint32)}, threshold=0.5)
  >>> sorted(query(index, np.array([1, 2, 9, 9], np.uint32)))
  ['a']
  >>> round(false_positive_bound(3892), 5)
  0.00077
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from govjax.core.intervals import clopper_pearson

__all__ = ["as_minhash", "candidate_pairs", "choose_bands", "false_positive_bound", "query", "signature_index"]

SCHEME = "affine32"  # the datasketch MinHash scheme of the stored signatures (music and text fingerprints)


def choose_bands(num_perm: int, threshold: float, *, min_probability: float = 0.995) -> tuple[int, int]:
  """``(bands, rows)`` for ``MinHashLSH(params=...)``: the most rows per band (fewest spurious candidates) such
  that a pair with Jaccard ``threshold`` becomes a candidate with probability ``>= min_probability``.

  Args:
    num_perm: signature length.
    threshold: Jaccard similarity that must be found.
    min_probability: the probability of finding a pair at ``threshold``.

  Returns:
    ``(bands, rows)`` with ``bands * rows <= num_perm``.
  """
  for rows in range(num_perm, 0, -1):
    bands = num_perm // rows
    if 1.0 - (1.0 - threshold ** rows) ** bands >= min_probability:
      return bands, rows
  return num_perm, 1


def as_minhash(signature: np.ndarray, *, seed: int = 1) -> Any:
  """A stored signature (uint32 ``[num_perm]``) as a datasketch ``LeanMinHash``.

  Raises:
    ValueError: an empty or non-1-D signature.
  """
  from datasketch import LeanMinHash  # noqa: PLC0415 (datasketch imports scipy, 0.5 s; a music lookup needs none)

  signature = np.asarray(signature)
  if signature.ndim != 1 or signature.size == 0:
    raise ValueError(f"a signature must be a non-empty 1-D array, got shape {signature.shape}")
  return LeanMinHash(seed=seed, hashvalues=signature.astype(np.uint64), scheme=SCHEME)


def signature_index(signatures: Mapping[str, np.ndarray], *, threshold: float,
                    num_perm: int | None = None) -> Any:
  """A ``MinHashLSH`` over ``key -> signature`` with the banding of :func:`choose_bands`.

  The index compares hash values band by band only, so the MinHash seed of the signatures does not matter to
  it (the scores are computed from the signatures themselves).

  Args:
    signatures: uint32 ``[num_perm]`` signatures by key.
    threshold: the Jaccard similarity the search must find (see :func:`choose_bands`).
    num_perm: signature length (default: that of the first signature; 128 when there are none).

  Returns:
    The index; query it with :func:`query`.
  """
  from datasketch import MinHashLSH  # noqa: PLC0415 (datasketch imports scipy, 0.5 s; a music lookup needs none)

  if num_perm is None:
    num_perm = len(next(iter(signatures.values()))) if signatures else 128
  lsh = MinHashLSH(num_perm=num_perm, params=choose_bands(num_perm, threshold))
  for key, signature in signatures.items():
    lsh.insert(key, as_minhash(signature), check_duplication=False)
  return lsh


def query(lsh: Any, signature: np.ndarray) -> set[str]:
  """Keys of ``lsh`` sharing at least one band with ``signature``.

  Raises:
    ValueError: ``signature`` has another length than the index's signatures.
  """
  if len(signature) != lsh.h:
    raise ValueError(f"signature of {len(signature)} permutations; the index has {lsh.h}")
  return set(lsh.query(as_minhash(signature)))


def candidate_pairs(lsh: Any,
                    signatures: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> set[tuple[str, str]]:
  """All pairs of keys of ``lsh`` sharing a band (sorted key pairs), from the signatures inserted.

  Args:
    lsh: the index (:func:`signature_index`).
    signatures: the inserted ``key -> signature`` (or pairs).
  """
  items = signatures.items() if isinstance(signatures, Mapping) else signatures
  pairs: set[tuple[str, str]] = set()
  for key, signature in items:
    pairs.update((min(key, other), max(key, other)) for other in query(lsh, signature) if other != key)
  return pairs


def false_positive_bound(num_queries: int, num_false: int = 0, *, confidence: float = 0.95) -> float:
  """One-sided upper confidence bound on a rate from ``num_false`` events in ``num_queries`` (exact binomial,
  Clopper-Pearson: ``Beta(confidence; k + 1, n - k)``; with zero events ``1 - (1 - confidence)**(1/n)``, about
  ``3/n``).

  Args:
    num_queries: trials ``n`` (no trials: the bound is 1).
    num_false: events ``k`` (``0 <= k <= n``).
    confidence: one-sided confidence level.

  Returns:
    The upper bound on the rate.

  Raises:
    ValueError: ``num_false`` outside ``0..num_queries``.
  """
  if num_queries <= 0:
    return 1.0
  if not 0 <= num_false <= num_queries:
    raise ValueError(f"num_false must be in 0..num_queries ({num_queries}), got {num_false}")
  return clopper_pearson(num_false, num_queries, level=confidence, one_sided=True)[1]
