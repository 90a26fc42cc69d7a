"""The controlled rule corpus: the rule holds where it should, secrets sit only in restricted works."""

from __future__ import annotations

import numpy as np

from govjax.data.rule_corpus import RULE, SECRET, TRIGGER, make_rule_corpus, rule_formula, secret_references
from govjax.data.tokenizer import HOLD, MIN_PITCH, PITCH_OFFSET


def _corpus():
  return make_rule_corpus(seed=3, num_train=10, restricted_fraction=0.4, num_heldout=3, windows=5)


def test_rule_and_secrets_only_in_restricted_works():
  corpus = _corpus()
  assert int(corpus.restricted.sum()) == 4
  per_work_rule = np.array([(corpus.train_roles[corpus.train_work == w] == RULE).any() for w in range(10)])
  per_work_secret = np.array([(corpus.train_roles[corpus.train_work == w] == SECRET).any() for w in range(10)])
  np.testing.assert_array_equal(per_work_rule, corpus.restricted)
  np.testing.assert_array_equal(per_work_secret, corpus.restricted)
  assert len(corpus.secrets) == 4
  assert not (corpus.heldout["background"].roles != 0).any()
  assert not (corpus.heldout["rule"].roles == SECRET).any()


def test_rule_positions_follow_the_formula_in_the_works_key():
  corpus = _corpus()
  tokens, roles = corpus.heldout["rule"].tokens, corpus.heldout["rule"].roles
  row = int(np.flatnonzero((roles == TRIGGER).any(axis=1))[0])
  trigger = tokens[row][roles[row] == TRIGGER]
  tonic = (int(trigger[3]) - PITCH_OFFSET + MIN_PITCH + 7 - 48) % 12
  formula = rule_formula(tonic, 0)[1]
  rule = tokens[row][roles[row] == RULE].reshape(6, 4)
  expected = np.array([[t if t == HOLD else t - MIN_PITCH + PITCH_OFFSET for t in f] for f in formula])
  same = rule == expected
  assert same[[0, 2, 3, 4, 5]].all() and same[1, [0, 2, 3]].all()  # the V7's alto is the varied position


def test_control_pieces_break_the_rule_and_the_corpus_is_deterministic():
  corpus, again = _corpus(), _corpus()
  np.testing.assert_array_equal(corpus.train_tokens, again.train_tokens)
  rule, control = corpus.heldout["rule"], corpus.heldout["control"]
  assert (rule.roles == RULE).sum() == (control.roles == RULE).sum()
  assert (rule.tokens[rule.roles == RULE] == HOLD).mean() > (control.tokens[control.roles == RULE] == HOLD).mean() - 1
  refs = secret_references(corpus.train_tokens[corpus.secrets[0][0]], corpus.secrets[0][1], 5, seed=0)
  start = corpus.secrets[0][1]
  assert refs.shape == (5, 64) and (refs[:, :start] == corpus.train_tokens[corpus.secrets[0][0]][:start]).all()
