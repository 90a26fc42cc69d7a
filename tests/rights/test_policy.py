import json

import numpy as np
import pytest

from govjax import cli
from govjax.core.errors import UserError
from govjax.rights.decisions import apply_policy
from govjax.rights.policy import (
    Condition,
    Policy,
    PolicyError,
    Rule,
    Treatment,
    default_policy,
    load_policy,
    policy_to_json,
    resolve_depth,
)
from govjax.rights.records import parse_record, save_records

L = 6


def rec(work_id, licence="CC0-1.0", **kw):
  return parse_record({"work_id": work_id, "licence": licence, **kw})


# One record per class the default policy distinguishes, with the expected (include, depth, rule).
CASES = [
    (rec("tdm", "CC0-1.0", tdm_reservation=True), False, 0, "opted-out"),
    (rec("ai", "CC-BY-4.0", ai_training="notAllowed"), False, 0, "opted-out"),
    (rec("gen", "MIT", generative_training="notAllowed"), False, 0, "opted-out"),
    (rec("bare-constraint", "CC-BY-4.0", generative_training="constrained"), False, 0, "opted-out"),
    (rec("structural-nc", "CC-BY-NC-4.0", content_class="structural"), True, L, "structural"),
    (rec("cc0", "CC0-1.0"), True, L, "permissive"),
    (rec("by", "CC-BY-4.0"), True, L, "permissive"),
    (rec("stated-constraint", "CC-BY-4.0", generative_training="constrained",
         generative_training_constraint="credit"), True, 1, "constrained"),
    (rec("sa", "CC-BY-SA-4.0"), True, 1, "restricted-or-unknown"),
    (rec("nc", "CC-BY-NC-4.0"), True, 1, "restricted-or-unknown"),
    (rec("nd", "CC-BY-ND-4.0"), True, 1, "restricted-or-unknown"),
    (rec("unknown", "unknown"), True, 1, "restricted-or-unknown"),
    (rec("ref", "LicenseRef-label"), True, 1, "restricted-or-unknown"),
]


def test_default_policy_on_each_class():
  records = [c[0] for c in CASES]
  d = apply_policy(records, default_policy(), L)
  assert d.work_ids == tuple(r.work_id for r in records)
  assert d.include.dtype == bool and d.depth.dtype == np.int32 and d.region.dtype == np.int32
  assert d.include.tolist() == [c[1] for c in CASES]
  assert d.depth.tolist() == [c[2] for c in CASES]
  assert d.rules == tuple(c[3] for c in CASES)
  assert (d.region == -1).all()
  assert "tdm_reservation=true" in d.reasons[0] and "constrained without a stated constraint" in d.reasons[3]


def test_configured_depths_and_strict_encodings():
  records = [rec("by", "CC-BY-4.0"), rec("nc", "CC-BY-NC-4.0"),
             rec("enc", "CC-PDM-1.0", encoding_licence="LicenseRef-corpus")]
  d = apply_policy(records, default_policy(permissive_depth="50%", restricted_depth=2), L)
  assert d.depth.tolist() == [3, 2, 3]
  strict = apply_policy(records, load_policy("default-strict-encodings"), L)
  assert strict.depth.tolist() == [L, 1, 1] and strict.rules[2] == "encoding-restricted"


def test_first_matching_rule_wins_and_is_recorded():
  policy = Policy(name="p", regions=("sink",), rules=(
      Rule(name="nc-to-sink", when=Condition(licence=["CC-BY-NC-*"]),
           treatment=Treatment(action="region", region="sink")),
      Rule(name="nc-shallow", when=Condition(use="non-commercial"),
           treatment=Treatment(action="depth", depth=1)),
      Rule(name="sim-two", when=Condition(simulated=True), treatment=Treatment(action="depth", depth=2)),
      Rule(name="rest", treatment=Treatment(action="depth", depth="full")),
  ))
  d = apply_policy([rec("a", "CC-BY-NC-SA-4.0"), rec("b", "MIT", simulated=True), rec("c", "MIT")], policy, 4)
  assert d.rules == ("nc-to-sink", "sim-two", "rest")
  assert d.region.tolist() == [0, -1, -1] and d.depth.tolist() == [4, 2, 4]
  assert d.treatment_label(0) == "region sink depth 4/4"


def test_no_matching_rule_and_bad_policies_are_errors():
  only_nc = Policy(rules=(Rule(name="nc", when=Condition(use="non-commercial"),
                               treatment=Treatment(action="exclude")),))
  with pytest.raises(PolicyError, match="no rule matches work 'x'"):
    apply_policy([rec("x", "MIT")], only_nc, L)
  with pytest.raises(PolicyError, match=r"rules\.0\.treatment\.depth"):
    load_policy({"rules": [{"name": "r", "treatment": {"action": "depth", "depth": 0.5}}]})
  with pytest.raises(PolicyError, match="not declared"):
    load_policy({"rules": [{"name": "r", "treatment": {"action": "region", "region": "sink"}}]})
  with pytest.raises(PolicyError, match="unique"):
    load_policy({"rules": [{"name": "r", "treatment": {"action": "exclude"}}] * 2})
  with pytest.raises(PolicyError, match="when.licence_class"):
    load_policy({"rules": [{"name": "r", "when": {"licence_class": "free"},
                            "treatment": {"action": "exclude"}}]})
  with pytest.raises(PolicyError, match="duplicate"):
    apply_policy([rec("x"), rec("x")], default_policy(), L)


