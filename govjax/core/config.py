"""Training configuration: typed, validated, loaded from a Python config file, hashable for checkpoints.

Config files live in ``experiments/configs/`` and define ``get_config() -> TrainConfig``; their docstring gives the
command, the expected runtime on 2 CPU cores and the expected result (as big_vision's configs do).

Every section is a frozen pydantic dataclass: types, ranges and modes are checked when a config is built (also by
``dataclasses.replace``), by :func:`from_dict` (a run's ``config.json``) and by :func:`apply_overrides` (``--set``).
A bad value raises :class:`~govjax.core.errors.ConfigError` naming the key and what is allowed.

Example:
  >>> cfg = TrainConfig(num_steps=10)
  >>> cfg2 = apply_overrides(cfg, ["num_steps=20", "model.width=64", "governance.deduplicate=off"])
  >>> cfg2.num_steps, cfg2.model.width, cfg2.governance.deduplicate
  (20, 64, False)
  >>> config_hash(cfg) == config_hash(TrainConfig(num_steps=10))
  True
  >>> try:
  ...   apply_overrides(cfg, ["checkpoint_every=0"])
  ... except ConfigError as error:
  ...   print(error)
  checkpoint_every: input should be greater than or equal to 1 (got '0')
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import pathlib
from typing import Annotated, Any

import pydantic
from pydantic import ConfigDict, Field

from govjax.core.errors import ConfigError
from govjax.core.modes import (
    BASELINES,
    NORMALISERS,
    PROBE_SIGNALS,
    ROUTING_MODES,
    Baseline,
    ClipMode,
    Normaliser,
    ParamSharding,
    Precision,
    ProbeDirection,
    ProbeSignal,
    RoutingMode,
    SurfaceEnd,
)

__all__ = [
    "BASELINES", "NORMALISERS", "PROBE_SIGNALS", "ROUTING_MODES", "CanarySpec", "GovernanceSpec", "ModelSpec",
    "ProbeSpec", "TrainConfig", "apply_overrides", "config_hash", "from_dict", "load_config", "load_python_config",
]

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Percentile = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
_SECTION = ConfigDict(extra="forbid")


def _section(cls):
  """A frozen pydantic dataclass that rejects unknown fields."""
  return pydantic.dataclasses.dataclass(frozen=True, config=_SECTION)(cls)


@_section
class ModelSpec:
  """Transformer shape; the vocabulary comes from the tokenizer.

  ``region_width`` adds that many removable MLP hidden units per block (see ``govjax.routing.loss``, mode
  ``"region"``); 0 = no region. ``precision="bfloat16"`` computes in bf16 with float32 master weights (the
  parameters, gradients and optimizer state stay float32; norms, softmax and the loss in float32); ``remat``
  recomputes each block's activations in the backward pass instead of storing them (less memory, ~1/3 more
  compute).
  """

  num_layers: PositiveInt = 4
  width: PositiveInt = 128
  num_heads: PositiveInt = 4
  context: Annotated[int, Field(ge=2)] = 256
  mlp_ratio: PositiveInt = 4
  region_width: NonNegativeInt = 0
  precision: Precision = "float32"
  remat: bool = False

  def __post_init__(self):
    if self.width % self.num_heads:
      raise ValueError(f"model.width ({self.width}) must be a multiple of model.num_heads ({self.num_heads})")

  @property
  def num_groups(self) -> int:
    """Depth groups of the transformer: the embeddings, one per block, and the output head."""
    return self.num_layers + 2


@_section
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
    clip: "global" (one l2 norm over all parameters, ``grad_clip``) or "per_group" (each depth group clipped on
      its own to ``grad_clip / sqrt(G)``, so one group's large gradient does not scale the others' updates).
    surface: which end of the model a routed work's depth counts from: "output" (depth d = the top d groups) or
      "input" (the bottom d groups; needs routing "per_group" or "exact", which accept any mask).
  """

  routing: RoutingMode = "none"
  scenario: Annotated[str, Field(min_length=1)] = "real"
  policy: Annotated[str, Field(min_length=1)] = "default"
  normaliser: Normaliser = "contributors"
  freeze_empty_groups: bool = False
  include_structural: bool = False
  baseline: Baseline = "none"
  goldfish_k: Annotated[int, Field(ge=2)] = 4
  goldfish_h: PositiveInt = 13
  dp_clip: PositiveFloat = 1.0
  dp_noise: NonNegativeFloat = 0.5
  clip: ClipMode = "global"
  surface: SurfaceEnd = "output"

  def __post_init__(self):
    if self.surface == "input" and self.routing not in ("per_group", "exact"):
      raise ValueError(f"governance.surface='input' needs governance.routing 'per_group' or 'exact' (got "
                       f"{self.routing!r}): the depth gate routes top segments only")
    if self.baseline != "none" and self.routing != "none":
      raise ValueError(f"governance.baseline={self.baseline!r} is an alternative to routing: use it with "
                       f"governance.routing='none' (got {self.routing!r})")
  deduplicate: bool = False


