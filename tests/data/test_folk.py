"""The Essen folk-melody token stream: round trip, distinct works, diatonic variation."""

import numpy as np

from govjax.data.folk import FIRST_CHAR_ID, FOLK_VOCAB_SIZE, decode, encode, folk_works, transpose_diatonic


def test_encode_decode_round_trip_and_vocabulary():
  text = "d4A2c2 | d4d4 | ^F2G4 _E2"
  tokens = encode(text)
  assert decode(tokens) == text
  assert tokens.min() >= FIRST_CHAR_ID and tokens.max() < FOLK_VOCAB_SIZE


def test_works_are_distinct_and_long_enough():
  works = folk_works(max_works=200, min_length=128)
  assert len(works) == 200
  assert len({w.text for w in works}) == 200 and len({w.work_id for w in works}) == 200
  assert min(len(w.text) for w in works) >= 128
  assert works[0].work_id == folk_works(max_works=1, min_length=128)[0].work_id  # fixed order


def test_transpose_diatonic_moves_letters_only():
  tokens = encode("C2D2|g4 z2 B")
  assert decode(transpose_diatonic(tokens, 1)) == "D2E2|a4 z2 c"
  assert decode(transpose_diatonic(tokens, -1)) == "C2C2|f4 z2 A"  # clipped at the bottom
  assert np.array_equal(transpose_diatonic(tokens, 0), tokens)
