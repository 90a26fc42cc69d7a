import numpy as np
import pytest

from govjax.data.digits import corrupt_labels, load_digits


def test_corrupt_labels_changes_exactly_the_chosen_fraction():
  labels = np.arange(100) % 10
  noisy, corrupted = corrupt_labels(labels, 0.2, seed=3)
  assert corrupted.sum() == 20
  assert np.all(noisy[corrupted] != labels[corrupted])
  assert np.all(noisy[~corrupted] == labels[~corrupted])
  assert np.all((noisy >= 0) & (noisy < 10))
  with pytest.raises(ValueError, match="noise fraction"):
    corrupt_labels(labels, 1.5)


def test_load_digits_split():
  data = load_digits(noise_fraction=0.1, seed=0)
  assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
  assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
  assert data.corrupted.sum() == round(0.1 * 1437)
  again = load_digits(noise_fraction=0.1, seed=0)
  np.testing.assert_array_equal(data.y_train, again.y_train)
  assert load_digits(max_train=100).x_train.shape == (100, 64)
