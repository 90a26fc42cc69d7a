"""Tests for govjax.data.corpus: metadata, part selection, splits, and skip reporting on bad files."""

from __future__ import annotations

import collections
import hashlib
import shutil

import music21
import numpy as np
import pytest

from govjax.data import corpus, tokenizer


def _score(part_names, pitch="C4"):
  score = music21.stream.Score()
  for name in part_names:
    part = music21.stream.Part()
    part.partName = name
    part.append(music21.note.Note(pitch, quarterLength=4))
    score.insert(0, part)
  return score


def test_work_id_and_source_path_naming(tmp_path):
  root = corpus.corpus_root()
  assert corpus.work_id_for(root / "bach" / "bwv10.7.mxl", root) == "bach/bwv10.7"
  analysis = root / "bach" / "choraleAnalyses" / "r001.rntxt"
  assert corpus.work_id_for(analysis, root) == "bach/choraleAnalyses/r001"
  assert corpus.work_id_for(tmp_path / "bach" / "x", tmp_path) == "bach/x"


def test_split_is_a_pinned_function_of_the_work_id():
  # Pinned: changing the hash would move works between splits (train/test leakage across versions).
  assert [corpus.split_for_work(w) for w in ("bach/bwv10.7", "bach/bwv1.6", "bach/bwv103.6")] == [
      "test", "train", "validation"]
  ids = [f"bach/bwv{i}.{j}" for i in range(400) for j in range(5)]
  counts = collections.Counter(corpus.split_for_work(w) for w in ids)
  assert set(counts) == set(corpus.SPLITS)
  for split, fraction in corpus.SPLIT_FRACTIONS.items():
    assert abs(counts[split] / len(ids) - fraction) < 0.03, counts
  assert [corpus.split_for_work(w) for w in ids] == [corpus.split_for_work(w) for w in ids]


@pytest.mark.parametrize("name, voice", [
    ("Soprano", "Soprano"), ("soprano", "Soprano"), ("Soprano\rOboe 1,2\rViolin1", "Soprano"),
    ("Bass Continuo", "Bass"), ("Soprano 1", None), ("Horn 2", None), ("Continuo", None), (None, None),
])
def test_voice_of_part_name(name, voice):
  assert corpus._voice_of(name) == voice


def test_select_satb_parts():
  four = _score(["A", "B", "C", "D"])
  assert corpus.select_satb_parts(four) == (four, ())
  with_horn = _score(["Horn 2", "Bass", "Tenor", "Alto", "Soprano", "Timpani"])
  reduced, dropped = corpus.select_satb_parts(with_horn)
  assert [p.partName for p in reduced.parts] == list(tokenizer.VOICE_NAMES)
  assert dropped == ("Horn 2", "Timpani")
  with pytest.raises(corpus.WorkSkipped, match="expected 4 voices, found 5 parts") as info:
    corpus.select_satb_parts(_score(["Soprano 1", "Soprano 2", "Alto", "Tenor", "Bass"]))
  assert info.value.reason == "not four voices"
  with pytest.raises(corpus.WorkSkipped, match="found 2 parts"):
    corpus.select_satb_parts(_score(["Piano", "Piano"]))
  with pytest.raises(corpus.WorkSkipped) as info:
    corpus.select_satb_parts(music21.stream.Opus())
  assert info.value.reason == "not a score"


def test_parse_work_metadata_of_a_real_chorale():
  path = corpus.corpus_root() / "bach" / "bwv10.7.mxl"
  parsed = corpus.parse_work(path)
  work = parsed.work
  assert work.work_id == "bach/bwv10.7"
  assert work.source_path == "bach/bwv10.7.mxl"
  assert work.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
  assert (work.composer, work.collection) == ("J. S. Bach", "music21 corpus: bach")
  assert work.title == "bwv10.7"  # no title in the file's metadata: the file stem
  assert work.key == "G minor"
  assert parsed.split == corpus.split_for_work("bach/bwv10.7")
  assert work.length == work.tokens.size == 4 * parsed.num_frames == 4 * 352
  assert parsed.adjustments == {} and parsed.dropped_parts == ()
  np.testing.assert_array_equal(work.tokens, tokenizer.encode_score(music21.converter.parse(path)).tokens)


