"""Rights metadata and the routing policy.

- :mod:`govjax.rights.records`: the validated per-work :class:`RightsRecord` (NFC text, no invisible characters
  in ids or decisive fields), JSON Lines / CSV I/O (repeated keys / columns and empty files are errors), reports.
- :mod:`govjax.rights.licences`: SPDX ids and expressions (AND / OR / WITH) -> Data Provenance Initiative-style
  terms (use, attribution, share-alike).
- :mod:`govjax.rights.optout`: TDMRep ``tdm-reservation`` and CAWG training-mining values.
- :mod:`govjax.rights.policy`: the declarative policy (ordered rules -> a work's treatment; a CAWG
  ``constrained`` permission is restricted by default).
- :mod:`govjax.rights.decisions`: a policy applied to a corpus: per-work decisions, exclusion before batching,
  jittable ``[B, L]`` depth masks.

Typical use in a data pipeline::

  records = load_records("rights.jsonl")   # or govjax.data.scenario.resolve_records("default", works)
  governed = govern_works(works, records, load_policy("default"), num_groups=L)
  # governed.works go to the loader; per batch: batch_mask(batch["work_index"], governed.per_work_depth, L)
"""

from govjax.rights.decisions import (
    ExclusionReport,
    GovernedWorks,
    PolicyDecisions,
    apply_policy,
    batch_mask,
    batch_region,
    depth_mask,
    exclude_works,
    govern_works,
)
from govjax.rights.licences import (
    LICENCE_TABLE,
    LicenceTerms,
    canonical_licence,
    licence_class,
    licence_terms,
)
from govjax.rights.policy import (
    Condition,
    Policy,
    PolicyError,
    Rule,
    Treatment,
    default_policy,
    load_policy,
    resolve_depth,
)
from govjax.rights.records import (
    Problem,
    RecordValidationError,
    RightsRecord,
    ValidationReport,
    load_records,
    parse_record,
    read_records,
    save_records,
)

__all__ = [
    "LICENCE_TABLE", "LicenceTerms", "canonical_licence", "licence_class", "licence_terms",
    "Condition", "ExclusionReport", "GovernedWorks", "Policy", "PolicyDecisions", "PolicyError", "Rule",
    "Treatment", "apply_policy", "batch_mask", "batch_region", "default_policy", "depth_mask",
    "exclude_works", "govern_works", "load_policy", "resolve_depth",
    "Problem", "RecordValidationError", "RightsRecord", "ValidationReport", "load_records", "parse_record",
    "read_records", "save_records",
]
