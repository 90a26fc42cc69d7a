"""Typed configuration: every section validates types, ranges and modes; overrides and config.json go through it."""

import dataclasses

import pydantic
import pytest

from govjax.core.config import (
    ROUTING_MODES,
    CanarySpec,
    GovernanceSpec,
    ModelSpec,
    TrainConfig,
    apply_overrides,
    config_hash,
    from_dict,
    load_config,
    load_python_config,
)
from govjax.core.errors import ConfigError


def test_overrides_parse_each_type_strictly():
  cfg = apply_overrides(TrainConfig(), ["num_steps=20", "learning_rate=1e-4", "governance.deduplicate=off",
                                        "probe.enabled=yes", "canaries.repeats=1,8", "max_to_keep=none",
                                        "data_dir=/tmp/x", "governance.routing=none"])
  assert (cfg.num_steps, cfg.learning_rate, cfg.governance.deduplicate, cfg.probe.enabled) == (20, 1e-4, False, True)
  assert cfg.canaries.repeats == (1, 8) and cfg.max_to_keep is None and cfg.data_dir == "/tmp/x"
  assert apply_overrides(TrainConfig(), ["canaries.repeats=[4]"]).canaries.repeats == (4,)
  assert apply_overrides(TrainConfig(), ["name=none"]).name == "none"  # a string field keeps the word


@pytest.mark.parametrize("override,message", [
    ("num_steps=abc", "num_steps: input should be a valid integer"),
    ("governance.deduplicate=maybe", "governance.deduplicate: input should be a valid boolean"),
    ("checkpoint_every=0", "checkpoint_every: input should be greater than or equal to 1"),
    ("learning_rate=-1", "learning_rate: input should be greater than 0"),
    ("learning_rate=nan", "learning_rate: input should be a finite number"),
    ("governance.routing=deep", "governance.routing: must be one of 'none', 'depth'"),
    ("model.widht=64", "model.widht: unknown config field (model has: num_layers, width"),
    ("widht=64", "widht: unknown config field (the config has: name"),
    ("model.width.x=1", "model.width.x: unknown config field"),
    ("model=3", "model: input should be a dictionary or an instance of ModelSpec"),
    ("num_steps", "is not of the form key=value"),
    ("model.width=30", "model.width (30) must be a multiple of model.num_heads (4)"),
])
def test_bad_overrides_name_the_key(override, message):
  with pytest.raises(ConfigError) as error:
    apply_overrides(TrainConfig(), [override])
  assert message in str(error.value) and error.value.exit_code == 2
  assert "\n" not in str(error.value)


def test_rules_across_fields_hold_whatever_the_order_of_overrides():
  cfg = apply_overrides(TrainConfig(), ["governance.routing=region", "model.region_width=8"])
  assert cfg.governance.routing == "region"
  with pytest.raises(ConfigError, match="region_width > 0"):
    apply_overrides(TrainConfig(), ["governance.routing=region"])
  with pytest.raises(ConfigError, match="alternative to routing"):
    apply_overrides(TrainConfig(), ["governance.baseline=dpsgd", "governance.routing=depth"])
  with pytest.raises(ConfigError, match="restore_percentile"):
    apply_overrides(TrainConfig(), ["probe.percentile=50"])


def test_sections_validate_when_built_and_replaced():
  with pytest.raises(pydantic.ValidationError, match="batch_size"):
    dataclasses.replace(TrainConfig(), batch_size=0)
  with pytest.raises(pydantic.ValidationError, match="routing"):
    GovernanceSpec(routing="plain")
  with pytest.raises(pydantic.ValidationError, match="repeats"):
    CanarySpec(repeats=(1, 0))
  with pytest.raises(pydantic.ValidationError, match="extra|unexpected"):
    ModelSpec(depth=3)
  assert ModelSpec(num_layers=3).num_groups == 5
  assert set(ROUTING_MODES) == {"none", "depth", "per_group", "exact", "region"}


def test_dict_round_trip_hash_and_errors():
  cfg = apply_overrides(TrainConfig(), ["model.width=64", "canaries.count=2"])
  assert from_dict(cfg.to_dict()) == cfg and config_hash(from_dict(cfg.to_dict())) == config_hash(cfg)
  assert hash(cfg) == hash(from_dict(cfg.to_dict()))
  bad = dict(cfg.to_dict(), model=dict(cfg.to_dict()["model"], width="x"), extra_field=1)
  with pytest.raises(ConfigError) as error:
    from_dict(bad)
  assert "model.width: input should be a valid integer" in str(error.value)
  assert "extra_field: unknown config field" in str(error.value)


def test_one_loader_for_python_config_files(tmp_path):
  good = tmp_path / "good.py"
  good.write_text("from govjax.core.config import TrainConfig\n\ndef get_config():\n"
                  "  return TrainConfig(num_steps=3)\n")
  assert load_config(good).num_steps == 3
  bad_value = tmp_path / "bad_value.py"
  bad_value.write_text("from govjax.core.config import TrainConfig\n\ndef get_config():\n"
                       "  return TrainConfig(num_steps=-3)\n")
  with pytest.raises(ConfigError, match="bad_value.py: num_steps: input should be greater than or equal to 0"):
    load_config(bad_value)
  with pytest.raises(ConfigError, match="does not define get_study"):
    load_python_config(good, "get_study", object)
  with pytest.raises(ConfigError, match="returned TrainConfig, expected dict"):
    load_python_config(good, "get_config", dict)
  with pytest.raises(ConfigError, match="config file not found"):
    load_config(tmp_path / "missing.py")
