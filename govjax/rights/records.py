"""Rights records: one validated record per work, stored as JSON Lines or CSV.

A :class:`RightsRecord` says who made a work, where it came from, under which licence it may be used, whether
the rights holder opted out of text-and-data mining or AI training, and how it must be attributed. Training
samples inherit their work's record.

Validation (pydantic v2) derives what can be derived and rejects contradictions:

- Every text is Unicode-normalised (NFC, :func:`govjax.core.text.nfc`). Control and format characters
  (categories ``Cc`` / ``Cf``: escape sequences, tabs and line breaks, zero-width space / joiner, bidi
  overrides, a byte-order mark inside the text) are errors in ``work_id`` and in every field that decides a
  work's treatment (:data:`DECISIVE_FIELDS`: licences, terms, TDM and CAWG values and constraints, content
  class, simulated), so that two works whose ids look the same cannot be different works and an invisible
  character cannot change a decision. A constraint text that is blank once invisible characters are removed is
  no constraint (``constrained`` without a constraint counts as ``notAllowed``). Free-text fields (title,
  notes, ...) keep such characters; show them with :func:`govjax.core.text.terminal_safe`.
- ``licence`` is canonicalised (:func:`govjax.rights.licences.canonical_licence`; an SPDX expression such as
  ``MIT OR Apache-2.0`` is accepted, ids joined with ``+`` are not); the DPI-style terms ``use``,
  ``attribution`` and ``share_alike`` are taken from the licence table (for an expression: derived from its
  parts) when omitted. Stating a term that contradicts a listed licence or an expression (``CC-BY-NC-4.0`` with
  ``use=all``) is an error; for ``unknown`` only the unknown terms are accepted; ``LicenseRef-...`` and unlisted
  ids may state their terms (else unspecified/unknown).
- A TDM reservation (``tdm_reservation=true``) implies ``ai_training`` and ``generative_training`` =
  ``notAllowed``; stating ``allowed`` with it is an error. A constraint text is only accepted with
  ``constrained`` (see :mod:`govjax.rights.optout`).

Every problem is reported with the record's ``work_id`` (or its line when there is none) and the field.
Readers never stop at the first bad row: :func:`read_records` returns a :class:`ValidationReport` with the
valid records and one :class:`Problem` per bad field; :func:`load_records` raises
:class:`RecordValidationError` listing all. Work ids that are equal after NFC normalisation are duplicates.

Files are read so that nothing is silently lost: a key repeated in a JSON object and a column repeated in a CSV
header are errors (naming the file, line and key) instead of "the last one wins"; a UTF-8 byte-order mark at the
start of a JSON Lines or CSV file is dropped; a file without any record is an error unless ``allow_empty=True``.

CSV columns are the field names (:data:`FIELDS`); empty cells mean "not given"; ``creators`` is
``;``-separated (or a JSON array when a name contains ``;``); booleans are ``true``/``false``.

Example:
  >>> r = parse_record({"work_id": "w1", "licence": "cc-by-nc-4.0", "tdm_reservation": True})
  >>> r.licence, r.use, r.attribution, r.ai_training, r.opted_out
  ('CC-BY-NC-4.0', 'non-commercial', 'yes', 'notAllowed', True)
  >>> try:
  ...   parse_record({"work_id": "w2", "licence": "CC-BY-4.0", "use": "academic"})
  ... except RecordValidationError as e:
  ...   print(e.problems[0].field)
  use
  >>> report = records_from_jsonl('{"work_id": "w3", "licence": "MIT", "licence": ""}', source="r.jsonl")
  >>> report.records, report.problems[0].line, report.problems[0].field, report.problems[0].message[:27]
  ([], 1, 'licence', "key 'licence' appears twice")
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pydantic
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from govjax.core.errors import UserError
from govjax.core.text import describe_invisible, invisible_characters, nfc, strip_invisible, terminal_safe
from govjax.rights import licences, optout
from govjax.rights.licences import LicenceTerms, Ternary, Use
from govjax.rights.optout import Permission

__all__ = ["CONTENT_CLASSES", "DECISIVE_FIELDS", "FIELDS", "ContentClass", "Problem", "RecordValidationError",
    "RightsRecord", "ValidationReport", "load_records", "parse_record", "read_records", "record_to_json",
    "records_from_csv", "records_from_jsonl", "records_to_csv", "records_to_jsonl", "save_records", "validate_rows"]

ContentClass = Literal["structural", "specific"]
CONTENT_CLASSES: tuple[str, ...] = ("structural", "specific")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TEXT_FIELDS = ("work_id", "title", "creators", "rightsholder", "source", "attribution_text", "notes",
                "ai_training_constraint", "generative_training_constraint", "scenario")
# Fields that decide how a work is treated: no control / format characters allowed (module docstring).
DECISIVE_FIELDS: tuple[str, ...] = (
    "work_id", "licence", "encoding_licence", "use", "attribution", "share_alike", "tdm_reservation",
    "ai_training", "ai_training_constraint", "generative_training", "generative_training_constraint",
    "content_class", "simulated")
_CONSTRAINT_FIELDS = ("ai_training_constraint", "generative_training_constraint")
_FREE_TEXT_FIELDS = ("title", "rightsholder", "source", "attribution_text", "notes", "scenario")


class RightsRecord(pydantic.BaseModel):
  """The rights metadata of one work.

  Attributes:
    work_id: the dataset's work id (``bach/bwv10.7``, ``structural/...``).
    title: the work's title.
    creators: composers / authors / encoders credited.
    rightsholder: who holds the rights ("" when none, e.g. public domain).
    source: where the work came from (a URL, a corpus path).
    sha256: sha256 of the source bytes (64 lowercase hex digits), or None.
    licence: SPDX id, ``LicenseRef-...`` or ``unknown`` (canonicalised).
    encoding_licence: licence of the digital encoding when it differs from the work's (e.g. a public-domain
      composition encoded by someone else), or None.
    use: DPI use term (derived from ``licence`` unless stated for a LicenseRef/unlisted licence).
    attribution: DPI attribution term (ditto).
    share_alike: DPI share-alike term (ditto).
    tdm_reservation: W3C TDMRep ``tdm-reservation`` = 1.
    ai_training: CAWG ``cawg.ai_training`` value, or None when not stated.
    ai_training_constraint: CAWG ``constraint_info`` for ``ai_training=constrained``.
    generative_training: CAWG ``cawg.ai_generative_training`` value, or None when not stated.
    generative_training_constraint: CAWG ``constraint_info`` for ``generative_training=constrained``.
    attribution_text: the credit line to carry into outputs' provenance.
    content_class: ``specific`` (a particular work) or ``structural`` (generic material such as cadences).
    notes: free text.
    simulated: True for records of a simulated scenario (not the work's real rights).
    scenario: the scenario name and seed for simulated records.
  """

  model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

  work_id: str = Field(min_length=1)
  title: str = ""
  creators: tuple[str, ...] = ()
  rightsholder: str = ""
  source: str = ""
  sha256: str | None = None
  licence: str
  encoding_licence: str | None = None
  use: Use | None = None
  attribution: Ternary | None = None
  share_alike: Ternary | None = None
  tdm_reservation: bool = False
  ai_training: Permission | None = None
  ai_training_constraint: str | None = None
  generative_training: Permission | None = None
  generative_training_constraint: str | None = None
  attribution_text: str = ""
  content_class: ContentClass = "specific"
  notes: str = ""
  simulated: bool = False
  scenario: str | None = None

  @field_validator(*DECISIVE_FIELDS, mode="before")
  @classmethod
  def _visible(cls, value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str):
      return value
    if info.field_name in _CONSTRAINT_FIELDS and not strip_invisible(value).strip():
      return None  # blank once invisible characters are removed: no constraint
    found = invisible_characters(value)
    if found:
      what = "a work id" if info.field_name == "work_id" else "a field that decides how the work is treated"
      raise ValueError(f"contains {describe_invisible(found)}; control and format characters (escape "
                       f"sequences, line breaks, zero-width, bidi and byte-order marks) are not allowed in {what}")
    return nfc(value)

  @field_validator(*_FREE_TEXT_FIELDS, mode="before")
  @classmethod
  def _normalised(cls, value: Any) -> Any:
    return nfc(value) if isinstance(value, str) else value

  @field_validator(*_TEXT_FIELDS, mode="after")
  @classmethod
  def _plain_text(cls, value: Any) -> Any:
    for text in (value if isinstance(value, tuple) else (value,)):
      if isinstance(text, str):
        if "\x00" in text:
          raise ValueError("text contains a NUL character")
        try:
          text.encode("utf-8")
        except UnicodeEncodeError:
          raise ValueError("text is not valid Unicode (lone surrogate)") from None
    return value

  @field_validator("work_id", mode="after")
  @classmethod
  def _work_id(cls, value: str) -> str:
    if value != value.strip() or not value:
      raise ValueError(f"work_id {value!r} has leading/trailing whitespace")
    if any(ch in value for ch in "\n\r\u2028\u2029"):
      raise ValueError("work_id contains a line break")
    return value

  @field_validator("creators", mode="before")
  @classmethod
  def _split_creators(cls, value: Any) -> Any:
    if isinstance(value, str):
      text = value.strip()
      if text.startswith("["):
        try:
          return json.loads(text)
        except (ValueError, RecursionError):
          raise ValueError("creators starts with '[' but is not a JSON array of names") from None
      return [name for name in text.split(";")] if text else []
    return value

  @field_validator("creators", mode="after")
  @classmethod
  def _creators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(nfc(name).strip() for name in value)
    for i, name in enumerate(names):
      if not name:
        raise ValueError(f"creator {i} is empty")
    return names

  @field_validator("sha256", mode="after")
  @classmethod
  def _sha256(cls, value: str | None) -> str | None:
    if value is None or not value.strip():
      return None
    digest = value.strip().lower()
    if not _SHA256.match(digest):
      raise ValueError(f"expected 64 hexadecimal digits, got {_short(value)}")
    return digest

  @field_validator("licence", mode="after")
  @classmethod
  def _licence(cls, value: str) -> str:
    return licences.canonical_licence(value)

  @field_validator("encoding_licence", mode="after")
  @classmethod
  def _encoding_licence(cls, value: str | None) -> str | None:
    if value is None or not value.strip():
      return None
    return licences.canonical_licence(value)

  @field_validator("use", "attribution", "share_alike", mode="after")
  @classmethod
  def _term(cls, value: str | None, info: ValidationInfo) -> str | None:
    licence = info.data.get("licence")
    if licence is None:  # the licence itself is invalid and reported
      return value
    derived = getattr(licences.licence_terms(licence), info.field_name)
    if value is None or value == derived or licences.may_state_terms(licence):
      return derived if value is None else value
    if licence == licences.UNKNOWN:
      raise ValueError(
          f"{value!r} cannot be stated for licence 'unknown' (its terms are not known: {derived!r}); "
          "name custom terms with a LicenseRef-... licence"
      )
    if licences.is_expression(licence):
      raise ValueError(f"{value!r} contradicts licence expression {licence} (whose {info.field_name}, derived "
                       f"from its parts, is {derived!r}); give other terms a LicenseRef-... licence of their own")
    raise ValueError(f"{value!r} contradicts licence {licence} (whose {info.field_name} is {derived!r})")

  @field_validator("ai_training", "generative_training", mode="after")
  @classmethod
  def _permission(cls, value: str | None, info: ValidationInfo) -> str | None:
    if info.data.get("tdm_reservation"):
      if value == "allowed":
        raise ValueError(
            "'allowed' contradicts tdm_reservation=true (a TDM opt-out implies the AI-training and "
            "generative-training opt-outs)"
        )
      if value is None:
        return "notAllowed"
    return value

  @field_validator("ai_training_constraint", "generative_training_constraint", mode="after")
  @classmethod
  def _constraint(cls, value: str | None, info: ValidationInfo) -> str | None:
    if value is None or not value.strip():
      return None
    field = info.field_name.removesuffix("_constraint")
    if field in info.data and info.data[field] != "constrained":
      raise ValueError(f"a constraint is only meaningful with {field}='constrained' "
                       f"(got {info.data[field]!r})")
    return value

  @field_validator("scenario", mode="after")
  @classmethod
  def _empty_is_none(cls, value: str | None) -> str | None:
    return value if value else None

  @property
  def terms(self) -> LicenceTerms:
    """The record's DPI-style terms."""
    return LicenceTerms(use=self.use, attribution=self.attribution, share_alike=self.share_alike)

  @property
  def licence_class(self) -> str:
    """``permissive`` / ``restrictive`` / ``unknown`` (see :func:`govjax.rights.licences.licence_class`)."""
    return licences.licence_class(self.licence, self.terms)

  @property
  def encoding_licence_class(self) -> str:
    """Class of ``encoding_licence`` (``none`` when the record has none)."""
    if self.encoding_licence is None:
      return "none"
    return licences.licence_class(self.encoding_licence, licences.licence_terms(self.encoding_licence))

  @property
  def opt_out_reasons(self) -> list[str]:
    """Why the work is opted out of training (TDM reservation, CAWG values); empty when it is not."""
    return optout.opt_out_reasons(
        tdm_reservation=self.tdm_reservation,
        ai_training=self.ai_training,
        ai_training_constraint=self.ai_training_constraint,
        generative_training=self.generative_training,
        generative_training_constraint=self.generative_training_constraint,
    )

  @property
  def opted_out(self) -> bool:
    """True when the rights holder reserved TDM or did not allow (generative) AI training."""
    return bool(self.opt_out_reasons)

  @property
  def constraint_reasons(self) -> list[str]:
    """Each training permission that is ``constrained`` with a stated constraint (empty when none is)."""
    return optout.constraint_reasons(
        ai_training=self.ai_training,
        ai_training_constraint=self.ai_training_constraint,
        generative_training=self.generative_training,
        generative_training_constraint=self.generative_training_constraint,
    )

  @property
  def constrained(self) -> bool:
    """True when (generative) AI training is allowed only under a stated constraint (and the work is not opted
    out): a condition for a person to judge, which the default policy treats as restrictive."""
    return bool(self.constraint_reasons) and not self.opted_out


FIELDS: tuple[str, ...] = tuple(RightsRecord.model_fields)


@dataclasses.dataclass(frozen=True)
class Problem:
  """One validation problem: which record (work id, or ``<line N>``), which field, what is wrong."""

  work_id: str
  field: str
  message: str
  line: int | None = None
  source: str | None = None

  def __str__(self) -> str:
    """One line; control and format characters of ids, fields and messages are escapes (``\\x1b``)."""
    where = f"{terminal_safe(self.source)}:" if self.source else ""
    where += f"line {self.line}: " if self.line is not None else (" " if where else "")
    return (f"{where}record {terminal_safe(repr(self.work_id))}, field {terminal_safe(repr(self.field))}: "
            f"{terminal_safe(self.message)}")


class RecordValidationError(UserError, ValueError):
  """Raised for invalid records; ``problems`` lists every bad field of every bad record."""

  def __init__(self, problems: Sequence[Problem]):
    self.problems = list(problems)
    shown = "\n  ".join(str(p) for p in self.problems[:20])
    more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
    super().__init__(f"{len(self.problems)} invalid field(s) in rights records:\n  {shown}{more}")


def _short(value: Any, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(data: Any, line: int | None) -> str:
  if isinstance(data, Mapping):
    work_id = data.get("work_id")
    if isinstance(work_id, str) and work_id.strip():
      return nfc(work_id.strip())
  return f"<line {line}>" if line is not None else "<no work_id>"


def _problem_from_error(error: Mapping, work_id: str, line, source) -> Problem:
  loc = [str(part) for part in error.get("loc", ())]
  field = (loc[0] or "<unnamed column>") if loc else "<record>"
  if len(loc) > 1 and loc[1].isdigit():
    field += f"[{loc[1]}]"
  kind, message = error.get("type", ""), str(error.get("msg", "invalid"))
  message = message.removeprefix("Value error, ")
  if kind == "extra_forbidden":
    message = f"unknown field (known fields: {', '.join(FIELDS)})"
  elif kind == "missing":
    message = "required field is missing"
  elif "input" in error and kind not in ("value_error",):
    message += f" (got {_short(error['input'])})"
  return Problem(work_id, field, message, line, source)


def parse_record(data: Any, *, line: int | None = None, source: str | None = None) -> RightsRecord:
  """Validates one record given as a mapping (a JSON object or a CSV row).

  Args:
    data: the record's fields.
    line: its line in the file (for messages).
    source: the file name (for messages).

  Returns:
    The validated :class:`RightsRecord`.

  Raises:
    RecordValidationError: naming the record and each bad field.
  """
  work_id = _label(data, line)
  if not isinstance(data, Mapping):
    raise RecordValidationError(
        [Problem(work_id, "<record>", f"expected an object of fields, got {type(data).__name__}", line,
                 source)]
    )
  bad_keys = [key for key in data if not isinstance(key, str)]
  if bad_keys:
    raise RecordValidationError(
        [Problem(work_id, "<record>", "row has more cells than the header has columns", line, source)]
    )
  try:
    return RightsRecord.model_validate(dict(data))
  except pydantic.ValidationError as err:
    raise RecordValidationError(
        [_problem_from_error(e, work_id, line, source) for e in err.errors(include_url=False)]
    ) from None


@dataclasses.dataclass
class ValidationReport:
  """Outcome of validating a file (or a sequence of rows): valid records, problems and warnings.

  Attributes:
    source: the file name.
    num_rows: records read (blank lines excluded).
    records: the valid records, in file order.
    problems: every problem found; a row with problems is not in ``records``.
    warnings: valid but noteworthy (e.g. a licence outside the table, whose terms are treated as unknown).
  """

  source: str
  num_rows: int = 0
  records: list[RightsRecord] = dataclasses.field(default_factory=list)
  problems: list[Problem] = dataclasses.field(default_factory=list)
  warnings: list[Problem] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.problems

  @property
  def num_invalid_rows(self) -> int:
    return len({(p.line, p.work_id) for p in self.problems})

  def format(self) -> str:
    """A human-readable report: a summary line, then one line per problem and warning."""
    head = (f"{terminal_safe(self.source)}: {self.num_rows} record(s), {len(self.records)} valid, "
            f"{self.num_invalid_rows} invalid ({len(self.problems)} problem(s)), "
            f"{len(self.warnings)} warning(s)")
    lines = [head] + [f"  ERROR {p}" for p in self.problems] + [f"  WARNING {w}" for w in self.warnings]
    return "\n".join(lines)

  def raise_if_invalid(self) -> None:
    if self.problems:
      raise RecordValidationError(self.problems)


def validate_rows(rows: Iterable[tuple[int | None, Any]], *, source: str = "<records>",
                  report: ValidationReport | None = None, allow_empty: bool = False) -> ValidationReport:
  """Validates ``(line, data)`` rows, collecting every problem and rejecting duplicate work ids.

  Work ids are compared after NFC normalisation, so ``"e\u0301"`` and ``"\u00e9"`` are the same work (and a
  duplicate).

  Args:
    rows: ``(line number or None, mapping)`` pairs.
    source: name used in messages.
    report: an existing report to extend (e.g. one holding file-level problems).
    allow_empty: accept an input without any record (else that is a problem of the ``<file>``).

  Returns:
    A :class:`ValidationReport`.

  Example:
    >>> report = validate_rows([(1, {"work_id": "caf\u00e9", "licence": "MIT"}),
    ...                         (2, {"work_id": "cafe\u0301", "licence": "CC0-1.0"})], source="r.jsonl")
    >>> [(p.line, p.field, p.message) for p in report.problems]
    [(2, 'work_id', 'duplicate work_id (first on line 1; equal after Unicode NFC normalisation)')]
  """
  report = report or ValidationReport(source=source)
  seen: dict[str, tuple[int | None, Any]] = {}
  for line, data in rows:
    report.num_rows += 1
    try:
      record = parse_record(data, line=line, source=source)
    except RecordValidationError as err:
      report.problems.extend(err.problems)
      continue
    given = data.get("work_id")
    if record.work_id in seen:
      first, first_given = seen[record.work_id]
      notes = [f"first on line {first}"] if first is not None else []
      if given != first_given:
        notes.append("equal after Unicode NFC normalisation")
      where = f" ({'; '.join(notes)})" if notes else ""
      report.problems.append(Problem(record.work_id, "work_id", f"duplicate work_id{where}", line, source))
      continue
    seen[record.work_id] = (line, given)
    report.records.append(record)
    unlisted = [name for name in licences.licence_ids(record.licence)
                if name not in licences.LICENCE_TABLE and name != licences.UNKNOWN
                and not name.startswith(licences.LICENSE_REF_PREFIX)]
    if unlisted and not licences.is_expression(record.licence):
      report.warnings.append(Problem(record.work_id, "licence", f"{record.licence!r} is not in the licence "
                                     "table; its terms are treated as stated or unknown", line, source))
    elif unlisted:
      verb = "is" if len(unlisted) == 1 else "are"
      report.warnings.append(Problem(record.work_id, "licence", f"{', '.join(map(repr, unlisted))} in "
                                     f"{record.licence!r} {verb} not in the licence table; terms treated as unknown",
                                     line, source))
  if report.num_rows == 0 and not report.problems and not allow_empty:
    report.problems.append(Problem("<file>", "<records>", "no records (an empty records file is an error; pass "
                                   "allow_empty=True to accept one)", None, source))
  return report


# ------------------------------------------------------------------------------------------------------------
# JSON Lines and CSV.


_BOM = "\ufeff"


def _format_of(path: pathlib.Path, format: str | None) -> str:
  if format is not None:
    if format not in ("jsonl", "csv"):
      raise ValueError(f"format must be 'jsonl' or 'csv', got {format!r}")
    return format
  suffix = path.suffix.lower()
  if suffix in (".jsonl", ".ndjson", ".json"):
    return "jsonl"
  if suffix == ".csv":
    return "csv"
  raise ValueError(f"{path}: cannot tell the format from the suffix {suffix!r}; use .jsonl or .csv")


class _DuplicateKey(ValueError):
  def __init__(self, key: str, first: Any):
    super().__init__(key)
    self.key, self.first = key, first


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
  """``object_pairs_hook`` for ``json.loads``: a key given twice is an error, not "the last one wins"."""
  seen: dict[str, Any] = {}
  for key, value in pairs:
    if key in seen:
      raise _DuplicateKey(key, seen[key])
    seen[key] = value
  return seen


def _duplicate_key_label(text: str, dup: _DuplicateKey, line: int) -> str:
  """The record label for a repeated key: the (first) work id, found by parsing the line leniently."""
  if dup.key == "work_id":
    return _label({"work_id": dup.first}, line)
  try:
    return _label(json.loads(text), line)
  except (ValueError, RecursionError):
    return _label(None, line)


def records_from_jsonl(data: bytes | str, *, source: str = "<jsonl>", allow_empty: bool = False) -> ValidationReport:
  """Validates JSON Lines text: one JSON object per non-blank line.

  A leading UTF-8 byte-order mark is dropped; a key repeated within an object is a problem naming the line and
  the key (the record is not read).

  Args:
    data: the file's bytes (UTF-8) or text.
    source: the file name (for messages).
    allow_empty: accept a file without records.

  Returns:
    A :class:`ValidationReport`.
  """
  raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
  raw = raw.removeprefix(_BOM.encode("utf-8"))
  report = ValidationReport(source=source)

  def rows():
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
      if not line_bytes.strip():
        continue
      try:
        text = line_bytes.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_unique_keys)
      except UnicodeDecodeError:
        report.num_rows += 1
        report.problems.append(Problem(f"<line {number}>", "<json>", "not UTF-8 text", number, source))
        continue
      except _DuplicateKey as dup:
        report.num_rows += 1
        label = _duplicate_key_label(text, dup, number)
        report.problems.append(Problem(label, dup.key, f"key {dup.key!r} appears twice in the JSON object (a "
                                       "repeated key would silently replace the first)", number, source))
        continue
      except (ValueError, RecursionError) as err:
        report.num_rows += 1
        report.problems.append(Problem(f"<line {number}>", "<json>", f"invalid JSON: {err}", number, source))
        continue
      yield number, obj

  return validate_rows(rows(), source=source, report=report, allow_empty=allow_empty)


def _duplicate_columns(header: Sequence[str]) -> list[tuple[str, list[int]]]:
  """Columns named more than once (names compared after NFC), with their 1-based positions."""
  positions: dict[str, list[int]] = {}
  for i, name in enumerate(header, start=1):
    positions.setdefault(nfc(name), []).append(i)
  return [(name, where) for name, where in positions.items() if len(where) > 1]


def records_from_csv(data: bytes | str, *, source: str = "<csv>", allow_empty: bool = False) -> ValidationReport:
  """Validates CSV text whose header names record fields; empty cells mean "not given".

  A leading UTF-8 byte-order mark is dropped; a column named twice in the header is a problem of the file (no
  row is read, since either cell could be the intended one).

  Args:
    data: the file's bytes (UTF-8) or text.
    source: the file name (for messages).
    allow_empty: accept a file without records (no rows below the header, or no header).

  Returns:
    A :class:`ValidationReport`.
  """
  report = ValidationReport(source=source)
  if isinstance(data, bytes):
    try:
      data = data.decode("utf-8")
    except UnicodeDecodeError as err:
      report.problems.append(Problem("<file>", "<csv>", f"file is not UTF-8 text ({err})", None, source))
      return report
  reader = csv.DictReader(io.StringIO(data.removeprefix(_BOM), newline=""))
  try:
    header = reader.fieldnames or []
  except csv.Error as err:
    report.problems.append(Problem("<header>", "<csv>", f"unreadable CSV header: {err}", reader.line_num, source))
    return report
  for name, where in _duplicate_columns(header):
    report.problems.append(Problem(
        "<header>", name or "<unnamed column>", f"column {name!r} appears {len(where)} times in the header "
        f"(columns {', '.join(map(str, where))}); a repeated column would silently replace the first",
        reader.line_num, source))
  if report.problems:
    return report

  def rows():
    while True:
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error as err:
        report.num_rows += 1
        report.problems.append(Problem(f"<line {reader.line_num}>", "<csv>", f"unreadable CSV: {err}",
                                       reader.line_num, source))
        return
      cleaned = {k: v for k, v in row.items() if not (isinstance(v, str) and v == "") and v is not None}
      if None in row:  # more cells than header columns
        cleaned[None] = row[None]
      yield reader.line_num, cleaned

  return validate_rows(rows(), source=source, report=report, allow_empty=allow_empty)


def read_records(path: str | pathlib.Path, *, format: str | None = None,
                 allow_empty: bool = False) -> ValidationReport:
  """Reads and validates a JSON Lines (``.jsonl``) or CSV (``.csv``) file, collecting every problem.

  Args:
    path: the file.
    format: ``"jsonl"`` or ``"csv"``; from the suffix when None.
    allow_empty: accept a file without records (else that is a problem).

  Returns:
    A :class:`ValidationReport` (check ``report.ok``).
  """
  path = pathlib.Path(path)
  kind = _format_of(path, format)
  data = path.read_bytes()
  if kind == "jsonl":
    return records_from_jsonl(data, source=str(path), allow_empty=allow_empty)
  return records_from_csv(data, source=str(path), allow_empty=allow_empty)


def load_records(path: str | pathlib.Path, *, format: str | None = None,
                 allow_empty: bool = False) -> list[RightsRecord]:
  """Reads a records file; raises :class:`RecordValidationError` listing every problem if a row is bad.

  Args:
    path: the file.
    format: ``"jsonl"`` or ``"csv"``; from the suffix when None.
    allow_empty: return ``[]`` for a file without records (else that is an error).

  Returns:
    The records, in file order.

  Raises:
    RecordValidationError: for any problem (bad rows, duplicate keys / columns / work ids, no records).
  """
  report = read_records(path, format=format, allow_empty=allow_empty)
  report.raise_if_invalid()
  return report.records


def record_to_json(record: RightsRecord) -> dict[str, Any]:
  """The record as a JSON-able dict (all fields, tuples as lists)."""
  return record.model_dump(mode="json")


def records_to_jsonl(records: Iterable[RightsRecord]) -> str:
  """JSON Lines text, one record per line, ASCII-escaped."""
  return "".join(json.dumps(record_to_json(r), ensure_ascii=True) + "\n" for r in records)


def _csv_cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, tuple | list):
    names = list(value)
    if any(";" in n for n in names) or (names and names[0].lstrip().startswith("[")):
      return json.dumps(names, ensure_ascii=False)
    return "; ".join(names)
  return str(value)


def records_to_csv(records: Iterable[RightsRecord]) -> str:
  """CSV text with a header of :data:`FIELDS`."""
  out = io.StringIO(newline="")
  writer = csv.writer(out, lineterminator="\r\n")  # quotes cells holding \r or \n
  writer.writerow(FIELDS)
  for record in records:
    writer.writerow([_csv_cell(getattr(record, name)) for name in FIELDS])
  return out.getvalue()


def save_records(records: Iterable[RightsRecord], path: str | pathlib.Path, *,
                 format: str | None = None) -> None:
  """Writes records as JSON Lines or CSV (by suffix or ``format``); parent directories are created."""
  path = pathlib.Path(path)
  kind = _format_of(path, format)
  text = records_to_jsonl(records) if kind == "jsonl" else records_to_csv(records)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8", newline="")
