"""The study's audit pieces: teacher-forced extraction, edit similarity, extrapolated exposure, membership at
resolvable false-positive rates, reference-calibrated scores, and the panel audit on a memorizing model."""

from __future__ import annotations

import numpy as np
import pytest

from govjax.audit.exposure import exposure, extrapolated_exposure
from govjax.audit.extraction import edit_similarity, extraction_audit, greedy_continuation, teacher_forced
from govjax.audit.membership import per_work_scores, reference_scores, resolvable_tpr
from govjax.audit.panel import audit_panel, panel_windows
from govjax.data.loader import Work
from tests.audit.memorize import tiny_run


def test_teacher_forced_exact_equals_greedy_exact():
  run = tiny_run()
  windows = np.concatenate([run.fixed, run.heldout])
  greedy = extraction_audit(run.model, windows, k=8, m=16)
  loss, exact, _ = teacher_forced(run.model, windows, k=8, m=16)
  np.testing.assert_array_equal(exact, greedy.exact)
  np.testing.assert_allclose(loss, greedy.loss, rtol=1e-5)
  assert exact[:len(run.fixed)].sum() >= 3 and not exact[len(run.fixed):].any()
  # A window whose continuation *is* the greedy one is always reproduced.
  rebuilt = run.heldout.copy()
  rebuilt[:, 8:24] = greedy_continuation(run.model, run.heldout[:, :8], 16)
  assert teacher_forced(run.model, rebuilt, k=8, m=16)[1].all()


def test_edit_similarity_known_values():
  a = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
  b = np.array([[1, 2, 3, 4], [2, 3, 4, 5], [5, 6, 7, 8]])
  np.testing.assert_allclose(edit_similarity(a, b), [1.0, 0.5, 0.0])  # shift by one: 2 edits of 4
  with pytest.raises(ValueError):
    edit_similarity(a, b[:, :3])


def test_extrapolated_exposure_passes_the_rank_ceiling():
  refs = np.random.default_rng(0).normal(4.0, 0.3, 1000)
  ceiling = np.log2(1001)
  losses = [4.0, 2.5, 2.0, 1.0]
  ranked = [exposure(x, refs) for x in losses]
  extrapolated = [extrapolated_exposure(x, refs) for x in losses]
  assert ranked[1] == ranked[2] == ranked[3] == pytest.approx(ceiling)  # rank exposure cannot separate them
  assert extrapolated[0] == pytest.approx(ranked[0], abs=0.3)  # the bulk: both about 1 bit
  assert ceiling < extrapolated[1] < extrapolated[2] < extrapolated[3]
  assert extrapolated_exposure(9.0, refs) == pytest.approx(0.0, abs=1e-6)


def test_resolvable_tpr_reports_only_rates_the_sample_resolves():
  nonmembers = np.linspace(0.0, 1.0, 20)  # 20 non-members: the smallest resolvable FPR is 0.05
  members = np.array([2.0, 2.0, 0.92, -1.0])
  out = resolvable_tpr(members, nonmembers, fprs=(0.01, 0.05, 0.1))
  assert set(out) == {"0.05", "0.1"}
  assert out["0.05"] == 0.5 and out["0.1"] == 0.75  # 0.92 clears the threshold once two false positives are allowed


def test_per_work_and_reference_scores():
  assert per_work_scores([1.0, np.nan, 3.0, 4.0], ["a", "a", "b", "b"]) == {"a": 1.0, "b": 3.5}
  np.testing.assert_allclose(reference_scores([1.0, 2.0], [3.0, 2.0]), [2.0, 0.0])
  with pytest.raises(ValueError):
    reference_scores([1.0], [1.0, 2.0])


def _work(work_id: str, tokens: np.ndarray) -> Work:
  return Work(work_id, "", "", "", "", "", "", tokens.astype(np.int32), tokens.size, {})


def test_panel_windows_are_the_same_whatever_else_is_audited():
  rng = np.random.default_rng(0)
  works = [_work(f"w{i}", rng.integers(3, 24, 32 * 5)) for i in range(4)]
  _, keys = panel_windows(works, 32, 2)
  _, keys_subset = panel_windows(works[2:], 32, 2)
  assert len(keys) == 8 and set(keys_subset) <= set(keys)
  _, every = panel_windows(works, 32, None)
  assert len(every) == 20


def test_audit_panel_separates_trained_from_heldout():
  run = tiny_run()
  train = [_work(f"m{i}", row) for i, row in enumerate(run.fixed)]
  held = [_work(f"h{i}", row) for i, row in enumerate(run.heldout)]
  out = audit_panel(run.model, train_works=train, trained_ids={"m0", "m1", "m2", "m3"}, heldout_works=held,
                    context=32, k=8, m=16, windows_per_work=None, canaries=run.fixed,
                    canary_ids=[f"c{i}" for i in range(4)], canary_kinds=["chorale"] * 4,
                    canary_repetitions=[60] * 4, canary_m=16, decode_per_split=2)
  members = [r for r in out["windows"] if r["member"]]
  heldout = [r for r in out["windows"] if r["split"] == "heldout"]
  assert len(members) == 4 and len(heldout) == 16 and not any(r["member"] for r in heldout)
  assert sum(r["exact"] for r in members) >= 3 and not any(r["exact"] for r in heldout)
  assert max(r["loss"] for r in members) < min(r["loss"] for r in heldout)
  assert sum(r["edit_similarity"] is not None for r in out["windows"]) == 4
  # Chorale canaries are ranked against held-out windows of their length: memorized ones pass the 16-reference
  # ceiling of rank exposure (log2 17 = 4.1 bits) only when extrapolated.
  for row in out["canaries"]:
    assert row["exposure_rank"] == pytest.approx(np.log2(17)) and row["exposure"] > row["exposure_rank"]
