"""Music fingerprints: invariances (transposition, time scale, re-encoding), edits, distinct works, MinHash."""

from __future__ import annotations

import dataclasses
import random
from fractions import Fraction

import music21
import numpy as np
import pytest

from govjax.documentation import music_fingerprint as mf


@pytest.fixture(scope="module")
def chorale():
  return music21.corpus.parse("bach/bwv66.6")


@pytest.fixture(scope="module")
def chorale_fp(chorale):
  return mf.fingerprint_score(chorale)


def _roundtrip(notes, fmt, path):
  mf.score_from_notes(notes).write(fmt, fp=str(path))
  return mf.fingerprint_file(path)


def test_transposed_copy_has_same_content_hash_and_fingerprint(chorale, chorale_fp):
  transposed = mf.fingerprint_score(chorale.transpose(5))
  assert transposed.content_sha256 == chorale_fp.content_sha256
  np.testing.assert_array_equal(transposed.full, chorale_fp.full)
  np.testing.assert_array_equal(transposed.melody, chorale_fp.melody)


def test_time_scaled_copy_written_as_midi_and_musicxml_matches(chorale, chorale_fp, tmp_path):
  notes = mf.notes_from_score(chorale).notes
  doubled = [dataclasses.replace(n, onset=n.onset * 2, duration=n.duration * 2) for n in notes]
  for fmt, name in (("midi", "slow.mid"), ("musicxml", "slow.musicxml")):
    fp = _roundtrip(doubled, fmt, tmp_path / name)
    assert fp.content_sha256 == chorale_fp.content_sha256, fmt
    assert mf.estimate_jaccard(fp.full, chorale_fp.full) == 1.0


def test_musicxml_to_midi_reencoding_matches(chorale, chorale_fp, tmp_path):
  chorale.write("musicxml", fp=str(tmp_path / "a.musicxml"))
  reparsed = mf.parse_music_file(tmp_path / "a.musicxml")
  reparsed.write("midi", fp=str(tmp_path / "a.mid"))
  fp = mf.fingerprint_file(tmp_path / "a.mid")
  assert fp.num_voices == 4
  assert fp.content_sha256 == chorale_fp.content_sha256


def test_slightly_edited_copy_is_a_near_copy_but_not_exact(chorale, chorale_fp):
  notes = list(mf.notes_from_score(chorale).notes)
  rng = random.Random(0)
  for i in rng.sample(range(len(notes)), 3):
    notes[i] = dataclasses.replace(notes[i], pitch=notes[i].pitch + 2)
  edited = mf.fingerprint_notes(mf.NoteList(tuple(notes), 4))
  assert edited.content_sha256 != chorale_fp.content_sha256
  assert mf.estimate_jaccard(edited.full, chorale_fp.full) >= 0.6


def test_distinct_chorales_do_not_match(chorale_fp):
  for work in ("bach/bwv10.7", "bach/bwv101.7", "bach/bwv26.6"):
    other = mf.fingerprint_score(music21.corpus.parse(work))
    assert other.content_sha256 != chorale_fp.content_sha256
    assert mf.estimate_jaccard(other.full, chorale_fp.full) < 0.2, work


def test_minhash_estimate_tracks_exact_jaccard():
  common = {f"s{i}".encode() for i in range(300)}
  a = common | {f"a{i}".encode() for i in range(100)}
  b = common | {f"b{i}".encode() for i in range(100)}
  exact = len(a & b) / len(a | b)  # 0.6
  estimate = mf.estimate_jaccard(mf.minhash_signature(a), mf.minhash_signature(b))
  assert abs(estimate - exact) < 0.18  # 4 standard deviations at 128 permutations


def test_signature_serialisation_round_trip(chorale_fp):
  text = mf.encode_signature(chorale_fp.full)
  assert len(text) == 684
  np.testing.assert_array_equal(mf.decode_signature(text), chorale_fp.full)
  restored = mf.MusicFingerprint.from_json(chorale_fp.to_json())
  np.testing.assert_array_equal(restored.melody, chorale_fp.melody)
  assert restored.content_sha256 == chorale_fp.content_sha256


def test_melodic_and_harmonic_tokens():
  line = [mf.Note(0, Fraction(0), 60, Fraction(1)), mf.Note(0, Fraction(1), 62, Fraction(1)),
          mf.Note(0, Fraction(3), 59, Fraction(1))]
  assert mf.melodic_tokens(line, Fraction(1)) == ["2:0", "-3:2"]
  chords = [mf.Note(v, Fraction(0), p, Fraction(1)) for v, p in enumerate((67, 64, 60))]
  chords += [mf.Note(v, Fraction(1), p, Fraction(1)) for v, p in enumerate((62, 59, 55))]
  assert mf.harmonic_tokens(chords) == ["0.4.7>7", "0.4.7"]


def test_canonical_content_ignores_voice_assignment_and_scale():
  notes = [mf.Note(0, Fraction(1), 67, Fraction(1)), mf.Note(1, Fraction(1), 60, Fraction(2)),
           mf.Note(0, Fraction(2), 65, Fraction(1))]
  merged = [dataclasses.replace(n, voice=0, pitch=n.pitch - 7, onset=n.onset * 3, duration=n.duration * 3)
            for n in notes]
  assert mf.content_sha256(notes) == mf.content_sha256(merged)
  assert mf.content_sha256(notes) != mf.content_sha256(notes[:2])


def test_empty_fingerprint_never_matches():
  empty = mf.fingerprint_notes(mf.NoteList((), 0))
  assert empty.full_size == 0 and empty.melody_size == 0
  with pytest.raises(mf.MusicParseError):
    mf.parse_music_file("/nonexistent/file.mid")