def test_parse_work_selects_satb_from_a_score_with_instruments():
  parsed = corpus.parse_work(corpus.corpus_root() / "bach" / "bwv1.6.mxl")
  assert parsed.dropped_parts == ("Horn 2",)
  assert parsed.adjustments == {"parts_dropped": 1}


def test_collect_works_skips_and_reports_bad_files(tmp_path):
  """Corrupt, unparsable, wrong-voice-count and duplicate files are skipped with reasons; nothing crashes."""
  bach = tmp_path / "bach"
  bach.mkdir()
  real = corpus.corpus_root() / "bach" / "bwv10.7.mxl"
  shutil.copy(real, bach / "good.mxl")
  shutil.copy(real, bach / "copy.mxl")  # same music under another name
  (bach / "garbage.mxl").write_bytes(np.random.default_rng(0).bytes(2000))
  (bach / "noise.xml").write_bytes(b"\x00\xff not xml at all \x89PNG")
  (bach / "truncated.xml").write_text("<?xml version='1.0'?><score-partwise><part-list>")
  (bach / "good.krn").write_text("not read: good.mxl is preferred")
  _score(["Soprano", "Alto", "Tenor"]).write("musicxml", fp=str(bach / "three.musicxml"))
  _score(["Soprano", "Alto", "Tenor", "Bass"], pitch="C8").write("musicxml", fp=str(bach / "high.musicxml"))

  works, report = corpus.collect_works(sorted(bach.iterdir()), root=tmp_path, progress=False)

  assert [w.work.work_id for w in works] == ["bach/copy"]  # "copy" sorts first, so "good" is the duplicate
  assert report.files_seen == 8 and report.kept == 1
  assert report.counts_by_reason() == {
      "duplicate encoding": 1, "unparsable": 3, "not four voices": 1, "encoding error": 1,
      "duplicate content": 1,
  }
  by_path = {s.source_path: s for s in report.skipped}
  assert by_path["bach/good.krn"].detail == "also encoded as bach/good.mxl"
  assert by_path["bach/good.mxl"].detail == "same tokens as bach/copy"
  assert by_path["bach/three.musicxml"].detail.startswith("expected 4 voices, found 3 parts")
  assert "midi 108" in by_path["bach/high.musicxml"].detail
  corrupt = ("garbage.mxl", "noise.xml", "truncated.xml")
  assert {by_path[f"bach/{name}"].reason for name in corrupt} == {"unparsable"}
  assert report.kept + len(report.skipped) == report.files_seen

  saved = tmp_path / "skipped.json"
  report.save(saved)
  assert corpus.SkipReport.load(saved) == report


def test_collect_works_max_works_fills_every_split():
  works, report = corpus.collect_works(max_works=3, progress=False)
  assert sorted(w.split for w in works) == ["test", "train", "validation"]
  assert all(w.split == corpus.split_for_work(w.work.work_id) for w in works)
  assert report.kept == 3 and report.max_works == 3
  assert report.kept + len(report.skipped) == report.files_seen
  with pytest.raises(ValueError, match="at least 3"):
    corpus.collect_works(max_works=2, progress=False)


def test_parallel_parsing_matches_serial():
  root = corpus.corpus_root()
  paths = [root / "bach" / name for name in ("bwv10.7.mxl", "bwv846.mxl", "bwv67.4.xml")]
  serial, serial_report = corpus.collect_works(paths, num_workers=1, progress=False)
  parallel, parallel_report = corpus.collect_works(paths, num_workers=2, progress=False)
  assert [w.work.work_id for w in serial] == ["bach/bwv10.7", "bach/bwv67.4"]
  assert [w.work.work_id for w in parallel] == [w.work.work_id for w in serial]
  for a, b in zip(serial, parallel, strict=True):
    np.testing.assert_array_equal(a.work.tokens, b.work.tokens)
  assert parallel_report == serial_report
