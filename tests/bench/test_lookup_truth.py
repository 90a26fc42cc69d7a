"""Ground truth of the lookup benches: corpus files, duplicates and tunes decided without the lookup."""

from __future__ import annotations

import dataclasses
import random
from fractions import Fraction

from govjax.bench import lookup_truth
from govjax.documentation import music_fingerprint as mf
from govjax.documentation import music_transforms as mt


def test_corpus_paths_one_file_per_work():
  paths = lookup_truth.corpus_paths("palestrina")
  assert len(paths) == len({p.stem for p in paths}) > 1000


def test_duplicate_checks_accept_copies_and_reject_shuffled_notes():
  work_id, parsed, reason = lookup_truth.parse_corpus_work(str(lookup_truth.corpus_paths("bach")[0]))
  assert parsed is not None, (work_id, reason)
  notes = parsed[2]
  transposed = mf.NoteList(tuple(mt.time_scale(mt.transpose(notes.notes, 5), Fraction(2))),
                           notes.num_voices)
  assert lookup_truth.verified_duplicates(notes, transposed)[0]
  assert lookup_truth.note_overlap(notes.notes, notes.notes) == 1.0
  rng = random.Random(0)
  pitches = [n.pitch for n in notes.notes]
  rng.shuffle(pitches)
  shuffled = mf.NoteList(tuple(dataclasses.replace(n, pitch=p) for n, p in zip(notes.notes, pitches, strict=True)),
                         notes.num_voices)
  assert not lookup_truth.verified_duplicates(notes, shuffled)[0]
