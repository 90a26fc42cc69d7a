"""The routing policy: declarative rules that map a work's rights record to its training treatment.

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
``constrained`` (AI or generative training allowed only under a stated CAWG constraint, and not opted out),
``content_class``, ``licence`` and ``work_id`` (shell patterns, e.g. ``"CC-BY-NC-*"``, matched against the whole
canonical licence: an SPDX expression such as ``MIT AND CC-BY-NC-4.0`` matches ``"*CC-BY-NC-*"`` but not
``"CC-BY-NC-*"``; ``licence_class`` and the terms are derived for the whole expression), ``licence_class``
(``permissive``/``restrictive``/``unknown``), ``encoding_licence_class`` (the same or ``none``), ``use``,
``attribution``, ``share_alike``, ``simulated``.

Works without a record take ``Policy.missing_record``: ``"error"`` (the default: raise, listing every such
work) or a treatment. The default policy (:func:`default_policy`) is::

  {"name": "default", "rules": [
    {"name": "opted-out", "when": {"opted_out": true}, "treatment": {"action": "exclude", "reason": "..."}},
    {"name": "constrained", "when": {"constrained": true},
     "treatment": {"action": "depth", "depth": "surface", "reason": "..."}},
    {"name": "structural", "when": {"content_class": "structural"},
     "treatment": {"action": "depth", "depth": "full"}},
    {"name": "permissive", "when": {"licence_class": "permissive"},
     "treatment": {"action": "depth", "depth": "full"}},
    {"name": "restricted-or-unknown", "when": {}, "treatment": {"action": "depth", "depth": "surface"}}]}

A CAWG ``constrained`` AI-training or generative-training permission is treated conservatively: without a
constraint text it counts as ``notAllowed`` (rule ``opted-out``); with one, the work is **restricted** (rule
``constrained``, the restricted depth whatever its licence: a condition is not a permission until a person has
judged it; write a custom rule matching ``{"constrained": true}`` or the work id once it has been judged).

Applying a policy to a corpus (decisions, exclusion before batching, per-batch masks) is
:mod:`govjax.rights.decisions`.

Example:
  >>> from govjax.rights.records import parse_record
  >>> policy = default_policy()
  >>> [policy.decide(parse_record({"work_id": w, "licence": licence, "tdm_reservation": optout}))[0].name
  ...  for w, licence, optout in [("a", "CC0-1.0", False), ("b", "CC-BY-NC-4.0", False), ("c", "MIT", True)]]
  ['permissive', 'restricted-or-unknown', 'opted-out']
  >>> policy.decide(parse_record({"work_id": "d", "licence": "CC0-1.0", "generative_training": "constrained",
  ...                             "generative_training_constraint": "credit the label"}))[0].name
  'constrained'
  >>> policy.rules[-1].treatment.resolved_depth(6)
  1
"""

from __future__ import annotations

import fnmatch
import json
import math
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import ConfigDict, Field, StrictInt, field_validator, model_validator

from govjax.core.config import load_python_config
from govjax.core.errors import ConfigError, UserError
from govjax.rights.records import RightsRecord

__all__ = ["CONSTRAINED_REASON", "MISSING_RULE", "NAMED_POLICIES", "NO_RECORD", "Condition", "Policy", "PolicyError",
    "Rule", "Treatment", "default_policy", "exclude_restricted_policy", "include_all_policy", "load_policy",
    "policy_from_dict", "policy_to_json", "resolve_depth", "sink_policy"]

_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
NO_RECORD = "<no record>"
MISSING_RULE = "missing-record"
CONSTRAINED_REASON = ("AI / generative training allowed only under the rights holder's stated constraint (CAWG "
                      "'constrained'): treated as restricted, not permissive, until the constraint is judged")


class PolicyError(UserError, ValueError):
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
  constrained: bool | None = None
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
    for name in ("opted_out", "constrained", "simulated"):
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
        if rule.when.constrained and record.constraint_reasons:
          reason += f" ({'; '.join(record.constraint_reasons)})"
        return rule, reason
    raise PolicyError(f"policy {self.name!r}: no rule matches work {record.work_id!r} (licence "
                      f"{record.licence}, "
                      f"content_class {record.content_class}); add a catch-all rule with an empty 'when'")


def default_policy(*, permissive_depth: int | str = "full", restricted_depth: int | str = "surface",
                   strict_encodings: bool = False) -> Policy:
  """The default policy.

  Rules in order: opted-out -> exclude; constrained (AI / generative training allowed only under a stated
  constraint) -> ``restricted_depth``, conservatively, whatever the licence; structural -> full depth; permissive
  licence -> ``permissive_depth``; anything else (restrictive or unknown licence) -> ``restricted_depth``.
  Missing records are an error.

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
      Rule(name="constrained", when=Condition(constrained=True),
           treatment=depth(restricted_depth, CONSTRAINED_REASON)),
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
  """Baseline ``exclude-restricted``: opted-out, constrained and restrictive/unknown-licence specific works are
  excluded."""
  return Policy(name="exclude-restricted", rules=(
      Rule(name="opted-out", when=Condition(opted_out=True),
           treatment=Treatment(action="exclude", reason="rights holder opted out of TDM / AI training")),
      Rule(name="constrained", when=Condition(constrained=True),
           treatment=Treatment(action="exclude", reason="baseline: training allowed only under a stated "
                               "constraint (CAWG 'constrained'), treated as restricted: excluded")),
      Rule(name="structural", when=Condition(content_class=("structural",)),
           treatment=Treatment(action="depth", depth="full", reason="structural material")),
      Rule(name="permissive", when=Condition(licence_class=("permissive",)),
           treatment=Treatment(action="depth", depth="full", reason="permissive licence")),
      Rule(name="restricted-or-unknown", when=Condition(),
           treatment=Treatment(action="exclude", reason="baseline: restrictive or unknown licence excluded")),
  ))


def sink_policy(region: str = "sink") -> Policy:
  """``sink``: like the default, but constrained and restrictive/unknown specific works go to the removable region
  ``region``."""
  to_sink = lambda why: Treatment(action="region", region=region, depth="full",
                                  reason=f"{why}: routed to a removable region")
  rules = []
  for rule in default_policy().rules:
    if rule.name == "constrained":
      rule = rule.model_copy(update={"treatment": to_sink(CONSTRAINED_REASON)})
    elif rule.name == "restricted-or-unknown":
      rule = rule.model_copy(update={"treatment": to_sink("restrictive or unknown licence")})
    rules.append(rule)
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
    try:
      result = load_python_config(path, "get_policy", Policy | Mapping)
    except ConfigError as err:
      raise PolicyError(str(err)) from None
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
