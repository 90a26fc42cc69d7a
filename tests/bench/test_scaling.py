"""The size ladder's parameter counts and the scaling bench's per-device bytes (abstract shapes only)."""

import argparse
import pathlib

import pytest

from govjax.bench import scaling
from govjax.core.config import load_config

LADDER = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs" / "ladder.py"


@pytest.fixture(scope="module")
def result():
  args = argparse.Namespace(ladder=str(LADDER), devices="1,2,4", examples=1000, check_steps=0, timing=False)
  return scaling.run(args)


def test_every_rung_counts_its_parameters_in_its_stated_range(result):
  ladder = scaling.load_ladder(LADDER)
  assert list(result["ladder"]) == list(ladder.LADDER)
  for name, rung in result["ladder"].items():
    low, high = ladder.LADDER[name].params_range
    assert low <= rung["num_params"] <= high, name
    assert rung["in_range"]
  assert result["ladder"]["1b"]["num_params"] > 900_000_000


def test_bytes_per_device_fall_with_device_count_under_fsdp(result):
  for name, rung in result["ladder"].items():
    table = rung["param_bytes_per_device"]
    assert sorted(table) == ["1", "2", "4"]
    for row in table.values():
      assert set(row) == {"replicated", "fsdp", "fsdp_over_replicated"}
      for layout in ("replicated", "fsdp"):
        parts = row[layout]
        assert set(parts) == {"params", "opt_state", "probe", "total"}
        assert parts["total"] >= parts["params"] + parts["opt_state"] + parts["probe"]
      assert row["replicated"] == table["1"]["replicated"]  # replication does not depend on N
      assert row["fsdp_over_replicated"] == pytest.approx(row["fsdp"]["total"] / row["replicated"]["total"],
                                                          abs=1e-4)
    fsdp = [table[n]["fsdp"] for n in ("1", "2", "4")]
    assert fsdp[0] == table["1"]["replicated"]  # one device holds everything either way
    for part in ("params", "opt_state", "probe", "total"):
      assert fsdp[0][part] > fsdp[1][part] > fsdp[2][part], (name, part)
    # Only the small leaves (norm scales, biases, scalars) stay replicated: close to 1/N.
    assert table["4"]["fsdp_over_replicated"] < 0.26, name
  # Parameters are float32 master weights; Adam holds two moments of the same size.
  demo = result["ladder"]["demo"]
  assert demo["param_bytes_per_device"]["1"]["replicated"]["params"] == 4 * demo["num_params"]


def test_a_ladder_file_without_the_protocol_is_refused(tmp_path):
  bad = tmp_path / "ladder.py"
  bad.write_text("LADDER = {}\n")
  with pytest.raises(ValueError, match="get_config"):
    scaling.load_ladder(bad)


def test_the_ladder_file_trains_its_demo_rung_by_default():
  config = load_config(LADDER)
  assert config.name == "ladder-demo" and config.governance.routing == "per_group" and config.probe.enabled
  with pytest.raises(ValueError, match="unknown ladder size"):
    scaling.load_ladder(LADDER).get_config("2b")
