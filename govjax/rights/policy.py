"""The routing policy: rights records -> training treatments -> exclusion lists and per-batch depth masks.

A :class:`Policy` is an ordered list of rules; the first rule whose condition matches a record decides its
:class:`Treatment`, and every decision records which rule fired. Treatments:

- ``{"action": "exclude", "reason": ...}``: the work never enters training (removed before batching);
- ``{"action": "depth", "depth": D}``: the work's gradient may reach only the top ``D`` of the model's ``L``
  depth groups (groups ``>= L - D``; group 0 is nearest the input);
- ``{"action": "region", "region": NAME, "depth": D}``: the work is routed to a named removable region (for
  "sink" routing; ``depth`` defaults to ``"full"``); region names are declared in ``Policy.regions`` and
  resolve to their index.

Depth encoding (``D``): an int ``>= 1`` (number of top groups, clipped to ``L``), ``"full"`` (= ``L``),
``"surface"`` (= 1: only the output group) or a percentage string ``"50%"`` (= ``ceil(0.5 * L)``, at least 1).
Floats are rejected to avoid the ``1`` vs ``1.0`` ambiguity.

Conditions (all given fields must match; a list means "any of"; empty matches everything): ``opted_out``,
``content_class``, ``licence`` and ``work_id`` (shell patterns, e.g. ``"CC-BY-NC-*"``), ``licence_class``
(``permissive``/``restrictive``/``unknown``), ``encoding_licence_class`` (the same or ``none``), ``use``,
``attribution``, ``share_alike``, ``simulated``.

Works without a record take ``Policy.missing_record``: ``"error"`` (the default: raise, listing every such
work) or a treatment. The default policy (:func:`default_policy`) is::

  {"name": "default", "rules": [
    {"name": "opted-out", "when": {"opted_out": true}, "treatment": {"action": "exclude", "reason": "..."}},
    {"name": "structural", "when": {"content_class": "structural"},
     "treatment": {"action": "depth", "depth": "full"}},
    {"name": "permissive", "when": {"licence_class": "permissive"},
     "treatment": {"action": "depth", "depth": "full"}},
    {"name": "restricted-or-unknown", "when": {}, "treatment": {"action": "depth", "depth": "surface"}}]}

Example:
  >>> from govjax.rights.records import parse_record
  >>> recs = [parse_record({"work_id": "a", "licence": "CC0-1.0"}),
  ...         parse_record({"work_id": "b", "licence": "CC-BY-NC-4.0"}),
  ...         parse_record({"work_id": "c", "licence": "MIT", "tdm_reservation": True})]
  >>> d = apply_policy(recs, default_policy(), num_groups=6)
  >>> d.include.tolist(), d.depth.tolist(), d.rules
  ([True, True, False], [6, 1, 0], ('permissive', 'restricted-or-unknown', 'opted-out'))
  >>> batch_mask(jnp.array([0, 1]), jnp.asarray(d.depth), 6).tolist()
  [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import importlib.util
import json
import math
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
from pydantic import ConfigDict, Field, StrictInt, field_validator, model_validator

from govjax.rights.records import RightsRecord

_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
NO_RECORD = "<no record>"
MISSING_RULE = "missing-record"


class PolicyError(ValueError):
  """A policy that cannot be loaded, or records/works the policy cannot decide."""


def resolve_depth(depth: int | str, num_groups: int) -> int:
  """Resolves a depth spec to a number of top depth groups in ``[1, num_groups]``.

  Args:
    depth: int ``>= 1`` (clipped to ``num_groups``), ``"full"``, ``"surface"`` or ``"NN%"``.
    num_groups: the model's number of depth groups ``L``.

  Returns:
    The number of top groups the example's gradient may reach.

  Example:
    >>> [resolve_depth(d, 6) for d in ("full", "surface", 2, 9, "50%", "1%")]
    [6, 1, 2, 6, 3, 1]
  """
  if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
    raise ValueError(f"num_groups must be a positive int, got {num_groups!r}")
  if isinstance(depth, bool) or not isinstance(depth, int | str):
    raise ValueError(f"depth must be an int, 'full', 'surface' or 'NN%', got {depth!r}")
  if isinstance(depth, int):
    if depth < 1:
      raise ValueError(f"depth must be >= 1 (use the exclude action for 0), got {depth}")
    return min(depth, num_groups)
  if depth == "full":
    return num_groups
  if depth == "surface":
    return 1
  match = _PERCENT.match(depth)
  if not match or not 0 < float(match.group(1)) <= 100:
    raise ValueError(f"depth must be an int, 'full', 'surface' or a percentage in (0, 100]%, got {depth!r}")
  return max(1, min(num_groups, math.ceil(float(match.group(1)) / 100 * num_groups - 1e-9)))


class Treatment(pydantic.BaseModel):
  """What training does with a work: ``exclude``, train to a ``depth``, or route to a ``region``."""

  model_config = ConfigDict(extra="forbid", frozen=True)

  action: Literal["exclude", "depth", "region"]
  depth: StrictInt | str | None = None
  region: str | None = None
  reason: str = ""

  @model_validator(mode="after")
  def _check(self) -> Treatment:
    if self.action == "exclude" and (self.depth is not None or self.region is not None):
      raise ValueError("an exclude treatment takes no depth or region")
    if self.action == "depth" and (self.depth is None or self.region is not None):
      raise ValueError("a depth treatment needs 'depth' (and no region)")
    if self.action == "region" and not self.region:
      raise ValueError("a region treatment needs 'region' (a name declared in the policy's regions)")
    if self.depth is not None:
      resolve_depth(self.depth, 1)  # syntax check
    return self

  def resolved_depth(self, num_groups: int) -> int:
    """Top groups the work may reach: 0 for exclude, ``full`` for a region without a depth."""
    if self.action == "exclude":
      return 0
    return resolve_depth(self.depth if self.depth is not None else "full", num_groups)


def _as_tuple(value: Any) -> Any:
  return (value,) if isinstance(value, str) else value


class Condition(pydantic.BaseModel):
  """A match on a record's fields: every given field must match (a list means any of its values)."""

  model_config = ConfigDict(extra="forbid", frozen=True)

  opted_out: bool | None = None
  simulated: bool | None = None
  content_class: tuple[Literal["structural", "specific"], ...] | None = None
  licence_class: tuple[Literal["permissive", "restrictive", "unknown"], ...] | None = None
  encoding_licence_class: tuple[Literal["permissive", "restrictive", "unknown", "none"], ...] | None = None
  use: tuple[Literal["all", "non-commercial", "academic", "unspecified"], ...] | None = None
  attribution: tuple[Literal["yes", "no", "unknown"], ...] | None = None
  share_alike: tuple[Literal["yes", "no", "unknown"], ...] | None = None
  licence: tuple[str, ...] | None = None
  work_id: tuple[str, ...] | None = None

  @field_validator("content_class", "licence_class", "encoding_licence_class", "use", "attribution",
                   "share_alike", "licence", "work_id", mode="before")
  @classmethod
  def _wrap(cls, value: Any) -> Any:
    return _as_tuple(value)

  def matches(self, record: RightsRecord) -> bool:
    """Whether ``record`` satisfies every given field."""
    for name in ("opted_out", "simulated"):
      wanted = getattr(self, name)
      if wanted is not None and getattr(record, name) != wanted:
        return False
    for name in ("content_class", "licence_class", "encoding_licence_class", "use", "attribution",
                 "share_alike"):
      allowed = getattr(self, name)
      if allowed is not None and getattr(record, name) not in allowed:
        return False
    for name in ("licence", "work_id"):
      patterns = getattr(self, name)
      if patterns is not None and not any(fnmatch.fnmatchcase(getattr(record, name), p) for p in patterns):
        return False
    return True


