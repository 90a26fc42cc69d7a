"""The n-gram reference: exact agreement with a plain counting implementation, the work left out, bad input."""

from collections import Counter

import numpy as np
import pytest

from govjax.probe.reference import ngram_root_surprisal


def _plain(windows, groups, *, vocab_size, order, train_rows, valid):
  """Counts in dictionaries, one scored window at a time (the definition, slowly)."""

  def counts(rows):
    out = Counter()
    for r in rows:
      for i in range(windows.shape[1]):
        for n in range(1, order + 1):
          if i - n + 1 < 0 or not valid[r, i - n + 1:i + 1].all():
            break
          gram = tuple(windows[r, i - n + 1:i + 1])
          out[gram] += 1
          out[("context",) + gram[:-1]] += 1
    return out

  rows = sorted(set(train_rows))
  scores = []
  for r in range(len(windows)):
    own = [q for q in rows if groups[q] == groups[r]]
    table = counts(rows) - counts(own)
    roots = []
    for i in range(1, windows.shape[1]):
      if not valid[r, i]:
        continue
      p = 1.0 / vocab_size
      for n in range(1, order + 1):
        if i - n + 1 < 0 or not valid[r, i - n + 1:i + 1].all():
          break
        gram = tuple(windows[r, i - n + 1:i + 1])
        c = table[("context",) + gram[:-1]]
        weight = c / (c + 2.0)
        p = weight * (table[gram] / c if c else 0.0) + (1 - weight) * p
      roots.append(np.sqrt(-np.log(p)))
    scores.append(np.mean(roots) if roots else np.nan)
  return np.array(scores)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_matches_plain_counting_with_padding_and_a_training_subset(order):
  rng = np.random.default_rng(order)
  windows = rng.integers(1, 6, (12, 10))
  valid = np.ones(windows.shape, bool)
  valid[3, 7:] = False  # a padded window
  valid[8, 2:] = False
  windows[~valid] = 0
  groups = np.array([0, 0, 1, 1, 2, 3, 3, 4, 5, 6, 6, 7])
  train_rows = [0, 1, 2, 3, 5, 6, 8, 9, 9]  # windows 4, 7, 10, 11 are never trained (9 repeated)
  got = ngram_root_surprisal(windows, groups, vocab_size=6, order=order, train_rows=train_rows, valid=valid)
  want = _plain(windows, groups, vocab_size=6, order=order, train_rows=train_rows, valid=valid)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_work_is_no_reference_for_itself():
  tune = np.array([1, 2, 3, 4, 1, 2, 3, 4])
  other = np.array([4, 4, 3, 3, 2, 2, 1, 1])
  windows = np.stack([tune, tune, other])
  copied = ngram_root_surprisal(windows, np.array([0, 1, 2]), vocab_size=5, order=3)
  same_work = ngram_root_surprisal(windows, np.array([0, 0, 2]), vocab_size=5, order=3)
  assert copied[0] < same_work[0] - 0.3  # a copy in another work explains the tune; its own repeat does not
  assert copied[2] == pytest.approx(same_work[2])  # the third window's reference holds both tune windows either way


def test_a_window_without_scored_positions_is_nan():
  windows = np.array([[1, 0, 0], [1, 2, 3]])
  valid = windows != 0
  out = ngram_root_surprisal(windows, np.array([0, 1]), vocab_size=4, order=2, valid=valid)
  assert np.isnan(out[0]) and np.isfinite(out[1])


def test_bad_input_names_the_problem():
  windows = np.array([[1, 2, 3]])
  with pytest.raises(ValueError, match="groups"):
    ngram_root_surprisal(windows, np.array([0, 1]), vocab_size=4, order=2)
  with pytest.raises(ValueError, match="order"):
    ngram_root_surprisal(windows, np.array([0]), vocab_size=4, order=0)
  with pytest.raises(ValueError, match="vocab|lie in"):
    ngram_root_surprisal(windows, np.array([0]), vocab_size=3, order=2)
  with pytest.raises(ValueError, match="valid"):
    ngram_root_surprisal(windows, np.array([0]), vocab_size=4, order=2, valid=np.ones((1, 2), bool))
