import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govjax import cli
from govjax.rights import optout
from govjax.rights.licences import LICENCE_TABLE
from govjax.rights.records import (
    FIELDS,
    RecordValidationError,
    RightsRecord,
    load_records,
    parse_record,
    read_records,
    records_from_csv,
    records_from_jsonl,
    records_to_csv,
    records_to_jsonl,
    save_records,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fields_of(err):
  return {(p.work_id, p.field) for p in err.value.problems}


# ----------------------------------------------------------------------------------------------------
# Derivation and validation.


def test_terms_are_derived_from_the_licence_table():
  r = parse_record({"work_id": "w", "licence": "cc-by-nc-sa-4.0"})
  terms = (r.licence, r.use, r.attribution, r.share_alike)
  assert terms == ("CC-BY-NC-SA-4.0", "non-commercial", "yes", "yes")
  assert r.licence_class == "restrictive" and not r.opted_out


def test_unknown_licence_terms_are_not_guessed():
  r = parse_record({"work_id": "w", "licence": "Unknown"})
  assert (r.licence, r.use, r.attribution, r.share_alike) == ("unknown", "unspecified", "unknown", "unknown")
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "w", "licence": "unknown", "use": "all"})
  assert _fields_of(err) == {("w", "use")}


def test_licenseref_may_state_its_terms_but_a_listed_licence_may_not_be_contradicted():
  r = parse_record({"work_id": "w", "licence": "LicenseRef-label", "use": "all", "attribution": "yes",
                    "share_alike": "no"})
  assert r.licence_class == "permissive"
  assert parse_record({"work_id": "w", "licence": "LicenseRef-label"}).licence_class == "unknown"
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "bwv1", "licence": "CC-BY-NC-4.0", "use": "all", "share_alike": "yes"})
  assert _fields_of(err) == {("bwv1", "use"), ("bwv1", "share_alike")}
  assert "contradicts licence CC-BY-NC-4.0" in str(err.value)
  # Stating the table's own terms is fine.
  assert parse_record({"work_id": "w", "licence": "MIT", "use": "all", "attribution": "yes"}).licence == "MIT"


def test_tdm_reservation_implies_training_opt_outs_and_contradictions_are_errors():
  r = parse_record({"work_id": "w", "licence": "CC0-1.0", "tdm_reservation": True})
  assert (r.ai_training, r.generative_training, r.opted_out) == ("notAllowed", "notAllowed", True)
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "w", "licence": "CC0-1.0", "tdm_reservation": True,
                  "generative_training": "allowed"})
  assert _fields_of(err) == {("w", "generative_training")}


def test_constrained_counts_as_not_allowed_unless_the_constraint_is_stated():
  bare = parse_record({"work_id": "w", "licence": "CC-BY-4.0", "generative_training": "constrained"})
  stated = parse_record({"work_id": "w", "licence": "CC-BY-4.0", "generative_training": "constrained",
                         "generative_training_constraint": "credit the label in the model card"})
  assert bare.opted_out and "constrained without a stated constraint" in bare.opt_out_reasons[0]
  assert not stated.opted_out
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "w", "licence": "MIT", "ai_training": "allowed", "ai_training_constraint": "x"})
  assert _fields_of(err) == {("w", "ai_training_constraint")}


def test_every_bad_field_is_named_with_the_record():
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "bach/x", "licence": "CC BY", "sha256": "abc", "tdm_reservation": "maybe",
                  "ai_training": "no", "content_class": "generic", "creators": ["ok", " "], "licnse": "MIT"},
                 line=7, source="r.jsonl")
  assert _fields_of(err) == {("bach/x", f) for f in
                             ("licence", "sha256", "tdm_reservation", "ai_training", "content_class",
                              "creators", "licnse")}
  assert all(p.line == 7 and p.source == "r.jsonl" for p in err.value.problems)
  assert "r.jsonl:line 7: record 'bach/x', field 'licnse': unknown field" in str(err.value)


