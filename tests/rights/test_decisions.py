"""Decisions of the default policy over a corpus, exclusion before batching and the per-batch masks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govjax.rights.decisions import apply_policy, batch_mask, batch_region, depth_mask, exclude_works, govern_works
from govjax.rights.policy import PolicyError, Treatment, default_policy
from tests.rights.test_policy import CASES, L, rec


def test_missing_records_error_or_take_the_policy_rule():
  records = [rec("a"), rec("b", "CC-BY-NC-4.0", tdm_reservation=True), rec("not-in-dataset")]
  with pytest.raises(PolicyError, match=r"2 work\(s\) have no rights record.*'m1', 'm2'"):
    apply_policy(records, default_policy(), L, work_ids=["a", "m1", "b", "m2"])
  exclude = Treatment(action="exclude", reason="no record")
  lenient = default_policy().model_copy(update={"missing_record": exclude})
  d = apply_policy(records, lenient, L, work_ids=["a", "m1", "b"])
  assert d.work_ids == ("a", "m1", "b") and d.include.tolist() == [True, False, False]
  assert d.rules == ("permissive", "missing-record", "opted-out") and d.licences[1] == "<no record>"


def test_exclude_works_reports_everything_and_keeps_order():
  works = [{"work_id": "a"}, {"work_id": "b"}, {"work_id": "c"}, {"work_id": "d"}]
  records = [rec("a"), rec("b", ai_training="notAllowed"), rec("c", "CC-BY-NC-4.0"),
             rec("d", tdm_reservation=True)]
  decisions = apply_policy(records, default_policy(), L)
  kept, report = exclude_works(works[::-1], decisions)
  assert [w["work_id"] for w in kept] == ["c", "a"]
  assert (report.num_works, report.num_kept, report.num_excluded) == (4, 2, 2)
  assert [e.work_id for e in report.excluded] == ["d", "b"]
  assert all(e.rule == "opted-out" and e.reason for e in report.excluded)
  assert json.loads(json.dumps(report.to_dict()))["num_excluded"] == 2
  with pytest.raises(PolicyError, match="no policy decision"):
    exclude_works(works + [{"work_id": "zz"}], decisions)


def test_govern_works_aligns_arrays_with_kept_works():
  class W:
    def __init__(self, work_id):
      self.work_id = work_id

  works = [W("a"), W("opted"), W("nc"), W("s")]
  records = [rec("a", "CC-BY-4.0"), rec("opted", generative_training="notAllowed"), rec("nc", "CC-BY-NC-4.0"),
             rec("s", "CC0-1.0", content_class="structural")]
  g = govern_works(works, records, default_policy(), L)
  assert [w.work_id for w in g.works] == ["a", "nc", "s"]
  assert g.per_work_depth.tolist() == [L, 1, L] and g.per_work_region.tolist() == [-1, -1, -1]
  assert g.report.num_excluded == 1 and len(g.decisions) == 4


def test_summary_counts():
  d = apply_policy([c[0] for c in CASES], default_policy(), L)
  s = d.summary()
  assert (s["num_works"], s["num_included"], s["num_excluded"]) == (13, 9, 4)
  assert s["by_treatment"] == {"depth 1/6": 6, "depth 6/6": 3, "exclude": 4}  # stated constraint: restricted
  assert s["by_licence"]["CC-BY-4.0"] == 4
  assert s["by_licence_and_treatment"]["CC-BY-4.0"] == {"depth 1/6": 1, "depth 6/6": 1, "exclude": 2}
  assert sum(s["by_rule"].values()) == 13
  text = d.format_summary()
  assert "excluded 4 of 13 works" in text and "CC-BY-NC-4.0" in text


# ----------------------------------------------------------------------------------------------------
# Masks.


def _reference_mask(depth, num_groups):
  out = np.zeros((len(depth), num_groups), np.float32)
  for b, d in enumerate(depth):
    for g in range(num_groups):
      out[b, g] = 1.0 if g >= num_groups - min(max(d, 0), num_groups) else 0.0
  return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(-2, n + 2), min_size=8,
                                                                          max_size=8))))
def test_depth_mask_matches_reference(args):
  num_groups, depth = args
  mask = depth_mask(np.asarray(depth, np.int32).reshape(-1), num_groups)
  assert mask.dtype == jnp.float32 and mask.shape == (len(depth), num_groups)
  np.testing.assert_array_equal(np.asarray(mask), _reference_mask(depth, num_groups))


def test_mask_semantics_group_zero_is_input():
  mask = np.asarray(depth_mask(jnp.array([L, 1, 2, 0]), L))
  assert mask[0].tolist() == [1.0] * L  # full depth: every group
  assert mask[1].tolist() == [0.0] * (L - 1) + [1.0]  # surface: only the output group
  assert mask[2, -2:].tolist() == [1.0, 1.0] and mask[2, :-2].sum() == 0
  assert mask[3].sum() == 0


def test_batch_mask_under_jit_gathers_per_row_depth():
  per_work_depth = jnp.array([6, 1, 3, 0], jnp.int32)
  work_index = jnp.array([2, 0, 1, 1, 3, 7, -1], jnp.int32)
  jitted = jax.jit(batch_mask, static_argnums=2)
  mask = np.asarray(jitted(work_index, per_work_depth, L))
  expected = _reference_mask([3, 6, 1, 1, 0, 0, 0], L)  # out-of-range rows get no gradient at all
  np.testing.assert_array_equal(mask, expected)
  np.testing.assert_array_equal(np.asarray(batch_mask(work_index, per_work_depth, L)), expected)
  # Traced inside a larger jitted function, with the depth table as an argument.
  f = jax.jit(lambda idx, table: batch_mask(idx, table, L).sum(axis=1))
  assert np.asarray(f(work_index, per_work_depth)).tolist() == [3, 6, 1, 1, 0, 0, 0]
  regions = jax.jit(batch_region)(work_index, jnp.array([0, -1, 1, -1]))
  assert np.asarray(regions).tolist() == [1, 0, -1, -1, -1, -1, -1]


def test_exclusion_report_shows_invisible_characters_as_escapes():
  lenient = default_policy().model_copy(update={"missing_record": Treatment(action="exclude", reason="no record")})
  d = apply_policy([rec("a")], lenient, L, work_ids=["a", "b\u200b\x1b[2J"])
  assert d.exclusion_report.format().splitlines() == [
      "excluded 1 of 2 works (1 kept)", "  b\\u200b\\x1b[2J: no record [rule missing-record, licence <no record>]"]
