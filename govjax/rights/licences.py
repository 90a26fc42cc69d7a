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
returns the table's spelling. Deprecated SPDX ids (``GPL-3.0``) and the informal ``CC-PDDM-1.0`` resolve to
their current ids through an explicit alias table.

Example:
  >>> licence_terms("cc-by-nc-sa-4.0")
  LicenceTerms(use='non-commercial', attribution='yes', share_alike='yes')
  >>> licence_class("CC-BY-4.0", licence_terms("CC-BY-4.0"))
  'permissive'
  >>> licence_class("unknown", licence_terms("unknown"))
  'unknown'
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

Use = Literal["all", "non-commercial", "academic", "unspecified"]
Ternary = Literal["yes", "no", "unknown"]
LicenceClass = Literal["permissive", "restrictive", "unknown"]

USE_VALUES: tuple[str, ...] = ("all", "non-commercial", "academic", "unspecified")
TERNARY_VALUES: tuple[str, ...] = ("yes", "no", "unknown")
LICENCE_CLASSES: tuple[str, ...] = ("permissive", "restrictive", "unknown")
UNKNOWN = "unknown"
LICENSE_REF_PREFIX = "LicenseRef-"

# An SPDX short identifier (idstring: letters, digits, '.', '-' and '+'), or LicenseRef-<idstring>.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


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


def canonical_licence(licence: str) -> str:
  """Checks the syntax of a licence identifier and returns its canonical spelling.

  Args:
    licence: an SPDX id (any case), a ``LicenseRef-...`` id or ``"unknown"``.

  Returns:
    The table's spelling for listed ids and aliases, ``"unknown"``, ``LicenseRef-`` + the given suffix, or the
    stripped input for a syntactically valid id that is not listed.

  Raises:
    ValueError: for an empty string, an SPDX expression (``MIT OR Apache-2.0``) or invalid characters.
  """
  if not isinstance(licence, str):
    raise ValueError(f"expected a licence identifier string, got {type(licence).__name__}")
  text = licence.strip()
  if not text:
    raise ValueError("empty licence; use 'unknown' when the licence is not known")
  if text.lower() == UNKNOWN:
    return UNKNOWN
  if " " in text:
    raise ValueError(
        f"{text!r} is not a single licence identifier (SPDX expressions are not supported; record the "
        "licence that applies, or a LicenseRef-... id)"
    )
  if not _ID_PATTERN.match(text):
    raise ValueError(
        f"{text!r} is not an SPDX identifier (letters, digits, '.', '-', '+'), a LicenseRef-... id or "
        "'unknown'"
    )
  if text.lower().startswith(LICENSE_REF_PREFIX.lower()):
    suffix = text[len(LICENSE_REF_PREFIX):]
    if not suffix:
      raise ValueError("'LicenseRef-' needs a suffix naming the licence, e.g. LicenseRef-publisher-terms")
    return LICENSE_REF_PREFIX + suffix
  return _BY_LOWER.get(text.lower(), text)


def licence_info(licence: str) -> LicenceInfo | None:
  """The table row of a licence, or None when it is not listed (unknown, LicenseRef, unlisted SPDX id)."""
  return LICENCE_TABLE.get(canonical_licence(licence))


def is_listed(licence: str) -> bool:
  """Whether the licence's terms come from the table (and so cannot be overridden by a record)."""
  return licence_info(licence) is not None


def licence_terms(licence: str) -> LicenceTerms:
  """DPI-style terms of a licence; ``unspecified/unknown/unknown`` when it is not listed (never guessed)."""
  info = licence_info(licence)
  return info.terms if info is not None else UNSPECIFIED_TERMS


def licence_class(licence: str, terms: LicenceTerms) -> LicenceClass:
  """Coarse class used by the default policy.

  - ``unknown``: the licence is ``unknown``, or its use is ``unspecified``;
  - ``restrictive``: use limited (non-commercial / academic), share-alike required or unknown, or
    no-derivatives;
  - ``permissive``: anyone may use it, adaptations allowed, no share-alike (attribution may be required).

  Args:
    licence: the licence id (its table row supplies ``no_derivatives``).
    terms: the record's terms (from the table, or stated for a LicenseRef/unlisted licence).

  Returns:
    One of :data:`LICENCE_CLASSES`.
  """
  if canonical_licence(licence) == UNKNOWN or terms.use == "unspecified":
    return "unknown"
  info = licence_info(licence)
  if terms.use != "all" or terms.share_alike != "no" or (info is not None and info.no_derivatives):
    return "restrictive"
  return "permissive"