def test_missing_work_id_is_named_by_line():
  with pytest.raises(RecordValidationError) as err:
    parse_record({"licence": "MIT"}, line=3)
  assert _fields_of(err) == {("<line 3>", "work_id")}
  with pytest.raises(RecordValidationError) as err:
    parse_record(["not", "an", "object"], line=4)
  assert _fields_of(err) == {("<line 4>", "<record>")}


def test_optout_helpers():
  assert optout.effective_permission("constrained", "  ") == "notAllowed"
  assert optout.effective_permission("constrained", "research only") == "constrained"
  assert optout.parse_tdm_reservation(1) and not optout.parse_tdm_reservation("0")
  with pytest.raises(ValueError):
    optout.parse_tdm_reservation("yes please")
  fields = optout.from_cawg_assertion({"label": "cawg.training-mining", "data": {"entries": {
      "cawg.ai_generative_training": {"use": "constrained", "constraint_info": "https://example.org/licence"},
      "cawg.ai_training": {"use": "notAllowed"}, "cawg.data_mining": {"use": "allowed"}}}})
  record = parse_record({"work_id": "w", "licence": "CC-BY-4.0",
                         **{k: v for k, v in fields.items() if not k.startswith("data_mining")}})
  assert record.generative_training_constraint == "https://example.org/licence"
  assert record.opt_out_reasons == ["ai_training=notAllowed"]
  with pytest.raises(ValueError):
    optout.from_cawg_assertion({"entries": {"cawg.ai_training": {"use": "perhaps"}}})


# ----------------------------------------------------------------------------------------------------
# Files and reports.


def test_report_collects_every_bad_row(tmp_path):
  lines = [
      json.dumps({"work_id": "a", "licence": "CC0-1.0"}),
      json.dumps({"work_id": "b", "licence": "CC-BY-NC-4.0", "use": "all"}),
      "{not json",
      "",
      json.dumps({"work_id": "a", "licence": "MIT"}),
      json.dumps({"work_id": "c", "licence": "Made-Up-1.0"}),
      json.dumps(3),
  ]
  path = tmp_path / "r.jsonl"
  path.write_text("\n".join(lines) + "\n")
  report = read_records(path)
  assert not report.ok and report.num_rows == 6
  assert [r.work_id for r in report.records] == ["a", "c"]
  assert [(p.line, p.work_id, p.field) for p in report.problems] == [
      (2, "b", "use"), (3, "<line 3>", "<json>"), (5, "a", "work_id"), (7, "<line 7>", "<record>")]
  assert [(w.work_id, w.field) for w in report.warnings] == [("c", "licence")]
  with pytest.raises(RecordValidationError) as err:
    load_records(path)
  assert len(err.value.problems) == 4


def test_csv_reading_empty_cells_lists_and_extra_cells():
  text = ("work_id,licence,creators,tdm_reservation,sha256\n"
          "w1,CC-BY-4.0,Anna Magdalena; J. S. Bach,false,\n"
          'w2,MIT,"[""A; B"", ""C""]",yes,' + "A" * 64 + "\n"
          "w3,MIT,,,,surplus\n")
  report = records_from_csv(text, source="x.csv")
  assert [r.creators for r in report.records] == [("Anna Magdalena", "J. S. Bach"), ("A; B", "C")]
  assert report.records[1].tdm_reservation and report.records[1].sha256 == "a" * 64
  assert [(p.line, p.work_id, p.field) for p in report.problems] == [(4, "w3", "<record>")]


def test_save_load_round_trip_both_formats(tmp_path):
  records = [parse_record({"work_id": "w1", "title": "Fuge, \"g\"\nmoll", "creators": ["A; B", "C"],
                           "licence": "CC-BY-SA-4.0", "sha256": "F" * 64,
                           "generative_training": "constrained", "generative_training_constraint": "x, y",
                           "simulated": True, "scenario": "s seed=1"}),
             parse_record({"work_id": "w2", "licence": "unknown", "tdm_reservation": True})]
  for name in ("r.jsonl", "r.csv"):
    save_records(records, tmp_path / name)
    assert load_records(tmp_path / name) == records
  with pytest.raises(ValueError, match="suffix"):
    save_records(records, tmp_path / "r.txt")