@_section
class CanarySpec:
  """Random-token canaries planted among the training works to measure memorization (exposure, extraction).

  Attributes:
    count: random canaries per repetition count (0 = none).
    chorale_count: in-distribution canaries (held-out chorale windows) per repetition count (0 = none).
    repeats: how many copies of each canary enter training (one canary set per value).
    frames: length of a canary in frames (4 tokens each).
    seed: canary seed; the same seed draws the same canaries and the same reference sequences.
    licence: the canaries' (simulated) licence: they stand for restricted specific works.
  """

  count: NonNegativeInt = 0
  chorale_count: NonNegativeInt = 0
  repeats: tuple[PositiveInt, ...] = (1, 4, 16)
  frames: PositiveInt = 16
  seed: int = 1234
  licence: str = "LicenseRef-govjax-canary"


@_section
class ProbeSpec:
  """Configuration of the memorization probe (the ``probe`` section of a training config).

  Attributes:
    enabled: run the probe (and its adaptive depth) in the train step.
    signal: the statistic that drives adaptive depth: ``memorization_gap`` (the default: the fall of the
      example's loss since the held-out loss was lowest, :mod:`govjax.probe.gap`, flagged above
      ``memorization_margin``; the signal the memorization-signal study validated), or ``loss``,
      ``predictive_entropy``, ``representation_entropy`` (all three are tracked and logged whatever this is).
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
    direction: which side of the held-out distribution flags an example: ``low`` (below the ``percentile``-th
      percentile; restored above the ``restore_percentile``-th), ``high`` (above the ``100 - percentile``-th;
      restored below the ``100 - restore_percentile``-th) or ``both`` (either tail; restored inside both
      restoring thresholds). None (the default): the signal's own side, :attr:`side` (``high`` for
      ``memorization_gap``, which allows no other, ``low`` otherwise). Choose it from data
      (``govjax.probe.monitor.direction_from_heldout``).
    center: centre the hidden states before the representation entropy (False: the uncentred entropy, the
      variant the memorization-signal study found informative; see experiments/RESULTS.md).
    reference_ema: weight of the old value in the running EMA of each example's fresh loss that
      ``memorization_gap`` snapshots as its reference and compares it with.
    memorization_margin: ``memorization_gap`` flags an example when its estimated counterfactual memorization
      (its gap plus the held-out windows' mean loss rise since the reference, in nats per token) exceeds this,
      and exceeds the held-out windows' own estimate at the ``100 - percentile``-th percentile (the noise).
    reference_order: the order of an n-gram reference that ``memorization_gap`` ranks examples with, beside
      the model's own loss at the held-out optimum (:mod:`govjax.probe.reference`; 0, the default: none). It
      depends on the data (experiments/RESULTS.md): order 4 ranks counterfactual memorization better on folk
      melodies (the probe bench, chosen there on development seeds) and worse on chorales (the study's units),
      so it is off unless a check on the data at hand shows that it helps.
  """

  enabled: bool = False
  signal: ProbeSignal = "memorization_gap"
  layer: int = -1
  ema: Annotated[float, Field(ge=0, lt=1)] = 0.5
  percentile: Percentile = 5.0
  restore_percentile: Percentile = 20.0
  calibrate_every: PositiveInt = 200
  calibration_batches: PositiveInt = 8
  min_depth: PositiveInt = 1
  min_seen: NonNegativeInt = 2
  adaptive: bool = True
  direction: ProbeDirection | None = None
  center: bool = True
  reference_ema: Annotated[float, Field(ge=0, lt=1)] = 0.5
  memorization_margin: NonNegativeFloat = 0.5
  reference_order: NonNegativeInt = 0

  def __post_init__(self):
    if self.signal == "memorization_gap" and self.direction not in (None, "high"):
      raise ValueError(f"probe.signal 'memorization_gap' flags large gaps: probe.direction must be 'high', "
                       f"got {self.direction!r}")
    if self.restore_percentile <= self.percentile:
      raise ValueError(f"probe.restore_percentile ({self.restore_percentile}) must exceed probe.percentile "
                       f"({self.percentile})")

  @property
  def side(self) -> str:
    """The side that flags an example: ``direction``, or when it is None ``high`` for ``memorization_gap`` and
    ``low`` for the other signals."""
    if self.direction is not None:
      return self.direction
    return "high" if self.signal == "memorization_gap" else "low"


