"""scikit-learn's handwritten digits (8x8, 1797 images, 10 classes) with optional label corruption.

Used by the provenance mislabel experiment: corrupt a fraction of the training labels, train a small classifier,
and rank training examples by self-influence; the corrupted ones should come first.

Example:
  >>> data = load_digits(noise_fraction=0.1, seed=0)
  >>> data.x_train.shape[1], int(data.corrupted.sum()) == round(0.1 * len(data.y_train))
  (64, True)
  >>> bool(np.all(data.y_train[data.corrupted] != data.y_clean[data.corrupted]))
  True
"""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class DigitsData:
  """A train/test split of the digits.

  Attributes:
    x_train: float32 ``[N, 64]`` pixels scaled to ``[0, 1]``.
    y_train: int32 ``[N]`` training labels (after corruption).
    y_clean: int32 ``[N]`` the true training labels.
    corrupted: bool ``[N]``: the label was replaced by a different, random class.
    x_test: float32 ``[M, 64]``.
    y_test: int32 ``[M]`` (never corrupted).
  """

  x_train: np.ndarray
  y_train: np.ndarray
  y_clean: np.ndarray
  corrupted: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def corrupt_labels(labels: np.ndarray, fraction: float, *, num_classes: int = NUM_CLASSES, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Replaces ``round(fraction * N)`` labels, chosen at random, with a different random class.

  Args:
    labels: int ``[N]``.
    fraction: in ``[0, 1]``.
    num_classes: number of classes.
    seed: RNG seed.

  Returns:
    ``(noisy labels, corrupted mask)``.
  """
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"noise fraction must be in [0, 1], got {fraction}")
  rng = np.random.default_rng(seed)
  labels = np.asarray(labels, np.int32)
  count = int(round(fraction * labels.size))
  chosen = rng.choice(labels.size, size=count, replace=False)
  noisy = labels.copy()
  noisy[chosen] = (labels[chosen] + rng.integers(1, num_classes, size=count)) % num_classes
  corrupted = np.zeros(labels.size, bool)
  corrupted[chosen] = True
  return noisy, corrupted


def load_digits(*, test_fraction: float = 0.2, noise_fraction: float = 0.0, seed: int = 0,
                max_train: int | None = None) -> DigitsData:
  """Loads the digits (bundled with scikit-learn, no download), splits, and corrupts training labels.

  Args:
    test_fraction: held-out fraction (stratified).
    noise_fraction: fraction of training labels to corrupt.
    seed: split and corruption seed.
    max_train: keep at most this many training examples (for fast tests).

  Returns:
    A :class:`DigitsData`.
  """
  from sklearn.datasets import load_digits as sklearn_digits  # noqa: PLC0415 (scikit-learn is slow to import; only the digits data set needs it)
  from sklearn.model_selection import train_test_split  # noqa: PLC0415 (as above)

  x, y = sklearn_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  x_train, x_test, y_train, y_test = train_test_split(x, y.astype(np.int32), test_size=test_fraction,
                                                      random_state=seed, stratify=y)
  if max_train is not None:
    x_train, y_train = x_train[:max_train], y_train[:max_train]
  noisy, corrupted = corrupt_labels(y_train, noise_fraction, seed=seed + 1)
  return DigitsData(x_train=x_train, y_train=noisy, y_clean=y_train.astype(np.int32), corrupted=corrupted,
                    x_test=x_test, y_test=y_test.astype(np.int32))
