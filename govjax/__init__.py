"""govjax: training governance for creative generative models in JAX/Flax.

Rights metadata decides how deep each training example may shape the model (depth-selective gradient routing);
a memorization probe inside the training step lowers that depth when an example looks memorized; provenance
traces outputs to the works that shaped them; tiered documentation lets rightsholders check use.

The names a researcher composes with their own model and training loop are available here, imported on first
use (``import govjax`` itself imports neither JAX nor Flax); ``docs/API.md`` describes each of them and how they
fit together. Subpackages (``govjax.routing``, ``govjax.rights``, ...) load the same way.

Example:
  >>> import govjax
  >>> "routed_apply" in dir(govjax) and "masks_from_depths" in govjax.__all__
  True
  >>> govjax.masks_from_depths([2, 0], [(r"low/.*", 0), (r"high/.*", 1)]).tolist()
  [[1.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

try:
  __version__ = importlib.metadata.version("govjax")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
  __version__ = "0+unknown"

# Public name -> the module that defines it.
_EXPORTS = {
    # Routing: optax transforms.
    "per_example_routed_aggregate": "govjax.routing.transforms",
    "normalise_by_contributors": "govjax.routing.transforms",
    "freeze_groups_without_contributors": "govjax.routing.transforms",
    "routed_optimizer": "govjax.routing.transforms",
    "routed_multi_steps": "govjax.routing.transforms",
    "exact_routed_grads": "govjax.routing.transforms",
    # Routing: depth groups.
    "depth_groups": "govjax.routing.groups",
    "rules_num_groups": "govjax.routing.groups",
    "transformer_group_rules": "govjax.routing.groups",
    "GroupCoverageError": "govjax.routing.groups",
    "SharedParameterError": "govjax.routing.groups",
    # Routing: masks.
    "masks_from_depths": "govjax.routing.masks",
    "masks_from_classes": "govjax.routing.masks",
    "check_group_mask": "govjax.routing.masks",
    # Routing: your own model.
    "RoutableModel": "govjax.routing.protocol",
    "check_routable": "govjax.routing.protocol",
    "depth_gate": "govjax.routing.gate",
    "routed_apply": "govjax.routing.gate",
    "per_group_forward": "govjax.routing.gate",
    "group_routed_call": "govjax.routing.gate",
    "make_routed_loss": "govjax.routing.loss",
    # The built-in model.
    "Transformer": "govjax.models.transformer",
    "TransformerConfig": "govjax.models.transformer",
    # Rights.
    "parse_record": "govjax.rights.records",
    "load_records": "govjax.rights.records",
    "load_policy": "govjax.rights.policy",
    "apply_policy": "govjax.rights.decisions",
    # Memorization probe statistics.
    "example_statistics": "govjax.probe.stats",
    "predictive_entropy": "govjax.probe.stats",
    "representation_entropy": "govjax.probe.stats",
    # Provenance and documentation.
    "Tracer": "govjax.provenance.query",
    "ManifestIndex": "govjax.documentation.lookup",
    "lookup_file": "govjax.documentation.lookup",
}

_SUBPACKAGES = ("audit", "baselines", "bench", "commands", "core", "data", "documentation", "models", "probe",
                "provenance", "report", "rights", "routing", "study", "train")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
  """Imports a public name (or a subpackage) on first access."""
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
  elif name in _SUBPACKAGES:
    value = importlib.import_module(f"govjax.{name}")
  else:
    raise AttributeError(f"module 'govjax' has no attribute {name!r}")
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))
