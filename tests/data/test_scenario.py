import collections
import pathlib
import re

import music21
import numpy as np
import pytest

from govjax import cli
from govjax.data.scenario import (
  DEFAULT_MIX,
  MUSIC21_CORPUS_LICENCE,
  MUSIC21_CORPUS_NOTE,
  MUSIC21_LICENCE_QUOTES,
  default_scenario,
  embedded_licence_notice,
  load_dataset_works,
  real_records,
  resolve_records,
  structural_record,
)
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import default_policy
from govjax.rights.records import RecordValidationError, load_records, save_records

BACH = {"work_id": "bach/bwv10.7", "title": "bwv10.7", "composer": "J. S. Bach",
        "source_path": "bach/bwv10.7.mxl", "sha256": "ab" * 32}


def _flat(text):
  """Whitespace collapsed, '#' comment prefixes of license.txt lines removed."""
  return re.sub(r"\s+", " ", re.sub(r"(?m)^#\s*", "", text))


def test_real_records_of_bach_are_public_domain_with_the_corpus_terms():
  record = real_records([BACH])[0]
  assert (record.licence, record.use, record.attribution) == ("CC-PDM-1.0", "all", "no")
  assert record.encoding_licence == MUSIC21_CORPUS_LICENCE and record.encoding_licence_class == "unknown"
  assert record.sha256 == "ab" * 32 and record.creators == ("J. S. Bach",) and not record.simulated
  assert "bach/bwv10.7.mxl" in record.source and "bach/bwv10.7.mxl" in record.attribution_text
  assert "1750" in record.notes and "No licence notice in the file" in record.notes


def test_the_quoted_music21_licence_lines_are_accurate():
  site = pathlib.Path(music21.__file__).parent.parent
  for name, quotes in MUSIC21_LICENCE_QUOTES.items():
    text = _flat((site / name).read_text())
    for quote in quotes:
      assert _flat(quote) in text, (name, quote)
      assert quote in MUSIC21_CORPUS_NOTE


def test_embedded_notices_are_read_from_the_source_file():
  assert embedded_licence_notice("bach/bwv10.7.mxl") is None
  notice = embedded_licence_notice("bach/bwv277.krn")
  assert "Center for Computer Assisted Research in the Humanities" in notice
  record = real_records([{**BACH, "work_id": "bach/bwv277", "source_path": "bach/bwv277.krn"}])[0]
  assert "Rights to all derivative electronic formats reserved" in record.notes
  assert embedded_licence_notice("no/such/file.xml") is None


def test_other_composers_and_structural_works_are_not_guessed():
  other, structural = real_records([{**BACH, "work_id": "x/y", "composer": "Someone Else"},
                                    {"work_id": "structural/scales-C-major", "title": "Scales in C major"}])
  assert other.licence == "unknown" and other.licence_class == "unknown"
  assert (structural.licence, structural.content_class, structural.creators) == (
      "CC0-1.0", "structural", ("govjax generator",))
  assert structural == structural_record("structural/scales-C-major").model_copy(
      update={"title": "Scales in C major", "attribution_text": structural.attribution_text})


def test_default_scenario_is_deterministic_and_order_independent():
  ids = [f"bach/w{i:03d}" for i in range(50)]
  a = {r.work_id: r for r in default_scenario(ids, seed=1)}
  b = {r.work_id: r for r in default_scenario(ids[::-1], seed=1)}
  assert a == b
  c = {r.work_id: r for r in default_scenario(ids, seed=2)}
  assert any(a[i].licence != c[i].licence for i in ids)
  assert [r.work_id for r in default_scenario(ids[::-1], seed=1)] == ids[::-1]


def test_default_scenario_mix_and_marking():
  ids = [f"bach/w{i:03d}" for i in range(400)] + ["structural/ii-V-I-C-major"]
  records = default_scenario(ids, seed=0)
  corpus = [r for r in records if not r.work_id.startswith("structural/")]
  categories = collections.Counter(re.search(r"category: ([\w-]+)", r.notes).group(1) for r in corpus)
  assert categories == {name: round(share * 400) for name, share in DEFAULT_MIX}
  assert all(r.simulated and r.scenario == "default-v1 seed=0" and "SIMULATED" in r.notes for r in corpus)
  for r in corpus:
    category = re.search(r"category: ([\w-]+)", r.notes).group(1)
    assert r.opted_out == (category == "opted-out")
  structural = records[-1]
  assert not structural.simulated and structural.content_class == "structural"
  classes = collections.Counter(r.licence_class for r in corpus if not r.opted_out)
  assert set(classes) == {"permissive", "restrictive", "unknown"}
  d = apply_policy(records, default_policy(), 6)
  assert d.exclusion_report.num_excluded == 60 and d.rules[-1] == "structural"


def test_small_scenarios_still_hold_every_category():
  records = default_scenario([f"w{i}" for i in range(7)], seed=5)
  assert len({re.search(r"category: ([\w-]+)", r.notes).group(1) for r in records}) == 7
  with pytest.raises(ValueError, match="duplicate"):
    default_scenario(["a", "a"])


def test_resolve_records_from_a_user_file(tmp_path):
  works = [BACH, {"work_id": "structural/scales-C-major", "title": "Scales"}]
  assert resolve_records("real", works) == real_records(works)
  assert resolve_records("default", works, seed=3) == default_scenario(works, seed=3)
  path = tmp_path / "mine.csv"
  save_records(default_scenario([BACH], seed=9), path)
  records = resolve_records(str(path), works)
  assert [r.work_id for r in records] == ["bach/bwv10.7", "structural/scales-C-major"]
  path.write_text(path.read_text().replace("CC", "C C"))
  with pytest.raises(RecordValidationError, match="bach/bwv10.7"):
    resolve_records(path, works)


def test_cli_scenario_for_the_prepared_chorales(prepared_data_dir, tmp_path, capsys):
  out = tmp_path / "scenario.jsonl"
  assert cli.main(["rights", "scenario", "--out", str(out), "--seed", "4", "--data-dir", str(prepared_data_dir)]) == 0
  works = load_dataset_works(prepared_data_dir)
  assert len(works) == 12 and [w.work_id for w in works] == sorted(w.work_id for w in works)
  assert load_records(out) == default_scenario(works, seed=4)
  assert cli.main(["rights", "summary", "--scenario", "real", "--data-dir", str(prepared_data_dir)]) == 0
  assert "12 works, 12 included" in capsys.readouterr().out
  assert cli.main(["rights", "scenario", "--out", str(out), "--data-dir", str(tmp_path / "none")]) == 2


def test_real_records_of_prepared_works_carry_their_hashes(tiny_works):
  records = real_records(tiny_works)
  assert [r.sha256 for r in records] == [w.sha256 for w in tiny_works]
  assert all(r.licence == "CC-PDM-1.0" for r in records)
  assert np.all(apply_policy(records, default_policy(), 4).depth == 4)
