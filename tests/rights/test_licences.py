import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("bad", ["", " ", "CC BY 4.0", "LicenseRef-", "ü-licence", "-x"])
def test_malformed_identifiers_raise(bad):
  with pytest.raises(ValueError):
    canonical_licence(bad)


# ----------------------------------------------------------------------------------------------------
# SPDX expressions.


@pytest.mark.parametrize("given,canonical", [
    ("MIT OR Apache-2.0", "MIT OR Apache-2.0"),
    ("mit or apache-2.0", "MIT OR Apache-2.0"),
    ("GPL-2.0-only WITH Classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"),
    ("cc-by-4.0 and mit", "CC-BY-4.0 AND MIT"),
    ("(MIT OR BSD-3-Clause) AND CC-BY-4.0", "(MIT OR BSD-3-Clause) AND CC-BY-4.0"),
    ("MIT AND (Apache-2.0 AND CC0-1.0)", "MIT AND Apache-2.0 AND CC0-1.0"),
    ("MIT AND Apache-2.0 OR CC0-1.0", "(MIT AND Apache-2.0) OR CC0-1.0"),  # AND binds tighter than OR
    ("GPL-2.0+ OR MIT", "GPL-2.0-or-later OR MIT"),
    ("(MIT)", "MIT"),
    ("licenseref-label OR MIT", "LicenseRef-label OR MIT"),
])
def test_expressions_are_accepted_and_canonicalised(given, canonical):
  assert canonical_licence(given) == canonical
  assert canonical_licence(canonical) == canonical
  assert licences.is_expression(given) == (canonical != "MIT")


def test_a_trailing_plus_is_the_spdx_or_later_suffix():
  assert canonical_licence("GPL-2.0+") == "GPL-2.0-or-later" and is_listed("GPL-2.0+")
  assert canonical_licence("LGPL-2.1+") == "LGPL-2.1-or-later"
  # An or-later id outside the alias table is an unlisted id: terms unknown, never guessed.
  assert canonical_licence("Apache-2.0+") == "Apache-2.0+" and not is_listed("Apache-2.0+")
  assert licence_terms("Apache-2.0+") == UNSPECIFIED_TERMS


@pytest.mark.parametrize("joined,parts", [("MIT+Apache-2.0", ("MIT", "Apache-2.0")),
                                          ("CC-BY-4.0+MIT", ("CC-BY-4.0", "MIT")),
                                          ("MIT+Apache-2.0+CC0-1.0", ("MIT", "Apache-2.0", "CC0-1.0")),
                                          ("CC0-1.0 OR MIT+Apache-2.0", ("MIT", "Apache-2.0"))])
def test_ids_joined_with_plus_are_rejected_with_the_expression_to_write(joined, parts):
  with pytest.raises(ValueError) as err:
    canonical_licence(joined)
  message = str(err.value)
  assert "joins licence ids with '+', which is not SPDX syntax" in message
  assert repr(" AND ".join(parts)) in message and repr(" OR ".join(parts)) in message
  assert "'GPL-2.0+', means 'or any later version'" in message


@pytest.mark.parametrize("bad,why", [
    ("MIT AND", "AND requires two or more"), ("(MIT", "not a valid SPDX licence expression"),
    ("()", "not a valid SPDX licence expression"), ("MIT WITH", "not a valid SPDX licence expression"),
    ("MIT WITH A WITH B", "not a valid SPDX licence expression"), ("MIT OR unknown", "'unknown' cannot be part"),
    ("MIT Apache-2.0", "is not one licence identifier"), ("MIT, Apache-2.0", "contains ','"),
    ("MIT / Apache-2.0", "contains '/'"), ("MIT OR X:Y", "contains ':'"), ("MIT\tOR X", "contains '\\t'"),
    ("MIT OR LicenseRef-", "needs a suffix"), ("MIT WITH Class+path", "not an SPDX exception identifier"),
    ("LicenseRef-x+", "cannot take the 'or later' '+'"),
])
def test_invalid_expressions_raise_with_a_reason(bad, why):
  with pytest.raises(ValueError, match=re.escape(why)):
    canonical_licence(bad)


