"""The lookup benchmark end to end on a few corpus works."""

import argparse

import pytest

from govjax import cli
from govjax.bench import lookup


def _args(**overrides) -> argparse.Namespace:
  args = cli.build_parser().parse_args(["bench", "lookup"])
  for key, value in overrides.items():
    setattr(args, key, value)
  return args


def test_small_run_finds_every_copy_and_no_other_composer():
  result = lookup.run(_args(max_works=6, max_other_works=3))
  assert result["num_works"] == 6 and result["num_documented"] == 3 and result["num_holdout"] == 3
  assert result["transformed_queries"] == 3 * len(lookup.TRANSFORMS)
  assert result["recall_transformed"] >= 0.9
  assert {result["recall_by_transform"][f] for f in ("excerpt", "voice_subset", "added_parts", "edit")} == {1.0}
  assert result["levels_by_transform"]["excerpt"] == {"partial-copy": 3}
  assert result["other_composer_works"] == 3
  by_variant = result["distinct_queries_by_variant"]
  variants = ["as_parsed"] + [f"{v}_in_memory" for v in lookup.DISTINCT_VARIANTS]
  assert {name: v["queries"] for name, v in by_variant.items() if name.startswith("other_")} == {
      f"other_{v}": 3 for v in variants}
  # held-out works: combined file + 7 in-memory variants; documented works (roles swapped) and others: 7
  assert result["distinct_work_queries"] == 3 * 8 + 3 * 7 + 3 * 7
  assert result["false_positive_queries"] == 0
  assert result["false_positive_rate_upper95"] == pytest.approx(1 - 0.05 ** (1 / 66), abs=1e-4)
  assert result["distinct_unverified_matches"] == []
  assert 0 < result["cli_lookup_s"] < 30
