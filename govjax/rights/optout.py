"""Machine-readable opt-outs: W3C TDMRep and the CAWG training-and-data-mining assertion.

- **TDMRep** (W3C Community Group report): ``tdm-reservation: 1`` (HTTP header, HTML ``<meta>``, EPUB metadata
  or ``/.well-known/tdmrep.json``) reserves text-and-data-mining rights; ``0`` or absence does not. A
  reservation may come with a ``tdm-policy`` URL saying how to obtain a licence.
- **CAWG training-mining assertion** (label ``cawg.training-mining``): a map ``entries`` whose keys include
  ``cawg.ai_training`` (non-generative models), ``cawg.ai_generative_training``, ``cawg.data_mining`` and
  ``cawg.ai_inference``; each value is ``{"use": "allowed" | "notAllowed" | "constrained",
  "constraint_info": "..."}``. The specification says ``constrained`` without further information is
  equivalent to ``notAllowed``.

govjax records keep ``tdm_reservation`` (bool) and the ``ai_training`` / ``generative_training`` values with
their optional constraint texts. Rules implemented here:

- ``constrained`` counts as ``notAllowed`` unless a constraint text is stated; a text that is blank once
  invisible (control / format) characters are removed is no constraint. A stated constraint is the rights
  holder's condition, for a person or a custom policy rule to judge: until then the default policy treats the
  work conservatively, as restricted (rule ``constrained``: the restricted depth, never the permissive one;
  :func:`constraint_reasons`).
- A TDM reservation implies AI-training and generative-training opt-outs (a record saying
  ``tdm_reservation=true`` and ``ai_training=allowed`` is contradictory and rejected).
- ``cawg.data_mining`` is reported but not mapped to ``tdm_reservation``: assertions in the wild combine
  ``data_mining`` constrained with ``ai_training`` allowed, so the mapping would manufacture contradictions.

Example:
  >>> effective_permission("constrained", None), effective_permission("constrained", "\u200b")
  ('notAllowed', 'notAllowed')
  >>> fields = from_cawg_assertion({"entries": {"cawg.ai_generative_training": {"use": "notAllowed"}}})
  >>> fields["generative_training"]
  'notAllowed'
  >>> parse_tdm_reservation("1")
  True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from govjax.core.text import strip_invisible

Permission = Literal["allowed", "notAllowed", "constrained"]
PERMISSION_VALUES: tuple[str, ...] = ("allowed", "notAllowed", "constrained")

CAWG_LABEL = "cawg.training-mining"
CAWG_AI_TRAINING = "cawg.ai_training"
CAWG_GENERATIVE_TRAINING = "cawg.ai_generative_training"
CAWG_DATA_MINING = "cawg.data_mining"


def effective_permission(value: str | None, constraint: str | None) -> str | None:
  """The permission a CAWG value amounts to: ``constrained`` without a constraint text is ``notAllowed``.

  Args:
    value: ``allowed`` / ``notAllowed`` / ``constrained`` or None (not stated).
    constraint: the stated constraint text, if any.

  Returns:
    ``value``, except ``"notAllowed"`` for ``constrained`` with no constraint text, or one that is blank once
    invisible characters are removed.
  """
  if value == "constrained" and not (constraint and strip_invisible(constraint).strip()):
    return "notAllowed"
  return value


def opt_out_reasons(
    *,
    tdm_reservation: bool,
    ai_training: str | None,
    ai_training_constraint: str | None = None,
    generative_training: str | None,
    generative_training_constraint: str | None = None,
) -> list[str]:
  """Human-readable reasons a record is opted out of training (empty when it is not).

  Example:
    >>> opt_out_reasons(tdm_reservation=False, ai_training=None, generative_training="constrained")
    ['generative_training=constrained without a stated constraint (counts as notAllowed)']
  """
  reasons = []
  if tdm_reservation:
    reasons.append("tdm_reservation=true (TDMRep)")
  for name, value, constraint in (
      ("ai_training", ai_training, ai_training_constraint),
      ("generative_training", generative_training, generative_training_constraint),
  ):
    if value == "notAllowed":
      reasons.append(f"{name}=notAllowed")
    elif effective_permission(value, constraint) == "notAllowed":
      reasons.append(f"{name}=constrained without a stated constraint (counts as notAllowed)")
  return reasons


def constraint_reasons(
    *,
    ai_training: str | None,
    ai_training_constraint: str | None = None,
    generative_training: str | None,
    generative_training_constraint: str | None = None,
) -> list[str]:
  """Each training permission that is ``constrained`` with a stated constraint, as a reason string.

  Such a permission is neither an opt-out nor a permission: the default policy treats the work as restricted.

  Example:
    >>> constraint_reasons(ai_training="allowed", generative_training="constrained",
    ...                    generative_training_constraint="credit the label")
    ["generative_training=constrained (constraint: 'credit the label'; treated as restricted)"]
  """
  reasons = []
  for name, value, constraint in (
      ("ai_training", ai_training, ai_training_constraint),
      ("generative_training", generative_training, generative_training_constraint),
  ):
    if effective_permission(value, constraint) == "constrained":
      shown = constraint if len(constraint) <= 80 else constraint[:77] + "..."
      reasons.append(f"{name}=constrained (constraint: {shown!r}; treated as restricted)")
  return reasons


def parse_tdm_reservation(value: Any) -> bool:
  """Parses a TDMRep ``tdm-reservation`` value (``1``/``0``, as int, bool or string).

  Raises:
    ValueError: for any other value.
  """
  if isinstance(value, bool):
    return value
  if isinstance(value, int) and value in (0, 1):
    return bool(value)
  if isinstance(value, str) and value.strip() in ("0", "1"):
    return value.strip() == "1"
  raise ValueError(f"tdm-reservation must be 1 or 0, got {value!r}")


def _entry(entries: Mapping, key: str) -> tuple[str | None, str | None]:
  entry = entries.get(key)
  if entry is None:
    return None, None
  if not isinstance(entry, Mapping) or entry.get("use") not in PERMISSION_VALUES:
    raise ValueError(f"{key}: expected {{'use': one of {PERMISSION_VALUES}}}, got {entry!r}")
  constraint = entry.get("constraint_info")
  if constraint is not None and not isinstance(constraint, str):
    raise ValueError(f"{key}.constraint_info must be a string, got {constraint!r}")
  return entry["use"], constraint


def from_cawg_assertion(assertion: Mapping) -> dict[str, Any]:
  """Record fields from a CAWG training-mining assertion's data (``{"entries": {...}}``).

  Args:
    assertion: the assertion's ``data`` map, or a whole assertion ``{"label": ..., "data": {...}}``.

  Returns:
    A dict with ``ai_training``, ``ai_training_constraint``, ``generative_training`` and
    ``generative_training_constraint`` (record fields), and ``data_mining`` / ``data_mining_constraint`` (for
    the caller to judge). Entries not present are None.

  Raises:
    ValueError: when the structure or a value is not as the specification defines.
  """
  if not isinstance(assertion, Mapping):
    raise ValueError(f"expected a mapping, got {type(assertion).__name__}")
  if "data" in assertion and "entries" not in assertion:
    if assertion.get("label") not in (None, CAWG_LABEL):
      raise ValueError(f"expected label {CAWG_LABEL!r}, got {assertion.get('label')!r}")
    assertion = assertion["data"]
  entries = assertion.get("entries") if isinstance(assertion, Mapping) else None
  if not isinstance(entries, Mapping):
    raise ValueError("a training-mining assertion needs an 'entries' map")
  ai, ai_constraint = _entry(entries, CAWG_AI_TRAINING)
  gen, gen_constraint = _entry(entries, CAWG_GENERATIVE_TRAINING)
  mining, mining_constraint = _entry(entries, CAWG_DATA_MINING)
  return {
      "ai_training": ai,
      "ai_training_constraint": ai_constraint,
      "generative_training": gen,
      "generative_training_constraint": gen_constraint,
      "data_mining": mining,
      "data_mining_constraint": mining_constraint,
  }
