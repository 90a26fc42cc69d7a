"""Lookup from the manifest alone: exact tiers, fingerprint tier, distinct works, model info, CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pathlib
import random
import shutil
from fractions import Fraction

import music21
import pytest

from govjax.documentation import lookup
from govjax.documentation import manifest as mfst
from govjax.documentation import music_fingerprint as mf
from govjax.documentation import music_transforms as mt
from govjax.documentation.melodic_alignment import Comparison, VoicePair
from govjax.documentation.music_notes import Note, NoteList
from govjax.documentation.text_fingerprint import TextFingerprintConfig

DOCUMENTED = ("bach/bwv66.6", "bach/bwv10.7", "bach/bwv101.7", "bach/bwv26.6")


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory):
  """A manifest of four chorales (one excluded) plus a text; the corpus files are not copied."""
  out = tmp_path_factory.mktemp("manifest")
  works = [{"work_id": w, "title": w, "composer": "J. S. Bach", "source_path": f"{w}.mxl",
            "path": str(music21.corpus.getWork(w)), "split": "train"} for w in DOCUMENTED]
  works.append({"work_id": "text/psalm23", "text": "The Lord is my shepherd; I shall not want. He maketh me to lie "
                "down in green pastures: he leadeth me beside the still waters.", "sha256": "b" * 64})
  treatments = {w: {"include": True, "depth": 6, "rule": "permissive", "reason": "CC-PDM-1.0"}
                for w in DOCUMENTED}
  treatments["bach/bwv10.7"] = {"include": False, "rule": "opted-out", "reason": "generative_training notAllowed"}
  rights = {w: {"work_id": w, "licence": "CC-PDM-1.0", "attribution_text": f"J. S. Bach, {w}"} for w in DOCUMENTED}
  records = mfst.build_records(works, rights=rights, treatments=treatments, num_groups=6)
  mfst.write_manifest(out, records, name="t", description="t", url="urn:govjax:t", date_published="2025-01-01")
  return out


@pytest.fixture(scope="module")
def index(manifest_dir):
  return lookup.ManifestIndex(mfst.load_manifest(manifest_dir))


def _notes(work_id):
  return mf.notes_from_score(music21.corpus.parse(work_id)).notes


def _write(notes, path, fmt):
  mf.score_from_notes(notes).write(fmt, fp=str(path))
  return path


def _only(result, work_id):
  assert result.found
  assert result.matches[0].work_id == work_id
  return result.matches[0]


def test_original_file_matches_at_tier_2a(index):
  result = lookup.lookup_file(music21.corpus.getWork("bach/bwv66.6"), index)
  match = _only(result, "bach/bwv66.6")
  assert (match.tier, match.matched_by, match.level, match.score) == ("2a", "exact", "exact-file", 1.0)
  assert match.treatment["label"] == "depth 6/6"
  assert match.record["licence"] == "CC-PDM-1.0"
  assert match.audit == match.provenance_appearances == lookup.NOT_AVAILABLE


def test_transposed_time_scaled_and_reencoded_copies_match_at_tier_2b(index, tmp_path):
  notes = _notes("bach/bwv101.7")
  up5 = [dataclasses.replace(n, pitch=n.pitch + 5) for n in notes]
  slow = [dataclasses.replace(n, onset=n.onset * 2, duration=n.duration * 2) for n in notes]
  music21.corpus.parse("bach/bwv101.7").write("musicxml", fp=str(tmp_path / "x.musicxml"))
  mf.parse_music_file(tmp_path / "x.musicxml").write("midi", fp=str(tmp_path / "reencoded.mid"))
  for path in (_write(up5, tmp_path / "up5.musicxml", "musicxml"), _write(slow, tmp_path / "slow.mid", "midi"),
               tmp_path / "reencoded.mid"):
    match = _only(lookup.lookup_file(path, index), "bach/bwv101.7")
    assert (match.tier, match.matched_by, match.level) == ("2b", "content", "exact-content"), path


def test_edited_copy_matches_at_tier_3_even_via_lsh_and_exhaustive(index, tmp_path):
  notes = list(_notes("bach/bwv26.6"))
  rng = random.Random(1)
  for i in rng.sample(range(len(notes)), 4):
    notes[i] = dataclasses.replace(notes[i], pitch=notes[i].pitch - 1)
  path = _write([dataclasses.replace(n, pitch=n.pitch - 3) for n in notes], tmp_path / "edited.mid", "midi")
  for exhaustive in (False, True):
    match = _only(lookup.lookup_file(path, index, exhaustive=exhaustive), "bach/bwv26.6")
    assert (match.tier, match.matched_by, match.level) == ("3", "alignment", "near-copy")
    assert 0.5 <= match.score < 1.0
    assert min(match.scores["query_coverage"], match.scores["record_coverage"]) == pytest.approx(match.score, abs=1e-4)
    assert len(match.scores["voices"]) == 4


def _music_query(index, notes):
  voices = sorted({n.voice for n in notes})
  renumber = {v: i for i, v in enumerate(voices)}
  note_list = mf.NoteList(tuple(dataclasses.replace(n, voice=renumber[n.voice]) for n in notes), len(voices))
  return lookup.lookup_fingerprint(index, "music", mf.fingerprint_notes(note_list, minhash=False))


def test_partial_copies_are_found_with_their_bars_and_voices(index):
  notes = _notes("bach/bwv101.7")
  rng = random.Random(0)
  excerpt = [n for n in notes if 16 <= n.onset < 32]
  for query, kind in ((excerpt, "part of the work"), (mt.voice_subset(notes, 2, rng), "part of the work"),
                      (mt.add_parts(mt.transpose(notes, 2), 2, rng), "the work within a larger piece")):
    result = _music_query(index, query)
    match = _only(result, "bach/bwv101.7")
    assert (match.level, match.tier, match.scores["partial_kind"]) == ("partial-copy", "3", kind)
    assert kind in match.describe_partial() and "FOUND (partial copy)" in result.format()
  match = _only(_music_query(index, excerpt), "bach/bwv101.7")
  bars = match.scores["voices"][0]["record_bars"]
  assert 4 <= bars[0] <= bars[1] <= 10, bars  # 4/4 with a pickup: onsets 16-32 are bars 5-9
  assert "record bars" in match.describe_partial()


def test_a_single_inner_voice_is_a_partial_copy_only_with_its_rhythm(index):
  tenor = [dataclasses.replace(n, voice=0) for n in _notes("bach/bwv101.7") if n.voice == 2]
  match = _only(_music_query(index, tenor), "bach/bwv101.7")
  assert match.level == "partial-copy" and match.scores["voices"][0]["record_voice"] == 2
  assert match.scores["voices"][0]["rhythm_agreement"] >= lookup.MIN_SINGLE_VOICE_RHYTHM
  # the same pitches with the onsets of a different rhythm: the intervals alone do not make a copy of one voice
  rng = random.Random(1)
  onset, rhythm_changed = tenor[0].onset, []
  for note in tenor:
    duration = note.duration * rng.choice((1, 2, 3)) / 2
    rhythm_changed.append(dataclasses.replace(note, onset=onset, duration=duration))
    onset += duration
  result = _music_query(index, rhythm_changed)
  assert not any(m.work_id == "bach/bwv101.7" for m in result.matches)


def test_ten_percent_edits_ornaments_and_a_new_meter_are_near_copies(index):
  notes = _notes("bach/bwv26.6")
  rng = random.Random(3)
  for query in (mt.edit_pitches(notes, 0.1, rng), mt.ornament(notes, 0.5, rng), mt.change_meter(notes)):
    match = _only(_music_query(index, query), "bach/bwv26.6")
    assert match.level == "near-copy"


def test_same_tune_in_another_setting_is_related_not_found(index):
  soprano = [n for n in _notes("bach/bwv66.6") if n.voice == 0]
  lower = [n for n in _notes("bach/bwv104.6") if n.voice > 0]
  result = _music_query(index, soprano + lower)
  assert not result.found
  assert [m.work_id for m in result.same_tune] == ["bach/bwv66.6"]
  assert result.same_tune[0].level == "same-tune" and result.same_tune[0].score == 1.0
  assert "RELATED (same tune, another setting)" in result.format()
  assert result.same_melody == result.same_tune


def test_one_track_midi_matches_at_tier_2b(index, tmp_path):
  path = _write(mt.merge_tracks(_notes("bach/bwv26.6")), tmp_path / "one_track.mid", "midi")
  match = _only(lookup.lookup_file(path, index), "bach/bwv26.6")
  assert match.level == "exact-content"


def test_excluded_work_reports_its_exclusion(index):
  match = _only(lookup.lookup_file(music21.corpus.getWork("bach/bwv10.7"), index), "bach/bwv10.7")
  assert match.treatment["status"] == "excluded"
  assert match.treatment["label"] == "excluded (generative_training notAllowed)"


def test_distinct_works_are_not_found(index, tmp_path):
  for work_id in ("bach/bwv103.6", "bach/bwv104.6"):
    path = _write(_notes(work_id), tmp_path / f"{work_id.split('/')[1]}.mid", "midi")
    result = lookup.lookup_file(path, index, exhaustive=True)
    assert not result.found and result.matches == [], work_id
    assert "NOT FOUND" in result.format()


def _write_run(root, audit_rows, lineage):
  (root / "audit").mkdir(parents=True, exist_ok=True)
  (root / "audit" / "per_work.jsonl").write_text("".join(json.dumps(r) + "\n" for r in audit_rows))
  (root / "provenance" / "lineage").mkdir(parents=True, exist_ok=True)
  for i, works in enumerate(lineage):
    (root / "provenance" / "lineage" / f"sample{i}.json").write_text(
        json.dumps({"output": f"sample{i}.mid", "works": [{"work_id": w, "score": 0.5, "depth": 6} for w in works]}))


def test_model_info_from_workdir(index, tmp_path):
  _write_run(tmp_path, [{"work_id": "bach/bwv66.6", "extraction_rate": 0.25}],
             [["bach/bwv66.6", "bach/bwv101.7"], ["bach/bwv66.6"], ["bach/bwv101.7", "bach/bwv66.6"]])
  match = _only(lookup.lookup_file(music21.corpus.getWork("bach/bwv66.6"), index, workdir=tmp_path),
                "bach/bwv66.6")
  assert match.audit == {"work_id": "bach/bwv66.6", "extraction_rate": 0.25}
  assert match.provenance_appearances == 3
  other = _only(lookup.lookup_file(music21.corpus.getWork("bach/bwv26.6"), index, workdir=tmp_path),
                "bach/bwv26.6")
  assert other.audit == "no audit row for this work" and other.provenance_appearances == 0
  shutil.rmtree(tmp_path / "provenance")
  result = lookup.lookup_file(music21.corpus.getWork("bach/bwv66.6"), index, workdir=tmp_path)
  assert result.matches[0].provenance_appearances == lookup.NOT_AVAILABLE
  assert result.model["audit"] == "1 works audited"
  (tmp_path / "audit" / "per_work.jsonl").write_text('{"extraction_rate": 1}\n')
  with pytest.raises(ValueError, match="per_work.jsonl:1: row lacks field 'work_id'"):
    lookup.lookup_file(music21.corpus.getWork("bach/bwv66.6"), index, workdir=tmp_path)


def test_text_lookup_and_unknown_types(index, tmp_path):
  (tmp_path / "psalm.txt").write_text("THE LORD IS MY SHEPHERD -- I shall not want.\nHe maketh me to lie down in "
                                      "green pastures; he leadeth me beside the still waters!")
  match = _only(lookup.lookup_file(tmp_path / "psalm.txt", index), "text/psalm23")
  assert match.tier == "2b"
  (tmp_path / "x.unknown").write_text("?")
  with pytest.raises(lookup.QueryError, match="unknown file type"):
    lookup.lookup_file(tmp_path / "x.unknown", index)


def test_lookup_needs_only_the_manifest_files(manifest_dir, tmp_path):
  copy = tmp_path / "copied"
  shutil.copytree(manifest_dir, copy)
  result = lookup.lookup_file(music21.corpus.getWork("bach/bwv66.6"), copy / "croissant.json")
  assert result.matches[0].work_id == "bach/bwv66.6"


def test_cli_lookup_json_and_exit_codes(manifest_dir, tmp_path):
  from govjax.cli import main

  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = main(["lookup", str(music21.corpus.getWork("bach/bwv66.6")), "--manifest", str(manifest_dir), "--json"])
  assert code == 0
  assert json.loads(out.getvalue())["matches"][0]["work_id"] == "bach/bwv66.6"
  path = _write(_notes("bach/bwv103.6"), tmp_path / "other.mid", "midi")
  with contextlib.redirect_stdout(io.StringIO()):
    assert main(["lookup", str(path), "--manifest", str(manifest_dir)]) == 1


def _long_musicxml(path, measures, voices=4):
  """A ``measures``-long piece of ``voices`` parts of quarter notes, written as MusicXML text directly."""
  steps = "CDEFGAB"
  parts = "".join(f"<score-part id='P{v}'><part-name>v{v}</part-name></score-part>" for v in range(voices))
  body = []
  for v in range(voices):
    body.append(f"<part id='P{v}'>")
    for m in range(measures):
      head = "<attributes><divisions>1</divisions></attributes>" if m == 0 else ""
      notes = "".join(f"<note><pitch><step>{steps[(m + b + v) % 7]}</step><octave>{5 - v}</octave></pitch>"
                      "<duration>1</duration><type>quarter</type></note>" for b in range(4))
      body.append(f"<measure number='{m + 1}'>{head}{notes}</measure>")
    body.append("</part>")
  path.write_text(f"<?xml version='1.0'?><score-partwise version='3.1'><part-list>{parts}</part-list>"
                  f"{''.join(body)}</score-partwise>")
  return path


def _long_midi(path, measures, voices=4):
  """The same as a type-1 MIDI file (one track per voice), written byte by byte."""
  tracks = []
  for v in range(voices):
    events = bytearray()
    for i in range(measures * 4):
      pitch = 48 + 7 * v + i % 12
      events += bytes([0x00, 0x90, pitch, 64, 0x83, 0x60, 0x80, pitch, 0])  # on; 480 ticks later off
    events += bytes([0x00, 0xFF, 0x2F, 0x00])
    tracks.append(b"MTrk" + len(events).to_bytes(4, "big") + bytes(events))
  path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + voices.to_bytes(2, "big")
                   + (480).to_bytes(2, "big") + b"".join(tracks))
  return path


def test_a_5000_measure_query_is_refused_fast_with_the_limit_named(index, manifest_dir, tmp_path):
  import time

  queries = [_long_musicxml(tmp_path / "long.musicxml", 5000), _long_midi(tmp_path / "long.mid", 5000)]
  for path in queries:
    start = time.perf_counter()
    with pytest.raises(lookup.QueryError) as error:
      lookup.lookup_file(path, index)
    assert time.perf_counter() - start < 15, path  # counted, not parsed (1-3 s for the MIDI file; parsing: ~1 min)
    assert str(error.value) == (f"{path}: 80,000 notes; a lookup query may hold at most 10,000 (MAX_QUERY_NOTES): "
                                "look up an excerpt of the work instead")
  assert lookup.MAX_QUERY_NOTES == 10_000
  assert lookup.check_query_size(_long_midi(tmp_path / "short.mid", 10)) == 160
  abc = tmp_path / "long.abc"
  abc.write_text("X:1\nT:long\nM:4/4\nL:1/4\nK:C\n" + "C D E F|" * 80_000)
  with pytest.raises(lookup.QueryError, match=r"long.abc: 640,027 bytes; a .abc query may have at most 524,288 "
                                              r"bytes \(MAX_UNCOUNTED_QUERY_BYTES"):
    lookup.lookup_file(abc, index)
  from govjax.cli import main

  with contextlib.redirect_stderr(io.StringIO()) as err:
    assert main(["lookup", str(queries[1]), "--manifest", str(manifest_dir)]) == 2
  assert "80,000 notes; a lookup query may hold at most 10,000 (MAX_QUERY_NOTES)" in err.getvalue()


def _tune(pitches, transpose=0):
  """A one-voice NoteList of quarter notes."""
  return NoteList(tuple(Note(0, Fraction(i), p + transpose, Fraction(1)) for i, p in enumerate(pitches)), 1)


def _one_voice_index(tunes, **thresholds):
  inputs = [{"work_id": w, "title": w, "source_path": f"{w}.abc", "sha256": f"{i:064x}", "notes": notes,
             "split": "train", "modality": "music"} for i, (w, notes) in enumerate(tunes.items())]
  manifest = mfst.Manifest({}, mfst.build_records(inputs), mf.FingerprintConfig(),
                           TextFingerprintConfig(), pathlib.Path("."))
  return lookup.ManifestIndex(manifest, **thresholds)


def test_one_voice_works_need_the_tune_score_for_any_answer():
  rng = random.Random(3)
  melody = [60 + rng.choice((-5, -3, -2, -1, 0, 1, 2, 3, 4, 5, 7)) for _ in range(80)]
  # The first 48 notes kept, the rest a different line: about 0.6 of the longer line aligned.
  variant = melody[:48] + [60 + rng.choice((-7, -4, 6, 8, 9, 10, -8)) for _ in range(32)]
  index = _one_voice_index({"folk/tune": _tune(melody)})
  loose = _one_voice_index({"folk/tune": _tune(melody)}, one_voice_threshold=0.5)
  assert index.one_voice_threshold == lookup.ONE_VOICE_THRESHOLD == 0.7
  query = mf.fingerprint_notes(_tune(variant), index.manifest.music_config, minhash=False)
  matches, same = loose.search_music(query)
  assert [m.level for m in matches] == ["near-copy"]
  assert 0.5 <= matches[0].scores["melody"] < 0.7
  assert index.search_music(query) == ([], [])  # neither a copy nor the same tune below the threshold

  # A transposed copy with one note changed (so not the exact-content tier) is still a near copy.
  copy = list(melody)
  copy[40] += 1
  query = mf.fingerprint_notes(_tune(copy, transpose=5), index.manifest.music_config, minhash=False)
  matches, same = index.search_music(query)
  assert [(m.work_id, m.level) for m in matches] == [("folk/tune", "near-copy")] and not same
  assert matches[0].scores["melody"] >= 0.9
  # The exact transposed copy is found at the exact-content tier.
  query = mf.fingerprint_notes(_tune(melody, transpose=-3), index.manifest.music_config, minhash=False)
  assert [m.level for m in index.search_music(query)[0]] == ["exact-content"]


@pytest.fixture(scope="module")
def settings_index():
  """Chorales of two tunes: bwv327 (whose setting bwv326 re-uses) and bwv144.6 (harmonised again in bwv65.7)."""
  tunes = {w: mf.notes_from_score(music21.corpus.parse(w)) for w in ("bach/bwv327", "bach/bwv144.6", "bach/bwv66.6")}
  return _one_voice_index(tunes)


def _chorale_query(index, work_id):
  notes = mf.notes_from_score(music21.corpus.parse(work_id))
  return index.search_music(mf.fingerprint_notes(notes, index.manifest.music_config, minhash=False))


def test_a_reused_setting_with_a_rewritten_voice_is_a_near_copy(settings_index):
  # bwv326 re-uses bwv327's setting: soprano, alto and tenor recur (the bass is re-written), so less than half of
  # either piece is covered and the coverage rule misses it; voice by voice the setting scores 0.67.
  matches, same = _chorale_query(settings_index, "bach/bwv326")
  assert [(m.work_id, m.level) for m in matches] == [("bach/bwv327", "near-copy")] and not same
  scores = matches[0].scores
  assert scores["copy_axis"] == "setting" and matches[0].score == pytest.approx(scores["setting"], abs=1e-4)
  assert min(scores["query_coverage"], scores["record_coverage"]) < settings_index.copy_threshold
  assert scores["setting"] >= settings_index.setting_threshold == lookup.SETTING_THRESHOLD == 0.6
  assert len(scores["setting_voices"]) == 4 and sum(v >= 0.7 for v in scores["setting_voices"]) == 3
  strict = _one_voice_index({"bach/bwv327": mf.notes_from_score(music21.corpus.parse("bach/bwv327"))},
                            setting_threshold=0.7)
  matches, same = _chorale_query(strict, "bach/bwv326")
  assert not matches and [m.level for m in same] == ["same-tune"]


def test_another_harmonisation_of_the_same_tune_is_same_tune_not_a_copy(settings_index):
  # bwv65.7 and bwv144.6 set one tune (the soprano aligns fully) with other inner voices and bass: no copy.
  matches, same = _chorale_query(settings_index, "bach/bwv65.7")
  assert not matches
  assert [(m.work_id, m.level) for m in same] == [("bach/bwv144.6", "same-tune")]
  assert same[0].scores["melody"] == 1.0 and same[0].scores["setting"] < lookup.SETTING_THRESHOLD


def test_the_tune_in_a_lower_voice_is_the_same_tune(index):
  """A tune carried by the tenor (a cantus firmus) under another melody is still found as the same tune."""
  tune = [dataclasses.replace(n, voice=1, pitch=n.pitch - 12) for n in _notes("bach/bwv66.6") if n.voice == 0]
  above = [dataclasses.replace(n, voice=0, pitch=n.pitch + 5) for n in _notes("bach/bwv104.6") if n.voice == 1]
  result = _music_query(index, above + tune)
  assert [m.work_id for m in result.same_tune] == ["bach/bwv66.6"]
  assert result.same_tune[0].scores["melody_voice"] == 1


def test_lines_of_repeated_notes_make_neither_a_tune_nor_a_partial_copy(index):
  """Plain inner voices that mostly hold a note match other lines by chance: a tune found in a query voice other
  than its highest, or a partial copy, needs at most MAX_REPEATED_SHARE repeated notes among its matches."""
  sketches = mf.voice_sketches(mf.NoteList(tuple(_notes("bach/bwv66.6")), 4))
  record = sketches[:1]

  def tune_match(voice, repeated):
    return Comparison([], 0.1, 0.1, 0.8, voice, melody_repeated=repeated)

  assert index.classify(tune_match(1, 0.2), sketches[:2], record) == "same-tune"
  assert index.classify(tune_match(1, 0.7), sketches[:2], record) is None
  assert index.classify(tune_match(0, 0.7), sketches[:2], record) == "same-tune"  # its highest voice: the tune
  pairs = [VoicePair(v, v, 30, (1, 4), (1, 4), 1.0, 0.8) for v in range(2)]
  partial = Comparison(pairs, 0.9, 0.3, 0.0, None)
  assert index.classify(partial, sketches[:2], sketches) is None
  pairs = [dataclasses.replace(p, repeated=0.3) for p in pairs]
  assert index.classify(dataclasses.replace(partial, pairs=pairs), sketches[:2], sketches) == "partial-copy"
