"""Near-duplicate report: planted copies, same-melody re-harmonisations, LSH agrees with exhaustive."""

from __future__ import annotations

import dataclasses

import music21
import pytest

from govjax.documentation import duplicates
from govjax.documentation import manifest as mfst
from govjax.documentation import music_fingerprint as mf


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
  works.append({"work_id": "planted/same-melody", "notes": mf.NoteList(tuple(soprano + lower), 4),
                "sha256": "c" * 64})
  return mfst.build_records(works)


def test_planted_duplicates_are_found_at_their_levels(records):
  report = duplicates.find_duplicates(records)
  levels = {(p.work_a, p.work_b): p.level for p in report.pairs}
  assert levels[("bach/bwv66.6", "planted/near-copy")] == "near-copy"
  assert levels[("bach/bwv10.7", "planted/exact")] == "exact-content"
  assert levels[("bach/bwv101.7", "planted/same-melody")] == "same-melody"
  assert ("bach/bwv26.6", "planted/same-melody") not in levels or levels[
      ("bach/bwv26.6", "planted/same-melody")] != "near-copy"
  distinct = {("bach/bwv66.6", "bach/bwv10.7"), ("bach/bwv101.7", "bach/bwv26.6")}
  assert not distinct & set(levels)
  near = next(p for p in report.pairs if p.level == "near-copy")
  assert 0.45 <= near.full_jaccard < 1.0
  assert report.groups() == [["bach/bwv10.7", "planted/exact"], ["bach/bwv66.6", "planted/near-copy"]]
  assert report.counts()["same-melody"] >= 1
  assert json_round_trip(report.to_json())["counts"] == report.counts()


def test_lsh_candidates_agree_with_exhaustive_search(records):
  lsh = duplicates.find_duplicates(records)
  exhaustive = duplicates.find_duplicates(records, exhaustive=True)
  assert [(p.work_a, p.work_b, p.level) for p in lsh.pairs] == [
      (p.work_a, p.work_b, p.level) for p in exhaustive.pairs]


def json_round_trip(data):
  import json

  return json.loads(json.dumps(data))
