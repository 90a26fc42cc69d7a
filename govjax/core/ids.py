"""Work-id conventions shared by every layer: what a work id names.

Real works keep their corpus id (``bach/bwv10.7``); planted canaries start with :data:`CANARY_PREFIX` and generated
structural material with :data:`STRUCTURAL_PREFIX`.

Example:
  >>> [work_kind(w) for w in ("canary/r1/0/copy0", "structural/cadences-C", "bach/bwv10.7")]
  ['canary', 'structural', 'work']
"""

from __future__ import annotations

__all__ = ["CANARY_PREFIX", "STRUCTURAL_PREFIX", "WORK_KINDS", "work_kind"]

CANARY_PREFIX = "canary/"  # work ids of planted canaries (govjax.data.canaries)
STRUCTURAL_PREFIX = "structural/"  # work ids of generated structural material (govjax.data.structural)
WORK_KINDS = ("canary", "structural", "work")


def work_kind(work_id: str) -> str:
  """What a work id names.

  Args:
    work_id: a work id.

  Returns:
    ``"canary"``, ``"structural"`` (generated material) or ``"work"`` (a real work).
  """
  if work_id.startswith(CANARY_PREFIX):
    return "canary"
  if work_id.startswith(STRUCTURAL_PREFIX):
    return "structural"
  return "work"
