"""Training configuration: a frozen dataclass, loaded from a Python config file, hashable for checkpoints.

Config files live in ``experiments/configs/`` and define ``get_config() -> TrainConfig``; their docstring gives the
command, the expected runtime on 2 CPU cores and the expected result (as big_vision's configs do).

Example:
  >>> cfg = TrainConfig(num_steps=10)
  >>> cfg2 = apply_overrides(cfg, ["num_steps=20", "model.width=64"])
  >>> cfg2.num_steps, cfg2.model.width
  (20, 64)
  >>> config_hash(cfg) == config_hash(TrainConfig(num_steps=10))
  True
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import pathlib
import typing


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Transformer shape; the vocabulary comes from the tokenizer.

  ``region_width`` adds that many removable MLP hidden units per block (see ``govjax.routing.loss``, mode
  ``"region"``); 0 = no region.
  """

  num_layers: int = 4
  width: int = 128
  num_heads: int = 4
  context: int = 256
  mlp_ratio: int = 4
  region_width: int = 0


@dataclasses.dataclass(frozen=True)
class GovernanceSpec:
  """How rights metadata turns into training treatment.

  Attributes:
    routing: "none" (vanilla: every included example trains the full depth), "depth" (in-model gate, exact for
      depth masks), "per_group" (custom_vjp, any mask), "exact" (per-example reference aggregation) or
      "region" (works the policy routes to a region train only the removable region; needs
      ``model.region_width > 0``).
    scenario: "real" (the chorales' actual metadata: all public domain), "default" (the shipped simulated
      scenario) or a path to a JSONL/CSV of rights records.
    policy: "default" or a path to a JSON policy.
    normaliser: "contributors" (per-group contributor count) or "batch".
    freeze_empty_groups: give groups with no contributor in a step no update at all (no moments, no decay).
    include_structural: add the generated structural material (cadences, progressions, scales) to training.
    baseline: "none", "goldfish" (hashed token dropping, ``goldfish_k``/``goldfish_h``) or "dpsgd" (per-example
      clipping ``dp_clip`` and Gaussian noise ``dp_noise``): alternatives a user might pick instead of routing.
    deduplicate: drop near-duplicate training works before batching (the deduplication baseline).
  """

  routing: str = "none"
  scenario: str = "real"
  policy: str = "default"
  normaliser: str = "contributors"
  freeze_empty_groups: bool = False
  include_structural: bool = False
  baseline: str = "none"
  goldfish_k: int = 4
  goldfish_h: int = 13
  dp_clip: float = 1.0
  dp_noise: float = 0.5
  deduplicate: bool = False