# ----------------------------------------------------------------------------------------------------
# Property tests.

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
_json = st.recursive(_json_scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), c, max_size=3)),
                     max_leaves=8)
_field_values = {
    "licence": st.one_of(st.sampled_from(sorted(LICENCE_TABLE) + ["unknown", "LicenseRef-x", "", "CC BY"]),
                         _json),
    "use": st.one_of(st.sampled_from(["all", "non-commercial", "academic", "unspecified", "ALL"]), _json),
    "tdm_reservation": st.one_of(st.booleans(), st.sampled_from(["true", "0", "maybe"]), _json),
    "ai_training": st.one_of(st.sampled_from(["allowed", "notAllowed", "constrained", "no"]), _json),
    "generative_training": st.one_of(st.sampled_from(["allowed", "notAllowed", "constrained"]), _json),
    "creators": st.one_of(st.lists(st.text(max_size=6), max_size=3), _json),
}
_malformed_object = st.one_of(
    _json,
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), _json, max_size=8),
    st.fixed_dictionaries({"work_id": st.one_of(st.text(max_size=10), _json)},
                          optional={k: v for k, v in _field_values.items()}),
)


def _check_problems(problems):
  assert problems
  for p in problems:
    assert isinstance(p.work_id, str) and p.work_id
    assert isinstance(p.field, str) and p.field
    assert isinstance(p.message, str) and p.message
    assert repr(p.field) in str(p) and repr(p.work_id) in str(p)


@SETTINGS
@given(_malformed_object)
def test_malformed_objects_give_a_record_or_named_problems(obj):
  try:
    record = parse_record(obj, line=1)
  except RecordValidationError as err:
    _check_problems(err.problems)
  else:
    assert isinstance(record, RightsRecord)


@SETTINGS
@given(st.lists(st.one_of(_malformed_object.map(json.dumps), st.text(max_size=30)), max_size=6))
def test_malformed_jsonl_files_never_crash(lines):
  report = records_from_jsonl("\n".join(lines))
  if report.problems:
    _check_problems(report.problems)
  assert len(report.records) <= report.num_rows


@SETTINGS
@given(st.lists(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), st.text(max_size=12),
                                max_size=6), max_size=5),
       st.text(max_size=60))
def test_malformed_csv_rows_never_crash(rows, raw):
  out = io.StringIO()
  header = sorted({k for row in rows for k in row}) or ["work_id"]
  writer = csv.DictWriter(out, fieldnames=header)
  writer.writeheader()
  writer.writerows(rows)
  for text in (out.getvalue(), raw, out.getvalue() + raw):
    report = records_from_csv(text)
    if report.problems:
      _check_problems(report.problems)


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=15)
_name = _text.map(str.strip).filter(bool)
# Ids and constraint texts decide treatment: no control / format characters there (test_input_safety.py).
_visible_name = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp")), max_size=15).map(
    str.strip).filter(bool)


@st.composite
def valid_records(draw):
  licence = draw(st.sampled_from(sorted(LICENCE_TABLE)[:12] + ["unknown", "LicenseRef-custom", "Unlisted-1"]))
  data = {"work_id": draw(_visible_name), "licence": licence,
          "title": draw(_text), "creators": draw(st.lists(_name, max_size=3)), "notes": draw(_text),
          "sha256": draw(st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64))),
          "tdm_reservation": draw(st.booleans()), "simulated": draw(st.booleans()),
          "content_class": draw(st.sampled_from(["structural", "specific"])),
          "attribution_text": draw(_text), "scenario": draw(st.one_of(st.none(), _name))}
  if licence.startswith(("LicenseRef", "Unlisted")):
    data["use"] = draw(st.sampled_from(["all", "non-commercial", "academic", "unspecified"]))
  if not data["tdm_reservation"]:
    data["ai_training"] = draw(st.sampled_from([None, "allowed", "notAllowed", "constrained"]))
  value = draw(st.sampled_from([None, "notAllowed", "constrained"]))
  data["generative_training"] = value
  if value == "constrained":
    data["generative_training_constraint"] = draw(st.one_of(st.none(), _visible_name))
  return parse_record(data)


