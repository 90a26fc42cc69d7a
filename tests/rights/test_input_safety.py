"""Rights input that cannot be silently wrong: repeated keys and columns, invisible characters, Unicode
normalisation, byte-order marks and empty files."""

import csv
import io
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from govjax.core.errors import UserError
from govjax.rights.licences import LICENCE_TABLE
from govjax.rights.records import (
    DECISIVE_FIELDS,
    FIELDS,
    Problem,
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

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOM = "\ufeff"


def _problems(report):
  return [(p.line, p.work_id, p.field) for p in report.problems]


# ----------------------------------------------------------------------------------------------------
# Repeated JSON keys and CSV columns.


def test_repeated_json_key_is_an_error_naming_source_line_and_key(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_text(json.dumps({"work_id": "ok", "licence": "MIT"}) + "\n"
                  + '{"work_id": "w", "licence": "MIT", "tdm_reservation": true, "tdm_reservation": false}\n')
  report = read_records(path)
  assert [r.work_id for r in report.records] == ["ok"]
  assert _problems(report) == [(2, "w", "tdm_reservation")]
  with pytest.raises(RecordValidationError) as err:
    load_records(path)
  assert f"{path}:line 2: record 'w', field 'tdm_reservation': key 'tdm_reservation' appears twice" in str(err.value)


@pytest.mark.parametrize("line,field,work_id", [
    ('{"work_id": "w", "licence": "CC-BY-NC-4.0", "licence": ""}', "licence", "w"),  # an empty last value
    ('{"work_id": "a", "work_id": "b", "licence": "MIT"}', "work_id", "a"),
    ('{"work_id": "w", "licence": "MIT", "creators": {"x": 1, "x": 2}}', "x", "w"),  # nested objects too
    ('{"licence": "MIT", "licence": "MIT"}', "licence", "<line 1>"),
])
def test_every_repeated_key_is_rejected(line, field, work_id):
  report = records_from_jsonl(line, source="r.jsonl")
  assert report.records == [] and _problems(report) == [(1, work_id, field)]
  assert "a repeated key would silently replace the first" in report.problems[0].message


def test_repeated_csv_column_is_an_error_and_no_row_is_read():
  text = "work_id,licence,tdm_reservation,tdm_reservation\nw1,MIT,true,\nw2,MIT,,\n"
  report = records_from_csv(text, source="r.csv")
  assert report.records == [] and report.num_rows == 0
  assert _problems(report) == [(1, "<header>", "tdm_reservation")]
  assert str(report.problems[0]) == (
      "r.csv:line 1: record '<header>', field 'tdm_reservation': column 'tdm_reservation' appears 2 times in the "
      "header (columns 3, 4); a repeated column would silently replace the first")


def test_csv_columns_equal_after_normalisation_and_empty_names_are_repeats():
  report = records_from_csv("work_id,licence,t\u00e9,te\u0301\nw,MIT,b,c\n")
  assert report.records == [] and _problems(report) == [(1, "<header>", "t\u00e9")]
  assert "appears 2 times in the header (columns 3, 4)" in report.problems[0].message
  report = records_from_csv("work_id,licence,,\nw,MIT,,x\n")
  assert _problems(report) == [(1, "<header>", "<unnamed column>")]


# ----------------------------------------------------------------------------------------------------
# Invisible characters, normalisation, look-alike ids.


@pytest.mark.parametrize("field,value", [
    ("work_id", "bach\u200b/bwv1"),
    ("work_id", "bach/\x1b[31mbwv1"),
    ("work_id", "\u202ebwv1"),
    ("licence", "CC-BY-NC-4.0\u200b"),
    ("encoding_licence", "\ufeffMIT"),
    ("use", "all\u200d"),
    ("ai_training", "allowed\u2060"),
    ("generative_training", "not\u00adAllowed"),
    ("generative_training_constraint", "credit\u200b the label"),
    ("content_class", "structural\u200b"),
    ("tdm_reservation", "false\u200b"),
    ("simulated", "\u200btrue"),
])
def test_control_and_format_characters_are_rejected_in_decisive_fields(field, value):
  data = {"work_id": "w", "licence": "CC-BY-4.0", field: value}
  if field == "generative_training_constraint":
    data["generative_training"] = "constrained"
  with pytest.raises(RecordValidationError) as err:
    parse_record(data, line=3, source="r.jsonl")
  [problem] = err.value.problems
  assert problem.field == field and problem.line == 3
  assert "control and format characters" in problem.message
  position, char = next((i, c) for i, c in enumerate(value) if unicodedata.category(c) in ("Cc", "Cf"))
  assert problem.message.startswith(f"contains U+{ord(char):04X} ")
  assert f" at position {position}" in problem.message
  assert field in DECISIVE_FIELDS


def test_the_message_names_the_character_and_its_position():
  with pytest.raises(RecordValidationError) as err:
    parse_record({"work_id": "bach\u200b/bwv1", "licence": "MIT"})
  assert err.value.problems[0].message.startswith("contains U+200B ZERO WIDTH SPACE at position 4;")
  # Nothing invisible reaches the terminal: the id is shown with escapes.
  assert "record 'bach\\u200b/bwv1', field 'work_id'" in str(err.value)
  assert "\u200b" not in str(err.value)


@pytest.mark.parametrize("constraint", ["\u200b", "\u200b \u2060", "\ufeff", "\t\n", "   "])
def test_invisible_constraint_is_no_constraint(constraint):
  """An invisible constraint text must not turn 'constrained' into a training permission."""
  r = parse_record({"work_id": "w", "licence": "CC-BY-4.0", "generative_training": "constrained",
                    "generative_training_constraint": constraint})
  assert r.generative_training_constraint is None
  assert r.opted_out and not r.constrained
  assert r.opt_out_reasons == ["generative_training=constrained without a stated constraint (counts as notAllowed)"]


def test_free_text_is_normalised_and_keeps_its_characters():
  r = parse_record({"work_id": "Cafe\u0301/1", "licence": "MIT", "title": "Cafe\u0301 \u200b\tSuite",
                    "creators": ["Dvor\u030ca\u0301k", "B\u00e9la"], "notes": "e\u0301", "rightsholder": "A\u030a"})
  assert r.work_id == "Caf\u00e9/1" and r.title == "Caf\u00e9 \u200b\tSuite"
  assert r.creators == ("Dvo\u0159\u00e1k", "B\u00e9la")
  assert all(unicodedata.is_normalized("NFC", x) for x in (r.title, r.notes, r.rightsholder, *r.creators))
  assert (r.notes, r.rightsholder) == ("\u00e9", "\u00c5")


def test_ids_equal_after_normalisation_are_duplicates():
  text = (json.dumps({"work_id": "Caf\u00e9/1", "licence": "CC-BY-NC-4.0"}) + "\n"
          + json.dumps({"work_id": "Cafe\u0301/1", "licence": "CC0-1.0"}) + "\n")
  report = records_from_jsonl(text, source="r.jsonl")
  assert [r.work_id for r in report.records] == ["Caf\u00e9/1"]
  assert _problems(report) == [(2, "Caf\u00e9/1", "work_id")]
  assert report.problems[0].message == "duplicate work_id (first on line 1; equal after Unicode NFC normalisation)"


def test_problems_and_reports_never_print_raw_control_characters():
  report = records_from_jsonl(json.dumps({"work_id": "w\x1b]0;pwned\x07", "licence": "MIT"}),
                              source="dir/\x1b[2Jr.jsonl")
  text = report.format()
  assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text.replace("\n", ""))
  assert "dir/\\x1b[2Jr.jsonl:line 1: record 'w\\x1b]0;pwned\\x07', field 'work_id'" in text
  assert str(Problem("a\u202eb", "f\u200b", "bad \x1b[1m")) == "record 'a\\u202eb', field 'f\\u200b': bad \\x1b[1m"


def test_record_validation_error_is_a_user_error():
  with pytest.raises(UserError):
    parse_record({"work_id": "w"})
  assert issubclass(RecordValidationError, ValueError)


# ----------------------------------------------------------------------------------------------------
# Byte-order marks and empty files.


def test_a_leading_bom_is_dropped_in_jsonl_and_csv(tmp_path):
  records = [parse_record({"work_id": "w1", "licence": "CC-BY-NC-4.0", "title": "\ufeffin the title"}),
             parse_record({"work_id": "w2", "licence": "MIT", "tdm_reservation": True})]
  jsonl, table = records_to_jsonl(records), records_to_csv(records)
  for text, read in ((jsonl, records_from_jsonl), (table, records_from_csv)):
    assert read(BOM + text).records == records
    assert read((BOM + text).encode("utf-8")).records == records
    assert read(BOM + text).ok
  for name, text in (("r.jsonl", jsonl), ("r.csv", table)):
    (tmp_path / name).write_bytes((BOM + text).encode("utf-8"))
    assert load_records(tmp_path / name) == records
  assert records[0].title == "\ufeffin the title"  # a BOM inside a free text is kept (not at the file start)


def test_a_bom_anywhere_else_is_not_stripped():
  report = records_from_csv("work_id,licence\n\ufeffw,MIT\n")
  assert _problems(report) == [(2, "\ufeffw", "work_id")]
  report = records_from_jsonl(BOM + BOM + json.dumps({"work_id": "w", "licence": "MIT"}))
  assert _problems(report) == [(1, "<line 1>", "<json>")]


@pytest.mark.parametrize("name,text", [("r.jsonl", ""), ("r.jsonl", "\n \n"), ("r.jsonl", BOM), ("r.csv", ""),
                                       ("r.csv", "work_id,licence\n"), ("r.csv", BOM + "work_id,licence\r\n")])
def test_an_empty_records_file_is_an_error_unless_allowed(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  report = read_records(path)
  assert not report.ok and _problems(report) == [(None, "<file>", "<records>")]
  with pytest.raises(RecordValidationError, match="no records .*allow_empty=True"):
    load_records(path)
  assert read_records(path, allow_empty=True).ok
  assert load_records(path, allow_empty=True) == []


def test_a_file_of_bad_rows_is_not_reported_as_empty():
  report = records_from_jsonl("{bad json\n")
  assert _problems(report) == [(1, "<line 1>", "<json>")]


# ----------------------------------------------------------------------------------------------------
# Property tests.

_any_text = st.text(max_size=12)  # any code point: controls, format characters, surrogates, combining marks
_visible = st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"))
_visible_text = st.text(_visible, max_size=12)
_id = st.text(_visible, min_size=1, max_size=12).map(str.strip).filter(bool)
_text_fields = [f for f in FIELDS if f not in ("tdm_reservation", "simulated")]


def _check_record(record):
  for name in DECISIVE_FIELDS:
    value = getattr(record, name)
    if isinstance(value, str):
      assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value), name
  for name in FIELDS:
    value = getattr(record, name)
    for text in (value if isinstance(value, tuple) else (value,)):
      if isinstance(text, str):
        assert unicodedata.is_normalized("NFC", text), name


@SETTINGS
@given(st.fixed_dictionaries({"work_id": _any_text, "licence": st.one_of(_any_text, st.sampled_from(
    ["MIT", "CC-BY-NC-4.0 OR MIT", "MIT+Apache-2.0", "(MIT", "unknown"]))},
    optional={name: st.one_of(_any_text, st.lists(_any_text, max_size=3)) for name in _text_fields
              if name not in ("work_id", "licence")}))
def test_arbitrary_unicode_gives_a_record_or_a_record_validation_error(data):
  try:
    record = parse_record(data, line=1)
  except RecordValidationError as err:
    assert err.problems and all(p.field and p.message for p in err.problems)
    str(err).encode("utf-8")  # printable: no lone surrogate in the message
  else:
    _check_record(record)
  for read, text in ((records_from_jsonl, json.dumps(data)), (records_from_csv, _csv_of([data]))):
    report = read(text)
    assert len(report.records) + len({p.line for p in report.problems}) >= 1
    for record in report.records:
      _check_record(record)


def _csv_of(rows):
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=sorted({k for row in rows for k in row}))
  writer.writeheader()
  writer.writerows([{k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows])
  return out.getvalue()


_json_value = st.one_of(st.none(), st.booleans(), st.integers(), _any_text)


@SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS) | _visible_text, _json_value, min_size=1, max_size=6),
       st.data())
