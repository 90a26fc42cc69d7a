"""Four-voice settings at small scale: distinct settings not related, re-used settings copies, re-sets same tune."""

from __future__ import annotations

import pathlib

from govjax.bench import lookup_distinct as ld
from govjax.bench import lookup_settings as ls
from govjax.data import folk


def _essen(name: str) -> pathlib.Path:
  return next(p for p in folk.essen_paths() if p.stem == name)


def test_measure_settings_on_one_essen_file(tmp_path, monkeypatch):
  monkeypatch.setattr(ld, "essen_paths", lambda: [_essen("erk5")])
  development = ld.collection_paths
  monkeypatch.setattr(ld, "collection_paths",
                      lambda name: [_essen("folkHaydn")] if name == "held" else development(name))
  section = ls.measure_settings(num_distinct=12, seed=0, cache=tmp_path, reused=8, max_chorales=4,
                                held_out=["held"])
  held = section["held_out"]
  assert held["collections"] == ["held"] and held["queries"] >= 40  # every tune of the held-out file
  assert held["copy_false_positives"]["queries"] == held["queries"]
  assert held["unverified_answers"] or held["copy_false_positives"]["events"] == 0
  assert section["distinct_queries"] == 12 and section["index_records"] == 12 + 4
  assert section["copy_false_positives"]["queries"] == 12
  assert section["copy_false_positives"]["events"] == 0 and section["same_tune_false_positives"]["events"] == 0
  assert 0.2 < section["copy_false_positives"]["upper95"] < 0.25  # 1 - 0.05 ** (1 / 12)
  reused = section["reused_setting_recall"]
  assert reused["pairs"] == 8 and reused["ground_truth_duplicates"] == 8 and reused["recall"] == 1.0
  other = section["other_setting"]
  assert other["same_tune_recall"]["pairs"] + other["ground_truth_duplicates"] == 8
  assert other["same_tune_recall"]["recall"] >= 0.75 and other["copy_answers"]["found"] == 0


def test_settings_differ_by_salt_and_keep_the_tune():
  works, _ = ld.essen_file_works(_essen("erk5"))
  work_id, _, notes = works[0]
  a = ls.setting_of(notes, 0, work_id)
  assert a == ls.setting_of(notes, 0, work_id) and a.num_voices == 4
  b = ls.setting_of(notes, 0, work_id, "other", rhythm="beat")
  assert [n.pitch for n in a.notes if n.voice == 0] == [n.pitch for n in b.notes if n.voice == 0]
  assert a.notes != b.notes
  assert ld.relation(a, b)["tune"] == 1.0
