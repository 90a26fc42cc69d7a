"""Near-duplicate report: planted copies, excerpts and re-harmonisations at the lookup's levels; candidates agree
with exhaustive search."""

from __future__ import annotations

import dataclasses

import music21
import pytest

from govjax.documentation import duplicates
from govjax.documentation import manifest as mfst
from govjax.documentation import music_fingerprint as mf
from govjax.documentation.lookup import ManifestIndex


@pytest.fixture(scope="module")
def records():
  notes = {w: mf.notes_from_score(music21.corpus.parse(w)) for w in
           ("bach/bwv66.6", "bach/bwv10.7", "bach/bwv101.7", "bach/bwv26.6")}
  works = [{"work_id": w, "notes": n, "sha256": str(i) * 64} for i, (w, n) in enumerate(notes.items())]
  a = list(notes["bach/bwv66.6"].notes)
  edited = [dataclasses.replace(n, pitch=n.pitch + 4 + (1 if i % 40 == 0 else 0)) for i, n in enumerate(a)]
  works.append({"work_id": "planted/near-copy", "notes": mf.NoteList(tuple(edited), 4), "sha256": "a" * 64})
  works.append({"work_id": "planted/exact", "notes": notes["bach/bwv10.7"], "sha256": "b" * 64})
  # A re-harmonisation: the soprano of bwv101.7 over the lower voices of bwv26.6.
  soprano = [n for n in notes["bach/bwv101.7"].notes if n.voice == 0]
  lower = [n for n in notes["bach/bwv26.6"].notes if n.voice > 0]
  works.append({"work_id": "planted/same-tune", "notes": mf.NoteList(tuple(soprano + lower), 4),
                "sha256": "c" * 64})
  # An excerpt: the first 16 quarters of bwv101.7, all voices.
  excerpt = [n for n in notes["bach/bwv101.7"].notes if n.onset < 16]
  works.append({"work_id": "planted/excerpt", "notes": mf.NoteList(tuple(excerpt), 4), "sha256": "d" * 64})
  return mfst.build_records(works)


def test_planted_duplicates_are_found_at_their_levels(records):
  report = duplicates.find_duplicates(records)
  levels = {(p.work_a, p.work_b): p.level for p in report.pairs}
  assert levels[("bach/bwv66.6", "planted/near-copy")] == "near-copy"
  assert levels[("bach/bwv10.7", "planted/exact")] == "exact-content"
  assert levels[("bach/bwv101.7", "planted/same-tune")] == "same-tune"
  # three of bwv26.6's four voices under another tune: its setting re-used (a re-voiced copy), not a same tune
  assert levels[("bach/bwv26.6", "planted/same-tune")] == "near-copy"
  assert levels[("bach/bwv101.7", "planted/excerpt")] == "partial-copy"
  excerpt = next(p for p in report.pairs if p.work_b == "planted/excerpt" and p.work_a == "bach/bwv101.7")
  assert excerpt.detail["partial_kind"] == "planted/excerpt is part of bach/bwv101.7"
  assert excerpt.detail["voices"] and excerpt.score >= 0.8
  distinct = {("bach/bwv10.7", "bach/bwv66.6"), ("bach/bwv101.7", "bach/bwv26.6")}
  assert not distinct & set(levels)
  near = next(p for p in report.pairs if p.level == "near-copy" and p.work_b == "planted/near-copy")
  assert 0.5 <= near.score < 1.0 and near.full_jaccard is not None
  assert report.groups() == [["bach/bwv10.7", "planted/exact"], ["bach/bwv26.6", "planted/same-tune"],
                             ["bach/bwv66.6", "planted/near-copy"]]
  assert report.counts()["same-tune"] >= 1 and report.counts()["partial-copy"] >= 1
  assert json_round_trip(report.to_json())["counts"] == report.counts()


def test_the_report_gives_the_lookups_answer(records):
  """Each music pair's level is the lookup's answer for one of the two works queried against the other."""
  report = duplicates.find_duplicates(records)
  index = ManifestIndex(mfst.Manifest({}, records, mf.FingerprintConfig(), mfst.TextFingerprintConfig(), "."))
  for pair in report.pairs:
    if pair.level.startswith("exact"):
      continue
    answers = {m.work_id: m.level for m in index.related_records(pair.detail["query"])}
    other = pair.work_b if pair.detail["query"] == pair.work_a else pair.work_a
    assert answers[other] == pair.level


def test_lsh_candidates_agree_with_exhaustive_search(records):
  lsh = duplicates.find_duplicates(records)
  exhaustive = duplicates.find_duplicates(records, exhaustive=True)
  assert [(p.work_a, p.work_b, p.level) for p in lsh.pairs] == [
      (p.work_a, p.work_b, p.level) for p in exhaustive.pairs]


def json_round_trip(data):
  import json

  return json.loads(json.dumps(data))
