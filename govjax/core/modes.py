"""The one spelling of each mode name (routing, normaliser, baseline, probe signal), light to import.

Example:
  >>> "depth" in ROUTING_MODES and "contributors" in NORMALISERS
  True
"""

from __future__ import annotations

from typing import Literal

__all__ = ["BASELINES", "CLIP_MODES", "NORMALISERS", "PROBE_SIGNALS", "ROUTING_MODES", "SURFACE_ENDS", "PRECISIONS",
           "PARAM_SHARDINGS", "PROBE_DIRECTIONS", "Baseline", "ClipMode", "Normaliser", "ProbeDirection",
           "ProbeSignal", "RoutingMode", "SurfaceEnd", "Precision", "ParamSharding"]

RoutingMode = Literal["none", "depth", "per_group", "exact", "region"]
Normaliser = Literal["contributors", "batch"]
Baseline = Literal["none", "goldfish", "dpsgd"]
ProbeSignal = Literal["loss", "predictive_entropy", "representation_entropy", "memorization_gap"]
ProbeDirection = Literal["low", "high", "both"]
ClipMode = Literal["global", "per_group"]
SurfaceEnd = Literal["output", "input"]
Precision = Literal["float32", "bfloat16"]
ParamSharding = Literal["replicated", "fsdp"]
ROUTING_MODES: tuple[str, ...] = RoutingMode.__args__
NORMALISERS: tuple[str, ...] = Normaliser.__args__
BASELINES: tuple[str, ...] = Baseline.__args__
PROBE_SIGNALS: tuple[str, ...] = ProbeSignal.__args__
PROBE_DIRECTIONS: tuple[str, ...] = ProbeDirection.__args__
CLIP_MODES: tuple[str, ...] = ClipMode.__args__
SURFACE_ENDS: tuple[str, ...] = SurfaceEnd.__args__
PRECISIONS: tuple[str, ...] = Precision.__args__
PARAM_SHARDINGS: tuple[str, ...] = ParamSharding.__args__