def test_a_repeated_json_key_is_always_rejected(obj, data):
  key = data.draw(st.sampled_from(sorted(obj)))
  again = data.draw(_json_value)
  pairs = [json.dumps(k) + ": " + json.dumps(v) for k, v in obj.items()]
  pairs.insert(data.draw(st.integers(0, len(pairs))), json.dumps(key) + ": " + json.dumps(again))
  good = json.dumps({"work_id": "first", "licence": "MIT"})
  report = records_from_jsonl(good + "\n{" + ", ".join(pairs) + "}\n", source="r.jsonl")
  assert [r.work_id for r in report.records] == ["first"]
  [problem] = report.problems
  assert (problem.line, problem.field, problem.source) == (2, key, "r.jsonl")
  assert "appears twice" in problem.message


@SETTINGS
@given(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=8, unique=True), st.data())
def test_a_repeated_csv_column_is_always_rejected(header, data):
  repeated = data.draw(st.sampled_from(header))
  header = list(header)
  header.insert(data.draw(st.integers(0, len(header))), repeated)
  row = [data.draw(st.sampled_from(["", "x", "MIT", "true"])) for _ in header]
  text = ",".join(header) + "\n" + ",".join(row) + "\n"
  report = records_from_csv(text)
  assert report.records == []
  assert [(p.work_id, p.field) for p in report.problems] == [("<header>", repeated)]