@pytest.mark.parametrize("spec,expected", [("full", [1, 2, 6]), ("surface", [1, 1, 1]), (2, [1, 2, 2]),
                                           ("50%", [1, 1, 3]), ("100%", [1, 2, 6])])
def test_resolve_depth(spec, expected):
  assert [resolve_depth(spec, n) for n in (1, 2, 6)] == expected


@pytest.mark.parametrize("bad", [0, -1, 1.0, True, "half", "0%", "150%", None])
def test_resolve_depth_rejects(bad):
  with pytest.raises(ValueError):
    resolve_depth(bad, 6)


def test_policy_json_and_python_files_round_trip(tmp_path):
  policy = default_policy(restricted_depth="25%")
  (tmp_path / "p.json").write_text(policy_to_json(policy))
  assert load_policy(tmp_path / "p.json") == policy
  (tmp_path / "p.py").write_text(
      "def get_policy():\n"
      "  return {'name': 'py', 'missing_record': {'action': 'depth', 'depth': 'surface'},\n"
      "          'rules': [{'name': 'all', 'treatment': {'action': 'depth', 'depth': 3}}]}\n")
  assert load_policy(str(tmp_path / "p.py")).name == "py"
  (tmp_path / "bad.json").write_text("{")
  with pytest.raises(PolicyError, match="not valid JSON"):
    load_policy(tmp_path / "bad.json")
  with pytest.raises(PolicyError, match="neither"):
    load_policy(tmp_path / "nope.json")


# ----------------------------------------------------------------------------------------------------
# CLI.


def _run_cli(argv):
  return cli.main(argv)


def test_cli_summary_and_policy(tmp_path, capsys):
  records_file = tmp_path / "r.csv"
  save_records([c[0] for c in CASES], records_file)
  assert _run_cli(["rights", "policy", "--out", str(tmp_path / "p.json")]) == 0
  assert load_policy(tmp_path / "p.json") == default_policy()
  capsys.readouterr()
  assert _run_cli(["rights", "summary", "--records", str(records_file), "--policy", str(tmp_path / "p.json"),
                   "--num-groups", "6", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["summary"] == apply_policy([c[0] for c in CASES], default_policy(), 6).summary()
  assert len(out["exclusions"]["excluded"]) == 4
  assert _run_cli(["rights", "summary", "--records", str(records_file), "--policy", "nope.json"]) == 2


# ----------------------------------------------------------------------------------------------------
# Constrained permissions are restricted, not permissive.


def _constrained(work_id, licence="CC0-1.0", **kw):
  fields = {"generative_training": "constrained", "generative_training_constraint": "credit the label in the card"}
  return rec(work_id, licence, **{**fields, **kw})


def test_a_stated_constraint_is_restricted_by_default_whatever_the_licence():
  records = [_constrained("cc0"), _constrained("structural", content_class="structural"),
             rec("ai", "MIT", ai_training="constrained", ai_training_constraint="research only"),
             _constrained("also-tdm", tdm_reservation=True), _constrained("nc", "CC-BY-NC-4.0"), rec("plain")]
  d = apply_policy(records, default_policy(restricted_depth=2), L)
  assert d.rules == ("constrained", "constrained", "constrained", "opted-out", "constrained", "permissive")
  assert d.depth.tolist() == [2, 2, 2, 0, 2, L] and d.include.tolist() == [True] * 3 + [False, True, True]
  assert d.reasons[0] == ("AI / generative training allowed only under the rights holder's stated constraint "
                          "(CAWG 'constrained'): treated as restricted, not permissive, until the constraint is "
                          "judged (generative_training=constrained (constraint: 'credit the label in the card'; "
                          "treated as restricted))")
  assert "ai_training=constrained (constraint: 'research only'" in d.reasons[2]
  assert [r.constrained for r in records] == [True, True, True, False, True, False]


def test_baselines_treat_constrained_works_as_restricted():
  records = [_constrained("c"), rec("p")]
  excluded = apply_policy(records, load_policy("exclude-restricted"), L)
  assert excluded.include.tolist() == [False, True] and excluded.rules[0] == "constrained"
  sink = apply_policy(records, load_policy("sink"), L)
  assert sink.region.tolist() == [0, -1] and sink.rules == ("constrained", "permissive")
  assert sink.reasons[0].startswith("AI / generative training allowed only under")
  assert "routed to a removable region" in sink.reasons[0]
  assert apply_policy(records, load_policy("include-all"), L).depth.tolist() == [L, L]


def test_a_custom_rule_can_match_constrained_works(tmp_path):
  policy = load_policy({"rules": [
      {"name": "judged", "when": {"constrained": True, "work_id": "judged/*"},
       "treatment": {"action": "depth", "depth": "full"}},
      {"name": "rest", "when": {"constrained": False}, "treatment": {"action": "depth", "depth": 3}},
      {"name": "other-constrained", "treatment": {"action": "exclude"}}]})
  d = apply_policy([_constrained("judged/1"), _constrained("x"), rec("y")], policy, L)
  assert d.rules == ("judged", "other-constrained", "rest")
  (tmp_path / "p.json").write_text(policy_to_json(default_policy()))
  assert load_policy(tmp_path / "p.json").rules[1].when.constrained is True


def test_policy_errors_are_user_errors():
  with pytest.raises(UserError, match="invalid policy: rules"):
    load_policy({"rules": []})
