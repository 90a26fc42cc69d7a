"""Copier transformations: each does what its name says, deterministically for a given seed."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from govjax.documentation import music_transforms as mt
from govjax.documentation.music_notes import Note

NOTES = [Note(v, Fraction(i), 60 + 4 * v + (i % 5) * 3, Fraction(1)) for v in range(3) for i in range(12)]


def test_every_family_applies_and_is_seeded():
  for family in mt.FAMILIES:
    a = mt.apply(NOTES, family, random.Random(3))
    assert a == mt.apply(NOTES, family, random.Random(3)) and a, family
  with pytest.raises(ValueError, match="unknown transformation family 'reverse'"):
    mt.apply(NOTES, "reverse", random.Random(0))


def test_partial_families_keep_part_or_add_to_it():
  rng = random.Random(0)
  assert len({n.voice for n in mt.voice_subset(NOTES, 2, rng)}) == 2
  excerpt = mt.excerpt(NOTES, 0.5, rng)
  assert len({n.onset for n in excerpt}) == 6 and set(excerpt) <= set(NOTES)
  added = mt.add_parts(NOTES, 2, rng)
  assert len({n.voice for n in added}) == 5 and set(NOTES) <= set(added)


def test_pitch_edits_ornaments_and_meter():
  edited = mt.edit_pitches(NOTES, 0.25, random.Random(1))
  assert sum(a.pitch != b.pitch for a, b in zip(NOTES, edited, strict=True)) == 9
  ornamented = mt.ornament(NOTES, 1.0, random.Random(1))
  assert len(ornamented) > len(NOTES) and sum(n.duration for n in ornamented) == sum(n.duration for n in NOTES)
  meter = mt.change_meter(NOTES)
  assert [n.onset for n in meter if n.voice == 0][:6] == [0, 2, 3, 4, 5, 7]
  assert [n.pitch for n in meter] == [n.pitch for n in NOTES]
  assert {n.voice for n in mt.merge_tracks(NOTES)} == {0} and {n.voice for n in mt.split_tracks(NOTES)} == {0, 1}
