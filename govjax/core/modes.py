"""The one spelling of each mode name (routing, normaliser, baseline, probe signal), light to import.

Example:
  >>> "depth" in ROUTING_MODES and "contributors" in NORMALISERS
  True
"""

from __future__ import annotations

from typing import Literal

__all__ = ["BASELINES", "NORMALISERS", "PROBE_SIGNALS", "ROUTING_MODES", "Baseline", "Normaliser", "ProbeSignal",
           "RoutingMode"]

RoutingMode = Literal["none", "depth", "per_group", "exact", "region"]
Normaliser = Literal["contributors", "batch"]
Baseline = Literal["none", "goldfish", "dpsgd"]
ProbeSignal = Literal["loss", "predictive_entropy", "representation_entropy"]
ROUTING_MODES: tuple[str, ...] = RoutingMode.__args__
NORMALISERS: tuple[str, ...] = Normaliser.__args__
BASELINES: tuple[str, ...] = Baseline.__args__
PROBE_SIGNALS: tuple[str, ...] = ProbeSignal.__args__
