"""The committed lookup evidence (experiments/results/lookup_bench.json) covers what the issue asks and is
internally consistent: every family is measured, every rate's bound follows from its counts."""

from __future__ import annotations

import json
import pathlib

import pytest

from govjax.documentation.lsh import false_positive_bound
from govjax.documentation.music_transforms import FAMILIES

RESULTS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "experiments" / "results" /
                      "lookup_bench.json").read_text())["result"]


def _rates(section):
  for key, value in section.items():
    if isinstance(value, dict) and {"events", "queries", "upper95"} <= set(value):
      yield key, value
    elif isinstance(value, dict):
      yield from _rates(value)


def test_every_family_has_a_recall_and_a_level():
  assert set(RESULTS["recall_by_transform"]) == set(FAMILIES) == set(RESULTS["levels_by_transform"])
  for family, levels in RESULTS["levels_by_transform"].items():
    assert sum(levels.values()) == 30, family


@pytest.mark.parametrize("section", ["four_voice_settings", "four_voice_settings_seed1", "four_voice_settings_seed2",
                                     "distinct_works",
                                     "distinct_works_oneills1850_with_ryansMammoth_airdsAirs_miscFolk_"
                                     "nottingham-dataset"])
def test_rates_bounds_follow_from_their_counts(section):
  rates = list(_rates(RESULTS[section]))
  assert rates
  for name, rate in rates:
    assert 0 <= rate["events"] <= rate["queries"], name
    assert rate["upper95"] == pytest.approx(false_positive_bound(rate["queries"], rate["events"]), abs=2e-6), name


@pytest.mark.parametrize("section", ["four_voice_settings", "four_voice_settings_seed1", "four_voice_settings_seed2"])
def test_four_voice_settings_have_held_out_queries_and_recalls(section):
  settings = RESULTS[section]
  assert settings["distinct_queries"] >= 3000 and settings["held_out"]["queries"] >= 3000
  assert "essenFolksong" not in settings["held_out"]["collections"]
  reused = settings["reused_setting_recall"]
  assert reused["pairs"] == 300 and reused["ci95"][0] <= reused["recall"] <= reused["ci95"][1]
  other = settings["other_setting"]
  assert other["same_tune_recall"]["pairs"] + other["ground_truth_duplicates"] == 300