@st.composite
def records(draw):
  """Valid records with arbitrary (visible) ids and constraints and arbitrary free text."""
  licence = draw(st.sampled_from(sorted(LICENCE_TABLE)[:10] + ["unknown", "LicenseRef-x", "MIT OR CC-BY-NC-4.0",
                                                               "GPL-2.0+ WITH Classpath-exception-2.0"]))
  data = {"work_id": draw(_id), "licence": licence, "title": draw(_any_text.filter(lambda t: "\x00" not in t)
                                                                  .map(lambda t: t.encode("utf-8", "replace")
                                                                       .decode("utf-8"))),
          "creators": draw(st.lists(_id, max_size=2)), "tdm_reservation": draw(st.booleans())}
  if licence == "LicenseRef-x":
    data["use"] = draw(st.sampled_from(["all", "academic"]))
  if not data["tdm_reservation"]:
    data["generative_training"] = draw(st.sampled_from(["allowed", "notAllowed", "constrained"]))
    if data["generative_training"] == "constrained":
      data["generative_training_constraint"] = draw(st.one_of(_id, st.sampled_from(["\u200b", ""])))
  return parse_record(data)


@SETTINGS
@given(st.lists(records(), min_size=1, max_size=4, unique_by=lambda r: r.work_id), st.permutations(FIELDS))
def test_any_csv_column_order_gives_the_records_of_the_jsonl(recs, order):
  from_jsonl = records_from_jsonl(records_to_jsonl(recs))
  table = list(csv.reader(io.StringIO(records_to_csv(recs), newline="")))
  columns = [table[0].index(name) for name in order]
  out = io.StringIO(newline="")
  csv.writer(out, lineterminator="\r\n").writerows([[row[i] for i in columns] for row in table])
  from_csv = records_from_csv(out.getvalue())
  assert from_jsonl.ok and from_csv.ok
  assert from_csv.records == from_jsonl.records == recs