@_section
class TrainConfig:
  """Everything that determines a training run (and so its checkpoints' config hash)."""

  name: Annotated[str, Field(min_length=1)] = "chorales"
  data_dir: str | None = None
  max_works: PositiveInt | None = None
  steps_per_quarter: PositiveInt = 4
  window_stride: PositiveInt = 64
  model: ModelSpec = ModelSpec()
  governance: GovernanceSpec = GovernanceSpec()
  canaries: CanarySpec = CanarySpec()
  probe: ProbeSpec = ProbeSpec()
  batch_size: PositiveInt = 32
  num_steps: NonNegativeInt = 1000
  learning_rate: PositiveFloat = 3e-3
  warmup_steps: NonNegativeInt = 50
  weight_decay: NonNegativeFloat = 0.01
  grad_clip: PositiveFloat = 1.0
  seed: int = 0
  eval_every: PositiveInt = 200
  eval_max_batches: PositiveInt = 16
  checkpoint_every: PositiveInt = 200
  max_to_keep: PositiveInt | None = 5
  param_sharding: ParamSharding = "replicated"

  def __post_init__(self):
    if self.governance.routing == "region" and self.model.region_width <= 0:
      raise ValueError("governance.routing='region' needs model.region_width > 0 (the removable region's width)")
    if self.probe.enabled and self.probe.min_depth > self.model.num_groups:
      raise ValueError(f"probe.min_depth ({self.probe.min_depth}) exceeds the model's "
                       f"{self.model.num_groups} depth groups")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def config_hash(config: TrainConfig) -> str:
  """Short stable sha256 of the config's JSON form."""
  text = json.dumps(config.to_dict(), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _location(error: dict, prefix: str = "") -> str:
  parts = [str(p) for p in error.get("loc", ())]
  return ".".join(filter(None, [prefix, *parts])) or "config"


def _config_error(error: pydantic.ValidationError, *, key: str | None = None, text: str | None = None,
                  prefix: str = "") -> ConfigError:
  """One line per problem: ``key: message (got value)``."""
  lines = []
  for item in error.errors(include_url=False):
    where = key or _location(item, prefix)
    message = item.get("msg", "invalid value")
    message = message[0].lower() + message[1:] if message else message
    message = message.removeprefix("value error, ")
    if item.get("type") == "literal_error":
      expected = item.get("ctx", {}).get("expected", "")
      message = f"must be one of {expected}"
    got = text if text is not None else item.get("input")
    if item.get("type") in ("unexpected_keyword_argument", "extra_forbidden"):
      lines.append(f"{where}: unknown config field")
      continue
    if item.get("type") == "value_error":  # a rule across fields; its message names them
      lines.append(message)
      continue
    lines.append(f"{where}: {message} (got {got!r})" if got is not None and not isinstance(got, dict | tuple)
                 else f"{where}: {message}")
  return ConfigError("; ".join(lines))


def from_dict(data: dict) -> TrainConfig:
  """Inverse of ``TrainConfig.to_dict``: validates every field (unknown keys and bad values are errors).

  Args:
    data: a dict as ``TrainConfig.to_dict`` writes it (sections as nested dicts).

  Returns:
    The config.

  Raises:
    ConfigError: naming each bad key.
  """
  try:
    return pydantic.TypeAdapter(TrainConfig).validate_python(data)
  except pydantic.ValidationError as error:
    raise _config_error(error) from None


def load_python_config(path: str | pathlib.Path, function: str, expected: type) -> Any:
  """Calls ``function()`` of a Python config file and checks the type of what it returns.

  The one loader for config files (training configs, study configs, policies written in Python).

  Args:
    path: a ``.py`` file.
    function: the function to call (``get_config``, ``get_study``, ...).
    expected: the type (or union of types) the function must return.

  Returns:
    What ``function()`` returned.

  Raises:
    ConfigError: the file is missing, does not define ``function`` or returns something else.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ConfigError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location(f"govjax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except pydantic.ValidationError as error:
    raise ConfigError(f"{path}: {_config_error(error)}") from None
  if not hasattr(module, function):
    raise ConfigError(f"config file {path} does not define {function}()")
  try:
    value = getattr(module, function)()
  except pydantic.ValidationError as error:
    raise ConfigError(f"{path}: {_config_error(error)}") from None
  if not isinstance(value, expected):
    expected_name = getattr(expected, "__name__", str(expected))
    raise ConfigError(f"{path}: {function}() returned {type(value).__name__}, expected {expected_name}")
  return value


def load_config(path: str | pathlib.Path) -> TrainConfig:
  """Loads ``get_config()`` from a Python config file.

  Args:
    path: path to a ``.py`` file defining ``get_config() -> TrainConfig``.

  Returns:
    The config.
  """
  return load_python_config(path, "get_config", TrainConfig)


def _field_names(obj: Any) -> list[str]:
  return [f.name for f in dataclasses.fields(obj)]


def _candidates(text: str) -> list[Any]:
  """What an override's text may mean, tried in order: the string itself (pydantic parses it for the field's type,
  strictly: ``abc`` is no integer, ``off`` is False), then ``none``/``null`` as None, a JSON list ``[1, 4]`` or a
  comma-separated list ``1,4`` (for tuple fields)."""
  stripped = text.strip()
  out: list[Any] = [stripped]
  if stripped.lower() in ("none", "null"):
    out.append(None)
  if stripped.startswith("["):
    try:
      out.append(json.loads(stripped))
    except json.JSONDecodeError:
      pass
  elif "," in stripped:
    out.append([part.strip() for part in stripped.split(",")])
  return out


def _parse_field(section: Any, name: str, text: str, *, key: str) -> Any:
  """The value of ``section.name`` that ``text`` gives, checked against the field's type and range."""
  info = section.__pydantic_fields__[name]
  kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
  adapter = pydantic.TypeAdapter(kind)
  first_error = None
  for value in _candidates(text):
    try:
      parsed = adapter.validate_python(value)
    except pydantic.ValidationError as error:
      first_error = first_error or error
      continue
    return dataclasses.asdict(parsed) if dataclasses.is_dataclass(parsed) else parsed
  raise _config_error(first_error, key=key, text=text)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
  """Applies ``key=value`` overrides (nested with dots: ``model.width=64``), validated like the config itself.

  Args:
    config: base config.
    overrides: strings ``"field=value"``.

  Returns:
    A new config.

  Raises:
    ConfigError: an override that is not ``key=value``, names an unknown key, or gives a value of the wrong type
      or out of range; the message names the key and what is allowed.
  """
  data = config.to_dict()
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"override {item!r} is not of the form key=value")
    key, text = (part.strip() for part in item.split("=", 1))
    parts = key.split(".")
    node, obj = data, config
    for depth, name in enumerate(parts):
      if not dataclasses.is_dataclass(obj) or name not in _field_names(obj):
        where = ".".join(parts[:depth]) or "the config"
        allowed = ", ".join(_field_names(obj)) if dataclasses.is_dataclass(obj) else "none (not a section)"
        raise ConfigError(f"{key}: unknown config field ({where} has: {allowed})")
      if depth < len(parts) - 1:
        node, obj = node[name], getattr(obj, name)
    node[parts[-1]] = _parse_field(obj, parts[-1], text, key=key)
  try:
    return pydantic.TypeAdapter(TrainConfig).validate_python(data)
  except pydantic.ValidationError as error:
    raise _config_error(error) from None
