"""A policy applied to a corpus: per-work decisions, exclusion before batching and per-batch depth masks.

:func:`apply_policy` decides every work's treatment (:class:`PolicyDecisions`, with the rule that fired and
its reason); :func:`exclude_works` removes excluded works before batching and reports each of them
(:class:`ExclusionReport`); :func:`govern_works` does both for the data pipeline and returns per-work depth and
region arrays aligned with the kept works, which :func:`batch_mask` and :func:`batch_region` gather per batch
row inside the jitted step. The rules themselves are :mod:`govjax.rights.policy`.

Example:
  >>> from govjax.rights.policy import default_policy
  >>> from govjax.rights.records import parse_record
  >>> recs = [parse_record({"work_id": "a", "licence": "CC0-1.0"}),
  ...         parse_record({"work_id": "b", "licence": "CC-BY-NC-4.0"}),
  ...         parse_record({"work_id": "c", "licence": "MIT", "tdm_reservation": True})]
  >>> d = apply_policy(recs, default_policy(), num_groups=6)
  >>> d.include.tolist(), d.depth.tolist(), d.rules
  ([True, True, False], [6, 1, 0], ('permissive', 'restricted-or-unknown', 'opted-out'))
  >>> kept, report = exclude_works([{"work_id": w} for w in "abc"], d)
  >>> [w["work_id"] for w in kept], report.num_excluded
  (['a', 'b'], 1)
  >>> batch_mask(jnp.array([0, 1]), jnp.asarray(d.depth), 6).tolist()
  [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from govjax.core.text import terminal_safe
from govjax.rights.policy import MISSING_RULE, NO_RECORD, Policy, PolicyError
from govjax.rights.records import RightsRecord

__all__ = ["ExcludedWork", "ExclusionReport", "GovernedWorks", "PolicyDecisions", "apply_policy", "batch_mask",
    "batch_region", "depth_mask", "exclude_works", "govern_works"]


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
    """One line per excluded work; control and format characters are shown as escapes (``\\u200b``)."""
    lines = [f"excluded {self.num_excluded} of {self.num_works} works ({self.num_kept} kept)"]
    lines += [terminal_safe(f"  {e.work_id}: {e.reason} [rule {e.rule}, licence {e.licence}]")
              for e in self.excluded]
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
