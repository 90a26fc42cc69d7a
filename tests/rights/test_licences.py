import pytest

from govjax.rights import licences
from govjax.rights.licences import (
    LICENCE_TABLE,
    UNSPECIFIED_TERMS,
    LicenceTerms,
    canonical_licence,
    is_listed,
    licence_class,
    licence_terms,
)

# (id, use, attribution, share_alike, class) for the licences the issue names.
EXPECTED = [
    ("CC0-1.0", "all", "no", "no", "permissive"),
    ("CC-PDM-1.0", "all", "no", "no", "permissive"),
    ("CC-BY-4.0", "all", "yes", "no", "permissive"),
    ("CC-BY-SA-4.0", "all", "yes", "yes", "restrictive"),
    ("CC-BY-NC-4.0", "non-commercial", "yes", "no", "restrictive"),
    ("CC-BY-NC-SA-4.0", "non-commercial", "yes", "yes", "restrictive"),
    ("CC-BY-ND-4.0", "all", "yes", "no", "restrictive"),
    ("CC-BY-NC-ND-4.0", "non-commercial", "yes", "no", "restrictive"),
    ("MIT", "all", "yes", "no", "permissive"),
    ("Apache-2.0", "all", "yes", "no", "permissive"),
    ("BSD-3-Clause", "all", "yes", "no", "permissive"),
    ("GPL-3.0-only", "all", "yes", "yes", "restrictive"),
    ("LGPL-3.0-only", "all", "yes", "yes", "restrictive"),
]


@pytest.mark.parametrize("spdx_id,use,attribution,share_alike,klass", EXPECTED)
def test_table_terms_and_class(spdx_id, use, attribution, share_alike, klass):
  terms = licence_terms(spdx_id)
  assert terms == LicenceTerms(use, attribution, share_alike)
  assert licence_class(spdx_id, terms) == klass
  assert is_listed(spdx_id) and LICENCE_TABLE[spdx_id].spdx_id == spdx_id


def test_no_derivatives_is_marked_only_on_nd_licences():
  nd = {k for k, v in LICENCE_TABLE.items() if v.no_derivatives}
  assert nd and all("-ND-" in k for k in nd)
  assert all(v.no_derivatives for k, v in LICENCE_TABLE.items() if "-ND-" in k)


def test_matching_is_case_insensitive_and_aliases_are_explicit():
  assert canonical_licence(" cc-by-nc-sa-4.0 ") == "CC-BY-NC-SA-4.0"
  assert canonical_licence("apache-2.0") == "Apache-2.0"
  assert canonical_licence("CC-PDDM-1.0") == "CC-PDM-1.0"
  assert canonical_licence("GPL-3.0") == "GPL-3.0-only"
  assert canonical_licence("UNKNOWN") == "unknown"
  assert canonical_licence("licenseref-My-Label") == "LicenseRef-My-Label"
  assert set(licences.LICENCE_ALIASES.values()) <= set(LICENCE_TABLE)


@pytest.mark.parametrize("licence", ["unknown", "LicenseRef-publisher-terms", "Some-Unlisted-1.0"])
def test_unlisted_licences_are_never_guessed(licence):
  assert not is_listed(licence)
  assert licence_terms(licence) == UNSPECIFIED_TERMS
  assert licence_class(licence, licence_terms(licence)) == "unknown"


def test_stated_terms_of_custom_licences_classify():
  assert licence_class("LicenseRef-x", LicenceTerms("all", "yes", "no")) == "permissive"
  assert licence_class("LicenseRef-x", LicenceTerms("academic", "yes", "no")) == "restrictive"
  assert licence_class("LicenseRef-x", LicenceTerms("all", "yes", "unknown")) == "restrictive"
  # "unknown" stays unknown whatever terms are passed.
  assert licence_class("unknown", LicenceTerms("all", "no", "no")) == "unknown"


@pytest.mark.parametrize("bad", ["", " ", "MIT OR Apache-2.0", "CC BY 4.0", "LicenseRef-", "ü-licence", "-x"])
def test_malformed_identifiers_raise(bad):
  with pytest.raises(ValueError):
    canonical_licence(bad)
