"""Text fingerprints: normalisation-invariant content hash, MinHash of word shingles."""

from __future__ import annotations

import numpy as np

from govjax.documentation import music_fingerprint as mf
from govjax.documentation import text_fingerprint as tf

TEXT = ("Wer nur den lieben Gott laesst walten und hoffet auf ihn allezeit, den wird er wunderbar erhalten "
        "in aller Not und Traurigkeit. Wer Gott dem Allerhoechsten traut, der hat auf keinen Sand gebaut.")


def test_reencoded_text_has_same_content_hash(tmp_path):
  variant = TEXT.upper().replace(" ", "  \r\n", 3).replace(",", " ;")
  (tmp_path / "a.txt").write_bytes(variant.encode("utf-16"))
  fp = tf.fingerprint_text_file(tmp_path / "a.txt")
  assert fp.content_sha256 == tf.fingerprint_text(TEXT).content_sha256


def test_edited_text_is_similar_and_distinct_text_is_not():
  words = TEXT.split()
  words[10] = "niemals"
  original, edited = tf.fingerprint_text(TEXT), tf.fingerprint_text(" ".join(words))
  assert edited.content_sha256 != original.content_sha256
  assert mf.estimate_jaccard(edited.signature, original.signature) >= 0.5
  other = tf.fingerprint_text("Ein feste Burg ist unser Gott, ein gute Wehr und Waffen; er hilft uns frei aus "
                              "aller Not, die uns itzt hat betroffen.")
  assert mf.estimate_jaccard(other.signature, original.signature) < 0.1


def test_word_shingles_match_a_reference_and_round_trip():
  assert tf.word_shingles("A b, c! d", 3) == {b"a b c", b"b c d"}
  assert tf.word_shingles("one two", 5) == {b"one two"}
  assert tf.word_shingles("  ...  ", 5) == set()
  fp = tf.fingerprint_text(TEXT)
  restored = tf.TextFingerprint.from_json(fp.to_json())
  np.testing.assert_array_equal(restored.signature, fp.signature)
  assert (restored.content_sha256, restored.size, restored.num_words) == (fp.content_sha256, fp.size,
                                                                          fp.num_words)