@SETTINGS
@given(st.lists(records(), min_size=1, max_size=4, unique_by=lambda r: r.work_id), st.booleans())
def test_records_round_trip_through_files(tmp_path_factory, recs, bom):
  directory = tmp_path_factory.mktemp("rt")
  for name in ("r.jsonl", "r.csv"):
    save_records(recs, directory / name)
    if bom:
      (directory / name).write_bytes(BOM.encode("utf-8") + (directory / name).read_bytes())
    assert load_records(directory / name) == recs
    assert all(isinstance(r, RightsRecord) for r in recs)


_composable = st.sampled_from(["\u00e9", "\u00c5", "\u00f1", "\u00fc", "\u1e69", "\u01fa", "\u0103", "\u212b"])


@SETTINGS
@given(_id, _composable, st.integers(0, 12), st.sampled_from(["\u200b", "\u200d", "\u2060", "\ufeff", "\u202e",
                                                              "\x1b", "\u00ad"]))
def test_look_alike_ids_are_detected(base, accented, at, invisible):
  at = min(at, len(base))
  work_id = base[:at] + accented + base[at:]
  decomposed = unicodedata.normalize("NFD", work_id)
  assume(work_id.strip() == work_id and decomposed != unicodedata.normalize("NFC", work_id))
  lines = [json.dumps({"work_id": work_id, "licence": "CC-BY-NC-4.0"}),
           json.dumps({"work_id": decomposed, "licence": "CC0-1.0"}),
           json.dumps({"work_id": work_id[:at] + invisible + work_id[at:], "licence": "CC0-1.0"})]
  report = records_from_jsonl("\n".join(lines))
  assert [r.work_id for r in report.records] == [unicodedata.normalize("NFC", work_id)]
  assert [(p.line, p.field) for p in report.problems] == [(2, "work_id"), (3, "work_id")]
  assert report.problems[0].message.startswith("duplicate work_id (first on line 1")
  assert report.problems[1].message.startswith("contains U+")