@dataclasses.dataclass(frozen=True)
class CanarySpec:
  """Random-token canaries planted among the training works to measure memorization (exposure, extraction).

  Attributes:
    count: canaries per repetition count (0 = none).
    repeats: how many copies of each canary enter training (one canary set per value).
    frames: length of a canary in frames (4 tokens each).
    seed: canary seed; the same seed draws the same canaries and the same reference sequences.
    licence: the canaries' (simulated) licence: they stand for restricted specific works.
  """

  count: int = 0
  repeats: tuple = (1, 4, 16)
  frames: int = 16
  seed: int = 1234
  licence: str = "LicenseRef-govjax-canary"


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
  """Configuration of the memorization probe (the ``probe`` section of a training config).

  Attributes:
    enabled: run the probe (and its adaptive depth) in the train step.
    signal: the statistic that drives adaptive depth: ``loss``, ``predictive_entropy`` or
      ``representation_entropy`` (all three are tracked and logged whatever this is).
    layer: index into the hidden-state list (``0`` = embeddings, ``num_layers`` = last block; negative counts
      from the end) whose representation entropy is measured.
    ema: weight of the old value in the per-example EMA (0 = last observation only).
    percentile: validation percentile that sets the lowering threshold ``low``.
    restore_percentile: validation percentile that sets the restoring threshold ``high`` (> ``percentile``).
    calibrate_every: steps between calibrations (the loop also calibrates at step 0).
    calibration_batches: validation batches used per calibration.
    min_depth: the lowest depth the probe assigns (1 = output head only).
    min_seen: observations of an example before its depth may be lowered.
    adaptive: lower depths (False: only observe and log).
  """

  enabled: bool = False
  signal: str = "loss"
  layer: int = -1
  ema: float = 0.5
  percentile: float = 5.0
  restore_percentile: float = 20.0
  calibrate_every: int = 200
  calibration_batches: int = 8
  min_depth: int = 1
  min_seen: int = 2
  adaptive: bool = True


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that determines a training run (and so its checkpoints' config hash)."""

  name: str = "chorales"
  data_dir: str | None = None
  max_works: int | None = None
  steps_per_quarter: int = 4
  window_stride: int = 64
  model: ModelSpec = ModelSpec()
  governance: GovernanceSpec = GovernanceSpec()
  canaries: CanarySpec = CanarySpec()
  probe: ProbeSpec = ProbeSpec()
  batch_size: int = 32
  num_steps: int = 1000
  learning_rate: float = 3e-3
  warmup_steps: int = 50
  weight_decay: float = 0.01
  grad_clip: float = 1.0
  seed: int = 0
  eval_every: int = 200
  eval_max_batches: int = 16
  checkpoint_every: int = 200
  max_to_keep: int = 5

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def config_hash(config: TrainConfig) -> str:
  """Short stable sha256 of the config's JSON form."""
  text = json.dumps(config.to_dict(), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def from_dict(data: dict) -> TrainConfig:
  """Inverse of ``TrainConfig.to_dict``; unknown keys are an error."""
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  unknown = set(data) - fields
  if unknown:
    raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
  data = dict(data)
  if "model" in data:
    data["model"] = ModelSpec(**data["model"])
  if "governance" in data:
    data["governance"] = GovernanceSpec(**data["governance"])
  if "probe" in data:
    data["probe"] = ProbeSpec(**data["probe"])
  if "canaries" in data:
    data["canaries"] = CanarySpec(**{**data["canaries"], "repeats": tuple(data["canaries"].get("repeats", ()))})
  return TrainConfig(**data)


def load_config(path: str | pathlib.Path) -> TrainConfig:
  """Loads ``get_config()`` from a Python config file.

  Args:
    path: path to a ``.py`` file defining ``get_config() -> TrainConfig``.

  Returns:
    The config.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location(f"govjax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path} does not define get_config()")
  config = module.get_config()
  if not isinstance(config, TrainConfig):
    raise TypeError(f"{path}: get_config() returned {type(config).__name__}, expected TrainConfig")
  return config


def _coerce(text: str, annotation) -> object:
  """Parses an override value for a field of the given type annotation."""
  kinds = typing.get_args(annotation) or (annotation,)
  names = {getattr(k, "__name__", str(k)) for k in kinds} | {str(annotation)}
  if text.lower() in ("none", "null") and (type(None) in kinds or "None" in str(annotation)):
    return None
  if any("bool" in n for n in names):
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
  for kind, caster in (("int", int), ("float", float)):
    if any(kind == n or n.startswith(kind + " ") or f"{kind} |" in n for n in names):
      try:
        return caster(text)
      except ValueError:
        pass
  return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
  """Applies ``key=value`` overrides (nested with dots: ``model.width=64``).

  Args:
    config: base config.
    overrides: strings ``"field=value"``.

  Returns:
    A new config.
  """
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} is not of the form key=value")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    config = _replace_path(config, parts, text.strip(), full_key=key)
  return config


def _replace_path(obj, parts: list[str], text: str, *, full_key: str):
  hints = typing.get_type_hints(type(obj))
  name = parts[0]
  if name not in hints:
    raise ValueError(f"unknown config field {full_key!r} ({type(obj).__name__} has no field {name!r})")
  if len(parts) == 1:
    return dataclasses.replace(obj, **{name: _coerce(text, hints[name])})
  return dataclasses.replace(obj, **{name: _replace_path(getattr(obj, name), parts[1:], text, full_key=full_key)})
