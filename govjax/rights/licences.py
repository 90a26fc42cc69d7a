"""Licence identifiers and their terms, in the style of the Data Provenance Initiative (DPI).

A licence is named by an SPDX identifier (``CC-BY-4.0``), a ``LicenseRef-...`` identifier for custom terms, or
``"unknown"``. The table below maps each listed SPDX id to the DPI-style triple

- ``use``: who may use the material: ``all`` / ``non-commercial`` / ``academic`` / ``unspecified``;
- ``attribution``: must the source be credited: ``yes`` / ``no`` / ``unknown``;
- ``share_alike``: must derivatives carry the same licence: ``yes`` / ``no`` / ``unknown``;

plus ``no_derivatives`` (the CC ND clause, which the DPI triple does not capture). Licences outside the table
(``unknown``, ``LicenseRef-...``, or an SPDX id we do not list) are **never guessed**: their terms are
``unspecified / unknown / unknown`` unless a record states them (only allowed for ``LicenseRef-...`` and
unlisted ids), and the policy's "unknown" rule applies.

SPDX identifiers match case-insensitively (SPDX spec, Annex "License matching"); :func:`canonical_licence`
returns the table's spelling. Deprecated SPDX ids (``GPL-3.0``, ``GPL-2.0+``) and the informal ``CC-PDDM-1.0``
resolve to their current ids through an explicit alias table. A ``+`` is only the SPDX "or any later version"
suffix at the end of an id (``GPL-2.0+``, ``Apache-2.0+``: an unlisted id unless aliased); ids joined with ``+``
(``MIT+Apache-2.0``) are rejected, with the expression to write instead.

**SPDX licence expressions** (parsed with the ``license-expression`` package) combine ids with ``AND`` (every
licence applies), ``OR`` (the licensee chooses one) and ``WITH`` (a licence with an exception), with
parentheses; operators are written in upper case by :func:`canonical_licence` (``mit or apache-2.0`` ->
``MIT OR Apache-2.0``) and every id is canonicalised as above (``unknown`` cannot be part of an expression).
An expression's DPI terms are derived, never stated. Each term is ordered from least to most restrictive:
``use`` ``all`` < ``non-commercial`` < ``academic`` < ``unspecified``; ``attribution`` and ``share_alike``
``no`` < ``unknown`` < ``yes`` (an obligation one part is known to impose binds the combination);
``no_derivatives`` False < True. Then

- ``A AND B``: both licences bind the user, so each term is the most restrictive of the parts' terms (and
  no-derivatives if any part has it);
- ``A OR B``: the licensee may choose, so the combination has the terms of its most permissive alternative,
  taken as a whole (terms are never mixed across alternatives): the alternative with the smallest
  (class, use, no_derivatives, share_alike, attribution), class ordered ``permissive`` < ``restrictive`` <
  ``unknown`` (:func:`licence_class`), the first of equals;
- ``A WITH exception``: the terms of ``A`` (an exception grants extra permissions, which the DPI terms do not
  capture; keeping the base terms errs on the restrictive side);
- an id outside the table counts with ``unspecified / unknown / unknown`` terms, so ``MIT AND LicenseRef-x`` is
  of unknown class while ``MIT OR LicenseRef-x`` has MIT's terms.

Example:
  >>> licence_terms("cc-by-nc-sa-4.0")
  LicenceTerms(use='non-commercial', attribution='yes', share_alike='yes')
  >>> licence_class("CC-BY-4.0", licence_terms("CC-BY-4.0"))
  'permissive'
  >>> licence_class("unknown", licence_terms("unknown"))
  'unknown'
  >>> canonical_licence("mit or apache-2.0"), licence_terms("CC-BY-NC-4.0 AND CC-BY-SA-4.0")
  ('MIT OR Apache-2.0', LicenceTerms(use='non-commercial', attribution='yes', share_alike='yes'))
  >>> licence_class("MIT OR CC-BY-NC-4.0", licence_terms("MIT OR CC-BY-NC-4.0"))
  'permissive'
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Literal

import boolean
import license_expression

Use = Literal["all", "non-commercial", "academic", "unspecified"]
Ternary = Literal["yes", "no", "unknown"]
LicenceClass = Literal["permissive", "restrictive", "unknown"]

USE_VALUES: tuple[str, ...] = ("all", "non-commercial", "academic", "unspecified")
TERNARY_VALUES: tuple[str, ...] = ("yes", "no", "unknown")
LICENCE_CLASSES: tuple[str, ...] = ("permissive", "restrictive", "unknown")
UNKNOWN = "unknown"
LICENSE_REF_PREFIX = "LicenseRef-"

# An SPDX short identifier (idstring: letters, digits, '.', '-'), optionally followed by the "or later" '+', or
# LicenseRef-<idstring>; an exception id (after WITH) is an idstring.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*\+?$")
_IDSTRING = re.compile(r"^[A-Za-z0-9.-]+$")
_EXCEPTION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
# Characters of an SPDX expression as govjax accepts it (no DocumentRef-...: prefixes).
_EXPRESSION_CHARS = re.compile(r"^[A-Za-z0-9.+() -]+$")
_USE_ORDER = {"all": 0, "non-commercial": 1, "academic": 2, "unspecified": 3}  # least to most restrictive
_TERNARY_ORDER = {"no": 0, "unknown": 1, "yes": 2}
_CLASS_ORDER = {"permissive": 0, "restrictive": 1, "unknown": 2}
_LICENSING = license_expression.Licensing()  # no symbol table: ids are checked against LICENCE_TABLE here


@dataclasses.dataclass(frozen=True)
class LicenceTerms:
  """The DPI-style terms of a licence."""

  use: Use
  attribution: Ternary
  share_alike: Ternary


UNSPECIFIED_TERMS = LicenceTerms(use="unspecified", attribution="unknown", share_alike="unknown")


@dataclasses.dataclass(frozen=True)
class LicenceInfo:
  """One row of the licence table.

  Attributes:
    spdx_id: the SPDX identifier.
    name: the licence's full name.
    terms: its DPI-style terms.
    no_derivatives: whether the licence forbids sharing adaptations (CC "ND").
  """

  spdx_id: str
  name: str
  terms: LicenceTerms
  no_derivatives: bool = False


def _table() -> dict[str, LicenceInfo]:
  rows: list[LicenceInfo] = []

  def add(spdx_id, name, use, attribution, share_alike, no_derivatives=False):
    rows.append(LicenceInfo(spdx_id, name, LicenceTerms(use, attribution, share_alike), no_derivatives))

  add("CC0-1.0", "Creative Commons Zero v1.0 Universal", "all", "no", "no")
  add("CC-PDM-1.0", "Creative Commons Public Domain Mark v1.0 Universal", "all", "no", "no")
  add("CC-PDDC", "Creative Commons Public Domain Dedication and Certification", "all", "no", "no")
  add("PDDL-1.0", "Open Data Commons Public Domain Dedication & License 1.0", "all", "no", "no")
  add("Unlicense", "The Unlicense", "all", "no", "no")
  add("0BSD", "BSD Zero Clause License", "all", "no", "no")
  cc_families = {
      "BY": ("Attribution", "all", "no", False),
      "BY-SA": ("Attribution Share Alike", "all", "yes", False),
      "BY-NC": ("Attribution Non Commercial", "non-commercial", "no", False),
      "BY-NC-SA": ("Attribution Non Commercial Share Alike", "non-commercial", "yes", False),
      "BY-ND": ("Attribution No Derivatives", "all", "no", True),
      "BY-NC-ND": ("Attribution Non Commercial No Derivatives", "non-commercial", "no", True),
  }
  for family, (words, use, share_alike, nd) in cc_families.items():
    for version in ("2.0", "2.5", "3.0", "4.0"):
      add(f"CC-{family}-{version}", f"Creative Commons {words} {version}", use, "yes", share_alike, nd)
  add("MIT", "MIT License", "all", "yes", "no")
  add("ISC", "ISC License", "all", "yes", "no")
  add("Apache-2.0", "Apache License 2.0", "all", "yes", "no")
  add("BSD-2-Clause", 'BSD 2-Clause "Simplified" License', "all", "yes", "no")
  add("BSD-3-Clause", 'BSD 3-Clause "New" or "Revised" License', "all", "yes", "no")
  add("ODC-By-1.0", "Open Data Commons Attribution License v1.0", "all", "yes", "no")
  add("CDLA-Permissive-2.0", "Community Data License Agreement Permissive 2.0", "all", "no", "no")
  add("CDLA-Sharing-1.0", "Community Data License Agreement Sharing 1.0", "all", "yes", "yes")
  add("ODbL-1.0", "Open Data Commons Open Database License v1.0", "all", "yes", "yes")
  add("MPL-2.0", "Mozilla Public License 2.0", "all", "yes", "yes")
  for gpl in ("GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later"):
    add(gpl, f"GNU General Public License v{gpl[4:]}", "all", "yes", "yes")
  for lgpl in ("LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later"):
    add(lgpl, f"GNU Lesser General Public License v{lgpl[5:]}", "all", "yes", "yes")
  for agpl in ("AGPL-3.0-only", "AGPL-3.0-or-later"):
    add(agpl, f"GNU Affero General Public License v{agpl[5:]}", "all", "yes", "yes")
  return {row.spdx_id: row for row in rows}


LICENCE_TABLE: dict[str, LicenceInfo] = _table()

# Deprecated SPDX ids and informal spellings -> current ids (explicit; nothing else is inferred).
LICENCE_ALIASES: dict[str, str] = {
    "CC-PDDM-1.0": "CC-PDM-1.0",
    "GPL-2.0": "GPL-2.0-only",
    "GPL-2.0+": "GPL-2.0-or-later",
    "GPL-3.0": "GPL-3.0-only",
    "GPL-3.0+": "GPL-3.0-or-later",
    "LGPL-2.1": "LGPL-2.1-only",
    "LGPL-2.1+": "LGPL-2.1-or-later",
    "LGPL-3.0": "LGPL-3.0-only",
    "LGPL-3.0+": "LGPL-3.0-or-later",
    "AGPL-3.0": "AGPL-3.0-only",
}

_BY_LOWER: dict[str, str] = {key.lower(): key for key in LICENCE_TABLE}
_BY_LOWER.update({alias.lower(): target for alias, target in LICENCE_ALIASES.items()})


# A parsed licence: ("id", canonical id) | ("with", canonical id, exception id) | ("and" | "or", (parts, ...)).
_Node = tuple


def _quote(text: str, limit: int = 80) -> str:
  return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _plus_hint(text: str) -> str:
  parts = [part for part in text.split("+") if part] or ["MIT", "Apache-2.0"]
  if len(parts) == 1:
    parts.append("Apache-2.0" if parts[0] != "Apache-2.0" else "MIT")
  return (f"{_quote(text)} joins licence ids with '+', which is not SPDX syntax: write {' AND '.join(parts)!r} when "
          f"every licence applies, or {' OR '.join(parts)!r} when the licensee may choose one (a '+' at the end "
          "of an id, as in 'GPL-2.0+', means 'or any later version')")


def _canonical_id(text: str) -> str:
  if text.lower() == UNKNOWN:
    return UNKNOWN
  if text.lower().startswith(LICENSE_REF_PREFIX.lower()):
    suffix = text[len(LICENSE_REF_PREFIX):]
    if not suffix:
      raise ValueError("'LicenseRef-' needs a suffix naming the licence, e.g. LicenseRef-publisher-terms")
    if "+" in suffix:
      raise ValueError(_plus_hint(text) if not suffix.endswith("+") or "+" in suffix[:-1] else
                       f"{_quote(text)}: a LicenseRef-... id cannot take the 'or later' '+'")
    if not _IDSTRING.match(suffix):
      raise ValueError(f"{_quote(text)}: a LicenseRef-... suffix has only letters, digits, '.' and '-'")
    return LICENSE_REF_PREFIX + suffix
  if "+" in text[:-1] or text == "+":
    raise ValueError(_plus_hint(text))
  if not _ID_PATTERN.match(text):
    raise ValueError(
        f"{_quote(text)} is not an SPDX identifier (letters, digits, '.', '-', and an optional final '+' meaning "
        "'or later'), a LicenseRef-... id or 'unknown'"
    )
  return _BY_LOWER.get(text.lower(), text)


def _node(expression, text: str) -> _Node:
  if isinstance(expression, license_expression.LicenseWithExceptionSymbol):
    base = _leaf(expression.license_symbol.key, text)
    exception = expression.exception_symbol.key
    if not _EXCEPTION_PATTERN.match(exception):
      raise ValueError(f"{_quote(text)}: {exception!r} is not an SPDX exception identifier")
    return ("with", base, exception)
  if isinstance(expression, license_expression.LicenseSymbol):
    return ("id", _leaf(expression.key, text))
  kind = "and" if isinstance(expression, _LICENSING.AND) else "or" if isinstance(expression, _LICENSING.OR) else None
  if kind is None:
    raise ValueError(f"{_quote(text)} is not an SPDX licence expression (only AND, OR and WITH are allowed)")
  parts: list[_Node] = []
  for arg in expression.args:
    child = _node(arg, text)
    parts.extend(child[1] if child[0] == kind else (child,))  # A AND (B AND C) is A AND B AND C
  return (kind, tuple(parts))


def _leaf(key: str, text: str) -> str:
  if " " in key:  # the parser joins ids that no operator separates
    raise ValueError(f"{_quote(text)}: {_quote(key)} is not one licence identifier (SPDX ids have no spaces, e.g. "
                     "'CC-BY-4.0'); join licences with AND or OR ('MIT AND Apache-2.0'), an exception with WITH")
  if key.lower() == UNKNOWN:
    raise ValueError(f"{_quote(text)}: 'unknown' cannot be part of a licence expression")
  return _canonical_id(key)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> _Node:
  if not any(ch.isspace() or ch in "()" for ch in text):
    return ("id", _canonical_id(text))
  if not _EXPRESSION_CHARS.match(text):
    bad = sorted({ch for ch in text if not _EXPRESSION_CHARS.match(ch)})
    raise ValueError(f"{_quote(text)} is not an SPDX licence expression: it contains {''.join(bad)!r} (allowed: "
                     "identifiers, spaces, parentheses, AND, OR, WITH)")
  examples = "e.g. 'MIT OR Apache-2.0', 'CC-BY-4.0 AND MIT', 'GPL-2.0-only WITH Classpath-exception-2.0'"
  try:
    expression = _LICENSING.parse(text, validate=False)
  except (license_expression.ExpressionError, boolean.ParseError) as err:
    raise ValueError(f"{_quote(text)} is not a valid SPDX licence expression ({err}); {examples}") from None
  except (IndexError, TypeError, AttributeError):  # the parser's failure on e.g. "()"
    raise ValueError(f"{_quote(text)} is not a valid SPDX licence expression; {examples}") from None
  if expression is None:
    raise ValueError("empty licence; use 'unknown' when the licence is not known")
  return _node(expression, text)


def _render(node: _Node, nested: bool = False) -> str:
  if node[0] == "id":
    return node[1]
  if node[0] == "with":
    return f"{node[1]} WITH {node[2]}"
  text = f" {node[0].upper()} ".join(_render(part, nested=True) for part in node[1])
  return f"({text})" if nested else text


def _parsed(licence: str) -> _Node:
  if not isinstance(licence, str):
    raise ValueError(f"expected a licence identifier string, got {type(licence).__name__}")
  text = licence.strip()
  if not text:
    raise ValueError("empty licence; use 'unknown' when the licence is not known")
  try:
    return _parse(text)
  except RecursionError:
    raise ValueError(f"licence expression {text[:40]!r}... is nested too deeply") from None


def canonical_licence(licence: str) -> str:
  """Checks the syntax of a licence identifier or SPDX expression and returns its canonical spelling.

  Args:
    licence: an SPDX id (any case), a ``LicenseRef-...`` id, ``"unknown"``, or an SPDX expression of such ids
      (``MIT OR Apache-2.0``, ``GPL-2.0-only WITH Classpath-exception-2.0``, ``(MIT OR BSD-3-Clause) AND
      CC-BY-4.0``).

  Returns:
    The table's spelling for listed ids and aliases, ``"unknown"``, ``LicenseRef-`` + the given suffix, or the
    stripped input for a syntactically valid id that is not listed; for an expression, its ids spelled so, the
    operators in upper case, nested operations in parentheses.

  Raises:
    ValueError: for an empty string, invalid characters, ids joined with ``+`` (the message gives the AND / OR
      expression to write), or an invalid expression.

  Example:
    >>> canonical_licence("gpl-2.0+"), canonical_licence("mit AND (bsd-3-clause or apache-2.0)")
    ('GPL-2.0-or-later', 'MIT AND (BSD-3-Clause OR Apache-2.0)')
    >>> try:
    ...   canonical_licence("MIT+Apache-2.0")
    ... except ValueError as error:
    ...   print(str(error).split(": ")[1].split(" when")[0])
    write 'MIT AND Apache-2.0'
  """
  return _render(_parsed(licence))


def is_expression(licence: str) -> bool:
  """Whether ``licence`` is an SPDX expression (AND / OR / WITH) rather than a single identifier.

  Args:
    licence: an identifier or expression (checked as by :func:`canonical_licence`).

  Returns:
    True for an expression.

  Example:
    >>> is_expression("MIT"), is_expression("(MIT)"), is_expression("MIT WITH Some-exception")
    (False, False, True)
  """
  return _parsed(licence)[0] != "id"


def licence_ids(licence: str) -> tuple[str, ...]:
  """The canonical licence ids of an identifier or expression, in order (exceptions not included).

  Args:
    licence: an identifier or expression.

  Returns:
    The ids, repeats kept.

  Example:
    >>> licence_ids("MIT OR (GPL-2.0+ WITH Classpath-exception-2.0)")
    ('MIT', 'GPL-2.0-or-later')
  """
  def ids(node: _Node):
    if node[0] in ("id", "with"):
      yield node[1]
    else:
      for part in node[1]:
        yield from ids(part)

  return tuple(ids(_parsed(licence)))


def licence_info(licence: str) -> LicenceInfo | None:
  """The table row of a licence, or None when it is not listed (unknown, LicenseRef, unlisted SPDX id) or is an
  expression (see :func:`licence_terms`)."""
  node = _parsed(licence)
  return LICENCE_TABLE.get(node[1]) if node[0] == "id" else None


def is_listed(licence: str) -> bool:
  """Whether the licence's terms come from the table (and so cannot be overridden by a record): a listed id, or
  an expression all of whose ids are listed."""
  return all(name in LICENCE_TABLE for name in licence_ids(licence))


def may_state_terms(licence: str) -> bool:
  """Whether a record may state the terms of ``licence``: only for a single ``LicenseRef-...`` or unlisted id
  (a listed id's terms are the table's, ``unknown``'s are unknown, an expression's are derived from its parts).

  Args:
    licence: an identifier or expression.

  Returns:
    True when a record's stated terms replace the unknown ones.

  Example:
    >>> [may_state_terms(x) for x in ("LicenseRef-label", "MIT", "unknown", "LicenseRef-a OR LicenseRef-b")]
    [True, False, False, False]
  """
  node = _parsed(licence)
  return node[0] == "id" and node[1] != UNKNOWN and node[1] not in LICENCE_TABLE


def _class_of(terms: LicenceTerms, no_derivatives: bool) -> LicenceClass:
  if terms.use == "unspecified":
    return "unknown"
  if terms.use != "all" or terms.share_alike != "no" or no_derivatives:
    return "restrictive"
  return "permissive"


@functools.lru_cache(maxsize=4096)
def _effective(node: _Node) -> tuple[LicenceTerms, bool]:
  """``(terms, no_derivatives)`` of a parsed licence (see the module docstring for AND / OR / WITH)."""
  if node[0] in ("id", "with"):
    info = LICENCE_TABLE.get(node[1])
    return (info.terms, info.no_derivatives) if info is not None else (UNSPECIFIED_TERMS, False)
  parts = [_effective(part) for part in node[1]]
  if node[0] == "or":
    def permissiveness(part):
      terms, nd = part
      return (_CLASS_ORDER[_class_of(terms, nd)], _USE_ORDER[terms.use], nd, _TERNARY_ORDER[terms.share_alike],
              _TERNARY_ORDER[terms.attribution])
    return min(parts, key=permissiveness)
  strictest = lambda name, order: max((getattr(terms, name) for terms, _ in parts), key=order.__getitem__)
  terms = LicenceTerms(use=strictest("use", _USE_ORDER), attribution=strictest("attribution", _TERNARY_ORDER),
                       share_alike=strictest("share_alike", _TERNARY_ORDER))
  return terms, any(nd for _, nd in parts)


def licence_terms(licence: str) -> LicenceTerms:
  """DPI-style terms of a licence; ``unspecified/unknown/unknown`` when it is not listed (never guessed); for an
  expression, derived from its parts (module docstring).

  Example:
    >>> licence_terms("CC-BY-NC-4.0 OR CC-BY-SA-4.0")
    LicenceTerms(use='all', attribution='yes', share_alike='yes')
    >>> licence_terms("GPL-2.0-only WITH Classpath-exception-2.0") == licence_terms("GPL-2.0-only")
    True
  """
  return _effective(_parsed(licence))[0]


def licence_no_derivatives(licence: str) -> bool:
  """Whether the licence (for an expression: its effective alternative, or any part of an AND) forbids sharing
  adaptations.

  Args:
    licence: an identifier or expression.

  Returns:
    The CC "ND" clause of the table row(s); False for ids outside the table.

  Example:
    >>> licence_no_derivatives("CC-BY-ND-4.0 AND MIT"), licence_no_derivatives("CC-BY-ND-4.0 OR MIT")
    (True, False)
  """
  return _effective(_parsed(licence))[1]


def licence_class(licence: str, terms: LicenceTerms) -> LicenceClass:
  """Coarse class used by the default policy.

  - ``unknown``: the licence is ``unknown``, or its use is ``unspecified``;
  - ``restrictive``: use limited (non-commercial / academic), share-alike required or unknown, or
    no-derivatives;
  - ``permissive``: anyone may use it, adaptations allowed, no share-alike (attribution may be required).

  Args:
    licence: the licence id or expression (the table supplies ``no_derivatives``).
    terms: the record's terms (from the table or expression, or stated for a LicenseRef/unlisted licence).

  Returns:
    One of :data:`LICENCE_CLASSES`.
  """
  if canonical_licence(licence) == UNKNOWN:
    return "unknown"
  return _class_of(terms, licence_no_derivatives(licence))
