"""The lookup measurement at scale on two small Essen files and a few chorales: cache, rates, variant recall."""

from __future__ import annotations

import pathlib

import pytest

from govjax.bench import lookup_distinct as ld
from govjax.data import folk


def _essen(name: str) -> pathlib.Path:
  return next(p for p in folk.essen_paths() if p.stem == name)


def test_essen_file_works_are_cached_per_file(tmp_path, monkeypatch):
  path = _essen("erk5")
  songs, skipped = ld._cached(tmp_path, "essen", path, lambda: ld.essen_file_works(path))
  assert len(songs) + sum(skipped.values()) == 27  # 27 X: records, none dropped silently
  assert all(w.startswith("essen/erk5/") and len(n.notes) >= ld.MIN_NOTES for w, _, n in songs)
  assert len({sha for _, sha, _ in songs}) == len(songs)
  monkeypatch.setattr(ld, "essen_file_works", lambda p: pytest.fail("parsed again instead of read from the cache"))
  again, _ = ld._cached(tmp_path, "essen", path, lambda: ld.essen_file_works(path))
  assert [w for w, _, _ in again] == [w for w, _, _ in songs]
  assert [n.notes for _, _, n in again] == [n.notes for _, _, n in songs]


def test_measure_distinct_on_variants_and_chorales(tmp_path, monkeypatch):
  monkeypatch.setattr(ld, "essen_paths", lambda: [_essen("variant0"), _essen("erk5")])
  section = ld.measure_distinct(num_distinct=25, seed=0, cache=tmp_path, max_chorales=6)
  assert section["folk_queries"] == 25 and section["folk_documented"] == 25 and section["chorales"] == 6
  assert section["index_records"] == 25 + 6
  rates = section["copy_false_positives"]
  assert rates["all"]["queries"] == 31 and rates["all"]["events"] == rates["folk"]["events"] + rates[
      "chorales"]["events"]
  assert 0 < rates["all"]["upper95"] < 0.2
  # variant0.abc holds variants of a few tunes: pairs exist and the lookup finds some of them (between two
  # one-voice works it answers only from a tune score of ONE_VOICE_THRESHOLD, which looser variants miss)
  variants = section["folk_variant_recall"]
  assert variants["pairs"] >= 3 and variants["found"] >= 2
  assert section["collection"] == "essenFolksong" and section["role"] == "development"
  assert variants["ci95"][0] <= variants["recall"] <= variants["ci95"][1]
  assert section["verified_variant_answers"] >= variants["found"]
  assert len(section["unverified_copy_answers"]) >= rates["all"]["events"]


def test_relation_is_a_ground_truth_independent_of_the_lookup():
  path = _essen("variant0")
  songs, _ = ld.essen_file_works(path)
  notes = {w: n for w, _, n in songs}
  first, second = notes["essen/variant0/18"], notes["essen/variant0/20"]  # two variants of one tune
  assert ld.relation(first, first)["duplicate"]
  assert ld.relation(first, second)["tune"] >= 0.7 and ld.relation(first, second)["duplicate"]
  unrelated = ld.relation(first, notes["essen/variant0/1"])
  assert not unrelated["duplicate"] and not unrelated["same_tune"] and unrelated["tune"] < 0.5


def test_collections_are_music21_corpus_folders():
  assert ld.collection_paths("oneills1850") and all(p.suffix == ".abc" for p in ld.collection_paths("oneills1850"))
  with pytest.raises(ValueError, match="no ABC files"):
    ld.collection_paths("no-such-collection")


def test_extra_query_collections_are_held_out_queries(tmp_path, monkeypatch):
  monkeypatch.setattr(ld, "essen_paths", lambda: [_essen("variant0")])
  section = ld.measure_distinct(num_distinct=5, seed=0, cache=tmp_path, max_chorales=2,
                                extra_query_collections=("nottingham-dataset",))  # one file of two tunes
  extra = section["extra_query_collections"]["nottingham-dataset"]
  assert extra["queries"] + sum(extra["skipped"].values()) == 2 and extra["queries"] >= 1
  assert section["index_records"] == 5 + 2  # extra tunes are queries only, never documented
  combined = section["held_out_one_voice"]  # Essen is development data: only the extra tunes are held out
  assert combined["queries"] == extra["queries"] - extra["multi_voice_queries"] >= 1
  assert combined["sources"] == ["nottingham-dataset"]
  assert combined["any_false_positives"]["events"] >= combined["copy_false_positives"]["events"]
  assert 0 < combined["any_false_positives"]["upper95"] <= 1
  with pytest.raises(ValueError, match="development"):
    ld.measure_distinct(num_distinct=5, seed=0, cache=tmp_path, max_chorales=2,
                        extra_query_collections=(ld.DEVELOPMENT_COLLECTION,))


def test_reused_settings_are_found_as_copies_and_other_settings_as_the_same_tune(tmp_path, monkeypatch):
  import music21  # noqa: PLC0415 (slow import, only this test needs the corpus paths)

  chorales = ["bach/bwv326", "bach/bwv327", "bach/bwv65.7", "bach/bwv144.6"]
  monkeypatch.setattr(ld.lookup_truth, "corpus_paths",
                      lambda composer="bach": [pathlib.Path(music21.corpus.getWork(w)) for w in chorales])
  monkeypatch.setattr(ld, "essen_paths", lambda: [_essen("variant0")])
  section = ld.measure_distinct(num_distinct=5, seed=0, cache=tmp_path)
  assert section["chorales"] == 4
  # bwv326 / bwv327: one setting (three voices recur, the bass re-written), found both ways as a copy
  assert section["reused_setting_recall"]["pairs"] == 2 and section["reused_setting_recall"]["found"] == 2
  # bwv65.7 / bwv144.6: two harmonisations of one tune, answered as the same tune, not as a copy
  assert section["same_tune_recall"]["pairs"] == 2 and section["same_tune_recall"]["found"] == 2
  assert section["copy_false_positives"]["chorales"]["events"] == 0
  assert section["copy_answers_for_same_tune_pairs"] == 0