class Rule(pydantic.BaseModel):
  """A named rule: records matching ``when`` get ``treatment``."""

  model_config = ConfigDict(extra="forbid", frozen=True)

  name: str = Field(min_length=1)
  when: Condition = Condition()
  treatment: Treatment


class Policy(pydantic.BaseModel):
  """An ordered list of rules (first match wins), declared regions and the missing-record behaviour.

  Attributes:
    name: shown in reports.
    rules: the rules, in order.
    regions: names of removable regions; a region treatment's region resolves to its index here.
    missing_record: ``"error"`` or the treatment of works that have no record.
  """

  model_config = ConfigDict(extra="forbid", frozen=True)

  name: str = "custom"
  rules: tuple[Rule, ...] = Field(min_length=1)
  regions: tuple[str, ...] = ()
  missing_record: Literal["error"] | Treatment = "error"

  @model_validator(mode="after")
  def _check(self) -> Policy:
    names = [rule.name for rule in self.rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or MISSING_RULE in names:
      raise ValueError(f"rule names must be unique and not {MISSING_RULE!r}; repeated: {duplicates}")
    treatments = [(r.name, r.treatment) for r in self.rules]
    if isinstance(self.missing_record, Treatment):
      treatments.append((MISSING_RULE, self.missing_record))
    for name, treatment in treatments:
      if treatment.action == "region" and treatment.region not in self.regions:
        raise ValueError(f"rule {name!r}: region {treatment.region!r} is not declared in regions "
                         f"{self.regions}")
    return self

  def decide(self, record: RightsRecord) -> tuple[Rule, str]:
    """The first rule matching ``record`` and the decision's reason.

    Raises:
      PolicyError: when no rule matches (the policy has no catch-all rule).
    """
    for rule in self.rules:
      if rule.when.matches(record):
        reason = rule.treatment.reason or f"rule {rule.name}"
        if rule.when.opted_out and record.opt_out_reasons:
          reason += f" ({'; '.join(record.opt_out_reasons)})"
        return rule, reason
    raise PolicyError(f"policy {self.name!r}: no rule matches work {record.work_id!r} (licence "
                      f"{record.licence}, "
                      f"content_class {record.content_class}); add a catch-all rule with an empty 'when'")


def default_policy(*, permissive_depth: int | str = "full", restricted_depth: int | str = "surface",
                   strict_encodings: bool = False) -> Policy:
  """The default policy.

  Rules in order: opted-out -> exclude; structural -> full depth; permissive licence -> ``permissive_depth``;
  anything else (restrictive or unknown licence) -> ``restricted_depth``. Missing records are an error.

  Args:
    permissive_depth: depth of specific works under a permissive licence.
    restricted_depth: depth of specific works under a restrictive or unknown licence.
    strict_encodings: also give ``restricted_depth`` to works whose ``encoding_licence`` (the licence of the
      digital encoding, e.g. the music21 corpus terms) is restrictive or unknown (rule
      ``encoding-restricted``, before ``permissive``).

  Returns:
    The :class:`Policy` (named ``default`` or ``default-strict-encodings``).
  """
  depth = lambda d, why: Treatment(action="depth", depth=d, reason=why)
  rules = [
      Rule(name="opted-out", when=Condition(opted_out=True),
           treatment=Treatment(action="exclude", reason="rights holder opted out of TDM / AI training")),
      Rule(name="structural", when=Condition(content_class=("structural",)),
           treatment=depth("full", "structural material (not a specific work)")),
  ]
  if strict_encodings:
    rules.append(Rule(name="encoding-restricted",
                      when=Condition(encoding_licence_class=("restrictive", "unknown")),
                      treatment=depth(restricted_depth, "encoding licence restrictive or unknown")))
  rules += [
      Rule(name="permissive", when=Condition(licence_class=("permissive",)),
           treatment=depth(permissive_depth, "permissive licence")),
      Rule(name="restricted-or-unknown", when=Condition(),
           treatment=depth(restricted_depth, "restrictive or unknown licence")),
  ]
  return Policy(name="default-strict-encodings" if strict_encodings else "default", rules=tuple(rules))


def include_all_policy() -> Policy:
  """Baseline ``include-all``: every work trains the full depth, opt-outs included (vanilla training)."""
  return Policy(name="include-all", rules=(
      Rule(name="everything", when=Condition(),
           treatment=Treatment(action="depth", depth="full", reason="vanilla baseline: no governance")),))


def exclude_restricted_policy() -> Policy:
  """Baseline ``exclude-restricted``: opted-out and restrictive/unknown-licence specific works are excluded."""
  return Policy(name="exclude-restricted", rules=(
      Rule(name="opted-out", when=Condition(opted_out=True),
           treatment=Treatment(action="exclude", reason="rights holder opted out of TDM / AI training")),
      Rule(name="structural", when=Condition(content_class=("structural",)),
           treatment=Treatment(action="depth", depth="full", reason="structural material")),
      Rule(name="permissive", when=Condition(licence_class=("permissive",)),
           treatment=Treatment(action="depth", depth="full", reason="permissive licence")),
      Rule(name="restricted-or-unknown", when=Condition(),
           treatment=Treatment(action="exclude", reason="baseline: restrictive or unknown licence excluded")),
  ))


def sink_policy(region: str = "sink") -> Policy:
  """``sink``: like the default, but restrictive/unknown specific works go to the removable region ``region``."""
  base = default_policy()
  rules = list(base.rules[:-1]) + [Rule(
      name="restricted-or-unknown", when=Condition(),
      treatment=Treatment(action="region", region=region, depth="full",
                          reason="restrictive or unknown licence: routed to a removable region"))]
  return Policy(name="sink", rules=tuple(rules), regions=(region,))


NAMED_POLICIES = {"include-all": include_all_policy, "exclude-restricted": exclude_restricted_policy,
                  "sink": sink_policy}


def _validation_message(err: pydantic.ValidationError) -> str:
  parts = []
  for e in err.errors(include_url=False):
    where = ".".join(str(p) for p in e["loc"]) or "<policy>"
    parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
  return "; ".join(parts)


def policy_from_dict(data: Any, *, source: str = "<policy>") -> Policy:
  """Validates a policy given as a dict (the JSON form); raises :class:`PolicyError` naming each bad field."""
  try:
    return Policy.model_validate(data)
  except pydantic.ValidationError as err:
    raise PolicyError(f"{source}: invalid policy: {_validation_message(err)}") from None


def load_policy(spec: str | pathlib.Path | Policy | Mapping | None = "default") -> Policy:
  """Loads a policy.

  Args:
    spec: a :class:`Policy`, a dict, ``"default"`` / None, ``"default-strict-encodings"``, a named baseline
      (``"include-all"``, ``"exclude-restricted"``, ``"sink"``), ``"default-restricted-depth-D"`` (the default
      with restricted works at depth ``D``), a ``.json`` file, or a ``.py`` file defining
      ``get_policy() -> Policy | dict``.

  Returns:
    The :class:`Policy`.
  """
  if isinstance(spec, Policy):
    return spec
  if spec is None or spec == "default":
    return default_policy()
  if spec == "default-strict-encodings":
    return default_policy(strict_encodings=True)
  if isinstance(spec, str) and spec in NAMED_POLICIES:
    return NAMED_POLICIES[spec]()
  if isinstance(spec, str) and (match := re.fullmatch(r"default-restricted-depth-(\d+)", spec)):
    policy = default_policy(restricted_depth=int(match.group(1)))
    return policy.model_copy(update={"name": spec})
  if isinstance(spec, Mapping):
    return policy_from_dict(spec)
  path = pathlib.Path(spec)
  if not path.is_file():
    raise PolicyError(f"policy {str(spec)!r} is neither 'default' nor an existing .json/.py file")
  if path.suffix == ".py":
    module_spec = importlib.util.spec_from_file_location(f"govjax_policy_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_policy"):
      raise PolicyError(f"{path}: a Python policy file must define get_policy()")
    result = module.get_policy()
    if isinstance(result, Policy):
      return result
    if isinstance(result, Mapping):
      return policy_from_dict(result, source=str(path))
    raise PolicyError(f"{path}: get_policy() must return a Policy or a dict, got {type(result).__name__}")
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
  except (ValueError, UnicodeDecodeError) as err:
    raise PolicyError(f"{path}: not valid JSON: {err}") from None
  return policy_from_dict(data, source=str(path))


def policy_to_json(policy: Policy) -> str:
  """The policy's JSON form (loadable with :func:`load_policy`)."""
  return policy.model_dump_json(indent=2, exclude_none=True)


# ------------------------------------------------------------------------------------------------------------
# Decisions.


@dataclasses.dataclass(frozen=True)
class ExcludedWork:
  work_id: str
  rule: str
  reason: str
  licence: str


@dataclasses.dataclass(frozen=True)
class ExclusionReport:
  """Which works were excluded and why (nothing is dropped without appearing here)."""

  num_works: int
  num_kept: int
  excluded: tuple[ExcludedWork, ...]

  @property
  def num_excluded(self) -> int:
    return len(self.excluded)

  def to_dict(self) -> dict:
    return {"num_works": self.num_works, "num_kept": self.num_kept, "num_excluded": self.num_excluded,
            "excluded": [dataclasses.asdict(e) for e in self.excluded]}

  def format(self) -> str:
    lines = [f"excluded {self.num_excluded} of {self.num_works} works ({self.num_kept} kept)"]
    lines += [f"  {e.work_id}: {e.reason} [rule {e.rule}, licence {e.licence}]" for e in self.excluded]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class PolicyDecisions:
  """Per-work treatments, aligned with ``work_ids``.

  Attributes:
    work_ids: the works, in order.
    include: bool ``[N]``: False for excluded works.
    depth: int32 ``[N]``: top depth groups each work may reach (0 when excluded, ``num_groups`` = full).
    region: int32 ``[N]``: index into ``region_names`` or -1.
    rules: name of the rule that decided each work (``missing-record`` for works without a record).
    reasons: human-readable reason of each decision.
    licences: each work's licence (``<no record>`` when missing).
    num_groups: the model's depth groups ``L``.
    region_names: the policy's regions.
    policy_name: the policy's name.
  """

  work_ids: tuple[str, ...]
  include: np.ndarray
  depth: np.ndarray
  region: np.ndarray
  rules: tuple[str, ...]
  reasons: tuple[str, ...]
  licences: tuple[str, ...]
  num_groups: int
  region_names: tuple[str, ...] = ()
  policy_name: str = ""

  def __len__(self) -> int:
    return len(self.work_ids)

  def index(self) -> dict[str, int]:
    """``work_id -> position``."""
    return {w: i for i, w in enumerate(self.work_ids)}

  def select(self, work_ids: Sequence[str]) -> PolicyDecisions:
    """The decisions of ``work_ids``, in that order (e.g. the loader's works, so ``depth[work_index]`` works).

    Raises:
      PolicyError: listing the works that have no decision.
    """
    index = self.index()
    missing = [w for w in work_ids if w not in index]
    if missing:
      raise PolicyError(f"{len(missing)} work(s) have no policy decision: {missing[:10]}"
                        + (" ..." if len(missing) > 10 else ""))
    rows = np.asarray([index[w] for w in work_ids], dtype=np.int64)
    pick = lambda seq: tuple(seq[i] for i in rows)
    return dataclasses.replace(self, work_ids=tuple(work_ids), include=self.include[rows],
                               depth=self.depth[rows], region=self.region[rows], rules=pick(self.rules),
                               reasons=pick(self.reasons), licences=pick(self.licences))

  def treatment_label(self, i: int) -> str:
    """``exclude``, ``depth d/L`` or ``region NAME depth d/L``."""
    if not self.include[i]:
      return "exclude"
    label = f"depth {int(self.depth[i])}/{self.num_groups}"
    if self.region[i] >= 0:
      label = f"region {self.region_names[self.region[i]]} {label}"
    return label

  @property
  def exclusion_report(self) -> ExclusionReport:
    """Every excluded work with its rule, reason and licence."""
    excluded = tuple(ExcludedWork(self.work_ids[i], self.rules[i], self.reasons[i], self.licences[i])
                     for i in np.flatnonzero(~self.include))
    return ExclusionReport(len(self), int(self.include.sum()), excluded)

  def summary(self) -> dict:
    """Counts by licence, treatment, licence x treatment and rule (JSON-able)."""
    labels = [self.treatment_label(i) for i in range(len(self))]
    by_both: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for licence, label in zip(self.licences, labels, strict=True):
      by_both[licence][label] += 1
    return {
        "policy": self.policy_name,
        "num_groups": self.num_groups,
        "num_works": len(self),
        "num_included": int(self.include.sum()),
        "num_excluded": int((~self.include).sum()),
        "by_treatment": dict(sorted(collections.Counter(labels).items())),
        "by_licence": dict(sorted(collections.Counter(self.licences).items())),
        "by_rule": dict(sorted(collections.Counter(self.rules).items())),
        "by_licence_and_treatment": {k: dict(sorted(v.items())) for k, v in sorted(by_both.items())},
    }

  def format_summary(self) -> str:
    """The summary as text: counts by treatment, by licence x treatment, by rule, then the exclusions."""
    summary = self.summary()
    lines = [f"policy {summary['policy']!r}, {summary['num_groups']} depth groups: "
             f"{summary['num_works']} works, {summary['num_included']} included, "
             f"{summary['num_excluded']} excluded", "by treatment:"]
    lines += [f"  {label:<28} {n:>6}" for label, n in summary["by_treatment"].items()]
    lines.append("by licence:")
    for licence, counts in summary["by_licence_and_treatment"].items():
      detail = ", ".join(f"{label}: {n}" for label, n in counts.items())
      lines.append(f"  {licence:<28} {summary['by_licence'][licence]:>6}  ({detail})")
    lines.append("by rule:")
    lines += [f"  {rule:<28} {n:>6}" for rule, n in summary["by_rule"].items()]
    lines.append(self.exclusion_report.format())
    return "\n".join(lines)

  def rows(self) -> list[dict]:
    """One JSON-able dict per work (for reports and manifests)."""
    return [{"work_id": w, "include": bool(self.include[i]), "depth": int(self.depth[i]),
             "region": self.region_names[self.region[i]] if self.region[i] >= 0 else None,
             "rule": self.rules[i], "reason": self.reasons[i], "licence": self.licences[i]}
            for i, w in enumerate(self.work_ids)]


def apply_policy(records: Iterable[RightsRecord], policy: Policy, num_groups: int, *,
                 work_ids: Sequence[str] | None = None) -> PolicyDecisions:
  """Decides every work's treatment.

  Args:
    records: rights records (unique work ids).
    policy: the policy.
    num_groups: the model's depth groups ``L`` (depths resolve against it).
    work_ids: decide exactly these works, in this order; works without a record take
      ``policy.missing_record`` (``"error"`` raises listing all of them). When None, decide every record in
      order.

  Returns:
    :class:`PolicyDecisions`.

  Raises:
    PolicyError: duplicate records, missing records under ``missing_record="error"``, or no matching rule.
  """
  by_id: dict[str, RightsRecord] = {}
  for record in records:
    if record.work_id in by_id:
      raise PolicyError(f"duplicate rights record for work {record.work_id!r}")
    by_id[record.work_id] = record
  work_ids = tuple(by_id) if work_ids is None else tuple(work_ids)
  missing = [w for w in work_ids if w not in by_id]
  if missing and policy.missing_record == "error":
    raise PolicyError(f"{len(missing)} work(s) have no rights record (policy {policy.name!r} has "
                      f"missing_record='error'): {missing[:10]}" + (" ..." if len(missing) > 10 else ""))
  regions = {name: i for i, name in enumerate(policy.regions)}
  n = len(work_ids)
  include, depth = np.zeros(n, bool), np.zeros(n, np.int32)
  region = np.full(n, -1, np.int32)
  rules, reasons, licence_of = [], [], []
  for i, work_id in enumerate(work_ids):
    record = by_id.get(work_id)
    if record is None:
      treatment, rule_name = policy.missing_record, MISSING_RULE
      reason = treatment.reason or "no rights record"
      licence_of.append(NO_RECORD)
    else:
      rule, reason = policy.decide(record)
      treatment, rule_name = rule.treatment, rule.name
      licence_of.append(record.licence)
    include[i] = treatment.action != "exclude"
    depth[i] = treatment.resolved_depth(num_groups)
    if treatment.action == "region":
      region[i] = regions[treatment.region]
    rules.append(rule_name)
    reasons.append(reason)
  return PolicyDecisions(work_ids, include, depth, region, tuple(rules), tuple(reasons), tuple(licence_of),
                         num_groups, tuple(policy.regions), policy.name)


def _work_id(work: Any) -> str:
  work_id = work.get("work_id") if isinstance(work, Mapping) else getattr(work, "work_id", None)
  if not isinstance(work_id, str):
    raise PolicyError(f"work {work!r:.80} has no string work_id")
  return work_id


def exclude_works(works: Sequence[Any], decisions: PolicyDecisions) -> tuple[list, ExclusionReport]:
  """Removes excluded works before batching.

  Args:
    works: dicts or objects with a ``work_id``.
    decisions: decisions covering every work (see :func:`apply_policy` ``work_ids=`` for missing records).

  Returns:
    ``(kept_works, report)``: kept works in their original order and the report of the excluded ones.

  Raises:
    PolicyError: when a work has no decision (nothing is silently kept or dropped).
  """
  ids = [_work_id(w) for w in works]
  selected = decisions.select(ids)
  kept = [w for w, keep in zip(works, selected.include, strict=True) if keep]
  return kept, selected.exclusion_report


@dataclasses.dataclass(frozen=True)
class GovernedWorks:
  """Training works after the policy, with per-work arrays aligned to ``works`` (the loader's ``work_index``).

  Attributes:
    works: kept works, in their original order.
    per_work_depth: int32 ``[len(works)]``.
    per_work_region: int32 ``[len(works)]`` (-1 none).
    decisions: decisions of all input works (for reports).
    report: the exclusion report.
  """

  works: list
  per_work_depth: np.ndarray
  per_work_region: np.ndarray
  decisions: PolicyDecisions
  report: ExclusionReport


def govern_works(works: Sequence[Any], records: Iterable[RightsRecord], policy: Policy,
                 num_groups: int) -> GovernedWorks:
  """Applies ``policy`` to ``works`` and excludes what it says, in one call for the data pipeline."""
  decisions = apply_policy(records, policy, num_groups, work_ids=[_work_id(w) for w in works])
  kept, report = exclude_works(works, decisions)
  kept_decisions = decisions.select([_work_id(w) for w in kept])
  return GovernedWorks(kept, kept_decisions.depth, kept_decisions.region, decisions, report)


# ------------------------------------------------------------------------------------------------------------
# Per-batch masks.


def depth_mask(depth_per_row: jax.Array | np.ndarray, num_groups: int) -> jax.Array:
  """``[B, L]`` float32 mask: row b is 1 for groups ``>= L - depth[b]`` (depth clipped to ``[0, L]``).

  Example:
    >>> depth_mask(jnp.array([4, 1, 0]), 4).astype(int).tolist()
    [[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
  """
  depth = jnp.clip(jnp.asarray(depth_per_row, jnp.int32), 0, num_groups)
  groups = jnp.arange(num_groups, dtype=jnp.int32)
  return (groups[None, :] >= num_groups - depth[:, None]).astype(jnp.float32)


def batch_mask(work_index: jax.Array, per_work_depth: jax.Array, num_groups: int) -> jax.Array:
  """Jittable ``[B, L]`` mask from the batch's ``work_index`` and the per-work depths.

  Args:
    work_index: int ``[B]`` indices into ``per_work_depth``; out-of-range rows get an all-zero mask.
    per_work_depth: int ``[N]`` (e.g. :attr:`GovernedWorks.per_work_depth`).
    num_groups: static ``L`` (mark it static under ``jax.jit``).

  Returns:
    float32 ``[B, L]``.
  """
  depth = jnp.take(jnp.asarray(per_work_depth, jnp.int32), jnp.asarray(work_index, jnp.int32), axis=0,
                   mode="fill", fill_value=0)
  return depth_mask(depth, num_groups)


def batch_region(work_index: jax.Array, per_work_region: jax.Array) -> jax.Array:
  """Jittable int32 ``[B]`` region index per row (-1 none or out of range)."""
  return jnp.take(jnp.asarray(per_work_region, jnp.int32), jnp.asarray(work_index, jnp.int32), axis=0,
                  mode="fill", fill_value=-1)