@SETTINGS
@given(st.lists(valid_records(), max_size=4, unique_by=lambda r: r.work_id))
def test_jsonl_and_csv_round_trip(records):
  assert records_from_jsonl(records_to_jsonl(records), allow_empty=True).records == records
  report = records_from_csv(records_to_csv(records), allow_empty=True)  # an empty list is written too
  assert report.ok and report.records == records


# ----------------------------------------------------------------------------------------------------
# CLI.


def _run_cli(argv):
  return cli.main(argv)


def test_cli_validate_exit_codes(tmp_path, capsys):
  good, bad = tmp_path / "good.csv", tmp_path / "bad.jsonl"
  save_records([parse_record({"work_id": "w", "licence": "MIT"})], good)
  bad.write_text(json.dumps({"work_id": "w", "licence": "CC-BY-4.0", "use": "academic"}) + "\n")
  assert _run_cli(["rights", "validate", str(good)]) == 0
  assert _run_cli(["rights", "validate", str(bad)]) == 1
  out = capsys.readouterr().out
  assert "1 valid" in out and "record 'w', field 'use'" in out
  assert _run_cli(["rights", "validate", str(tmp_path / "missing.csv")]) == 2


# ----------------------------------------------------------------------------------------------------
# Licence expressions in records.


def test_records_accept_spdx_expressions_and_derive_their_terms():
  r = parse_record({"work_id": "w", "licence": "mit or cc-by-nc-4.0"})
  assert (r.licence, r.use, r.attribution, r.share_alike, r.licence_class) == (
      "MIT OR CC-BY-NC-4.0", "all", "yes", "no", "permissive")
  r = parse_record({"work_id": "w", "licence": "MIT AND CC-BY-NC-4.0", "use": "non-commercial"})
  assert r.licence_class == "restrictive"
  r = parse_record({"work_id": "w", "licence": "GPL-2.0-only WITH Classpath-exception-2.0",
                    "encoding_licence": "CC0-1.0 OR MIT"})
  assert (r.share_alike, r.licence_class, r.encoding_licence_class) == ("yes", "restrictive", "permissive")
  assert parse_record({"work_id": "w", "licence": "GPL-2.0+"}).licence == "GPL-2.0-or-later"


def test_records_reject_plus_joined_ids_and_contradicted_expression_terms():
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "w", "licence": "MIT+Apache-2.0"}, line=2, source="r.csv")
  [problem] = err.value.problems
  assert (problem.work_id, problem.field, problem.line) == ("w", "licence", 2)
  assert "write 'MIT AND Apache-2.0' when every licence applies, or 'MIT OR Apache-2.0'" in problem.message
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "w", "licence": "MIT AND LicenseRef-x", "use": "all"})
  assert _fields_of(err) == {("w", "use")}
  assert "contradicts licence expression MIT AND LicenseRef-x (whose use, derived from its parts, is " \
         "'unspecified')" in str(err.value)


def test_unlisted_ids_in_expressions_are_warned_about():
  text = (json.dumps({"work_id": "a", "licence": "MIT OR Made-Up-1.0"}) + "\n"
          + json.dumps({"work_id": "b", "licence": "MIT OR LicenseRef-label"}) + "\n")
  report = records_from_jsonl(text)
  assert report.ok and [(w.work_id, w.field) for w in report.warnings] == [("a", "licence")]
  assert report.warnings[0].message == ("'Made-Up-1.0' in 'MIT OR Made-Up-1.0' is not in the licence table; terms "
                                        "treated as unknown")