# (expression, expected terms, expected class): AND takes the most restrictive of each term, OR the terms of the
# most permissive alternative as a whole, WITH the base licence's terms.
COMBINED = [
    ("CC-BY-NC-4.0 AND CC-BY-SA-4.0", ("non-commercial", "yes", "yes"), "restrictive"),
    ("CC0-1.0 AND MIT", ("all", "yes", "no"), "permissive"),
    ("CC-BY-ND-4.0 AND MIT", ("all", "yes", "no"), "restrictive"),  # no-derivatives carries over
    ("MIT AND LicenseRef-x", ("unspecified", "yes", "unknown"), "unknown"),
    ("CC0-1.0 AND LicenseRef-x", ("unspecified", "unknown", "unknown"), "unknown"),
    ("MIT OR Apache-2.0", ("all", "yes", "no"), "permissive"),
    ("GPL-3.0-only OR MIT", ("all", "yes", "no"), "permissive"),
    ("CC-BY-NC-4.0 OR CC-BY-SA-4.0", ("all", "yes", "yes"), "restrictive"),
    ("CC-BY-NC-SA-4.0 OR CC-BY-NC-4.0", ("non-commercial", "yes", "no"), "restrictive"),
    ("CC-BY-4.0 OR CC0-1.0", ("all", "no", "no"), "permissive"),
    ("LicenseRef-x OR CC-BY-NC-4.0", ("non-commercial", "yes", "no"), "restrictive"),
    ("LicenseRef-x OR Unlisted-1.0", ("unspecified", "unknown", "unknown"), "unknown"),
    ("CC-BY-ND-4.0 OR CC-BY-SA-4.0", ("all", "yes", "yes"), "restrictive"),
    ("GPL-2.0-only WITH Classpath-exception-2.0", ("all", "yes", "yes"), "restrictive"),
    ("MIT WITH Some-exception", ("all", "yes", "no"), "permissive"),
    ("(CC-BY-NC-4.0 OR MIT) AND CC-BY-SA-4.0", ("all", "yes", "yes"), "restrictive"),
    ("(CC-BY-NC-4.0 AND CC-BY-4.0) OR (CC-BY-SA-4.0 AND MIT)", ("all", "yes", "yes"), "restrictive"),
]


@pytest.mark.parametrize("expression,terms,klass", COMBINED)
def test_terms_of_expressions(expression, terms, klass):
  assert licence_terms(expression) == LicenceTerms(*terms)
  assert licence_class(expression, licence_terms(expression)) == klass


def test_no_derivatives_of_an_or_is_the_chosen_alternatives():
  assert licences.licence_no_derivatives("CC-BY-ND-4.0 OR MIT") is False
  assert licences.licence_no_derivatives("CC-BY-ND-4.0 OR CC-BY-NC-4.0") is True  # use 'all' beats NC
  assert licences.licence_no_derivatives("CC-BY-ND-4.0 AND MIT") is True


def test_listing_and_stating_terms_of_expressions():
  assert is_listed("MIT OR Apache-2.0") and not is_listed("MIT OR LicenseRef-x")
  assert licences.licence_ids("MIT OR (GPL-2.0+ WITH Classpath-exception-2.0)") == ("MIT", "GPL-2.0-or-later")
  assert licences.licence_info("MIT OR Apache-2.0") is None
  assert [licences.may_state_terms(x) for x in ("LicenseRef-x", "Unlisted-1.0", "MIT", "unknown",
                                                 "LicenseRef-x OR LicenseRef-y")] == [True, True, False, False, False]


_USE = {"all": 0, "non-commercial": 1, "academic": 2, "unspecified": 3}
_TERNARY = {"no": 0, "unknown": 1, "yes": 2}
_ids = st.sampled_from(sorted(LICENCE_TABLE) + ["LicenseRef-x", "Unlisted-1.0"])


def _tree(depth=2):
  leaf = st.tuples(st.just("id"), _ids)
  if depth == 0:
    return leaf
  return st.one_of(leaf, st.tuples(st.sampled_from(["AND", "OR", "and", "or"]),
                                   st.lists(_tree(depth - 1), min_size=2, max_size=3)))


def _text(node, case):
  if node[0] == "id":
    return case(node[1]) if not node[1].startswith("LicenseRef") else node[1]
  return "(" + f" {node[0]} ".join(_text(part, case) for part in node[1]) + ")"


@settings(max_examples=150, deadline=None)
@given(_tree(), st.sampled_from([str, str.lower, str.upper]))
def test_expression_properties(node, case):
  text = _text(node, case)
  canonical = canonical_licence(text)
  assert canonical_licence(canonical) == canonical  # idempotent
  assert licence_terms(canonical) == licence_terms(text)
  if node[0] == "id":
    return
  parts = [licence_terms(_text(part, str)) for part in node[1]]
  combined = licence_terms(text)
  if node[0].upper() == "OR":
    assert combined in parts  # one alternative's terms, as a whole
  else:
    assert all(_USE[combined.use] >= _USE[p.use] and _TERNARY[combined.attribution] >= _TERNARY[p.attribution]
               and _TERNARY[combined.share_alike] >= _TERNARY[p.share_alike] for p in parts)
    assert combined.use in {p.use for p in parts}
