"""Run manifest: the run's treatments (trained depth / region / held out / excluded), every work fingerprinted
(opted-out ones too), lookups, and the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import types

import mlcroissant
import music21
import numpy as np
import pytest

from govjax.data.loader import Work
from govjax.documentation import lookup, run_manifest
from govjax.documentation import manifest as mfst
from govjax.documentation import music_fingerprint as mf
from govjax.rights.records import parse_record

TRAIN = ("bach/bwv66.6", "bach/bwv26.6")
HELDOUT = ("bach/bwv101.7",)
EXCLUDED_WITH_CONTENT = "bach/bwv10.7"
EXCLUDED_WITHOUT_CONTENT = "bach/bwv103.6"


def _work(work_id: str) -> Work:
  path = music21.corpus.getWork(work_id)
  tokens = np.full(16, 3, np.int32)  # not used: works are fingerprinted from their source files
  return Work(work_id=work_id, title=work_id.split("/")[1], composer="J. S. Bach", collection="bach",
              source_path=f"{work_id}.mxl", sha256=mfst.sha256_file(path), key="", tokens=tokens, length=16)


def _training_data() -> types.SimpleNamespace:
  all_ids = TRAIN + HELDOUT + (EXCLUDED_WITH_CONTENT, EXCLUDED_WITHOUT_CONTENT)
  records = {w: parse_record({"work_id": w, "title": w, "creators": ["J. S. Bach"], "licence": "CC-PDM-1.0",
                              "sha256": mfst.sha256_file(music21.corpus.getWork(w)),
                              "source": f"music21 corpus: {w}.mxl"}) for w in all_ids}
  records[EXCLUDED_WITH_CONTENT] = records[EXCLUDED_WITH_CONTENT].model_copy(update={"tdm_reservation": True})
  return types.SimpleNamespace(works=[_work(w) for w in TRAIN], heldout_works=[_work(w) for w in HELDOUT],
                               records=records, per_work_depth=np.array([6, 2], np.int32),
                               per_work_region=np.array([0, 1], np.int32), num_groups=6, report={})


REASONS = {"bach/bwv66.6": {"rule": "permissive", "reason": "public domain", "include": True},
           "bach/bwv26.6": {"rule": "restricted", "reason": "needs removal", "region": "sink", "include": True}}


@pytest.fixture(scope="module")
def run_manifest_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("run") / "manifest"
  summary = run_manifest.build_run_manifest(out, _training_data(), other_works=[_work(EXCLUDED_WITH_CONTENT)],
                                            reasons=REASONS, date_published="2025-01-01",
                                            allow_missing_content=True)
  return out, summary


def test_a_work_without_content_is_an_error_unless_allowed(tmp_path):
  with pytest.raises(mfst.ManifestError, match=r"1 documented work\(s\) have no content to fingerprint "
                                               r"\(e.g. 'bach/bwv103.6', excluded\): pass the run's dataset works"):
    run_manifest.build_run_manifest(tmp_path / "m", _training_data(), other_works=[_work(EXCLUDED_WITH_CONTENT)],
                                    reasons=REASONS)
  assert not (tmp_path / "m").exists()


def test_records_carry_the_runs_treatments(run_manifest_dir):
  out, summary = run_manifest_dir
  manifest = mfst.load_manifest(out)
  treatment = {r["work_id"]: r["tier1"]["treatment"] for r in manifest.records}
  assert treatment["bach/bwv66.6"]["label"] == "depth 6/6"
  assert (treatment["bach/bwv26.6"]["region"], treatment["bach/bwv26.6"]["label"]) == ("sink",
                                                                                        "region sink, depth 2/6")
  assert treatment["bach/bwv101.7"]["status"] == "not-trained"
  excluded = treatment[EXCLUDED_WITH_CONTENT]
  assert (excluded["status"], excluded["depth"]) == ("excluded", 0)
  assert "tdm" in excluded["reason"].lower()  # from the rights record's opt-out reasons
  assert treatment[EXCLUDED_WITHOUT_CONTENT]["reason"] == run_manifest.EXCLUDED_REASON
  assert summary["by_treatment_status"] == {"included": 2, "not-trained": 1, "excluded": 2}
  assert summary["without_content"] == [EXCLUDED_WITHOUT_CONTENT]
  assert summary["fingerprint_sources"] == {"from_source": 4, "from_tokens": 0, "without_content": 1}
  duplicates = json.loads((out / mfst.DUPLICATES_FILENAME).read_text())
  assert duplicates["num_works"] == 2 and duplicates["scope"].startswith("training set")
  doc = json.loads((out / mfst.CROISSANT_FILENAME).read_text())
  assert mfst.validate_croissant(doc) == []
  files = {d["@id"]: d for d in doc["distribution"]}
  assert files["source/bach/bwv66.6"]["sha256"] == mfst.sha256_file(music21.corpus.getWork("bach/bwv66.6"))
  dataset = mlcroissant.Dataset(jsonld=str(out / mfst.CROISSANT_FILENAME))
  assert not dataset.metadata.ctx.issues.errors and not dataset.metadata.ctx.issues.warnings
  rows = {r["works/work_id"].decode(): r for r in dataset.records("works")}
  assert rows[EXCLUDED_WITH_CONTENT]["works/opted_out"] is True and rows["bach/bwv66.6"]["works/opted_out"] is False
  assert rows["bach/bwv26.6"]["works/treatment_depth"] == 2
  assert rows[EXCLUDED_WITH_CONTENT]["works/fingerprint_full"] and rows[EXCLUDED_WITHOUT_CONTENT][
      "works/fingerprint_full"] is None


def test_lookups_in_a_run_manifest(run_manifest_dir, tmp_path):
  out, _ = run_manifest_dir
  index = lookup.ManifestIndex(mfst.load_manifest(out))
  routed = lookup.lookup_file(music21.corpus.getWork("bach/bwv26.6"), index).matches[0]
  assert routed.treatment["label"] == "region sink, depth 2/6"
  notes = mf.notes_from_score(music21.corpus.parse(EXCLUDED_WITH_CONTENT)).notes
  path = tmp_path / "excluded_up2.mid"
  mf.score_from_notes([dataclasses.replace(n, pitch=n.pitch + 2) for n in notes]).write("midi", fp=str(path))
  match = lookup.lookup_file(path, index).matches[0]
  assert (match.work_id, match.matched_by, match.treatment["status"]) == (EXCLUDED_WITH_CONTENT, "content",
                                                                         "excluded")
  # Documented without content: the original file matches by its sha256, a re-encoding cannot.
  original = lookup.lookup_file(music21.corpus.getWork(EXCLUDED_WITHOUT_CONTENT), index).matches[0]
  assert (original.work_id, original.matched_by) == (EXCLUDED_WITHOUT_CONTENT, "exact")
  notes = mf.notes_from_score(music21.corpus.parse(EXCLUDED_WITHOUT_CONTENT)).notes
  mf.score_from_notes(notes).write("midi", fp=str(tmp_path / "reencoded.mid"))
  assert not lookup.lookup_file(tmp_path / "reencoded.mid", index).found


def test_inconsistent_treatments_name_the_work():
  data = _training_data()
  with pytest.raises(mfst.ManifestError, match="'bach/bwv26.6': field 'per_work_depth' is 0"):
    run_manifest.run_treatments(works=data.works, records=data.records, per_work_depth=[6, 0], num_groups=6)
  with pytest.raises(mfst.ManifestError, match="'bach/bwv66.6': the policy excludes it"):
    run_manifest.run_treatments(works=data.works, records=data.records, per_work_depth=[6, 6], num_groups=6,
                                reasons={"bach/bwv66.6": {"include": False, "reason": "opted out"}})
  with pytest.raises(mfst.ManifestError, match="one entry per training work"):
    run_manifest.run_treatments(works=data.works, records=data.records, per_work_depth=[6], num_groups=6)


def test_cli_manifest_from_workdir_then_lookup(tmp_path, monkeypatch):
  from govjax.cli import main
  from govjax.core import config as train_config
  from govjax.train import data as train_data

  workdir = tmp_path / "run"
  workdir.mkdir()
  config = train_config.TrainConfig(data_dir=str(tmp_path / "not-prepared"))
  (workdir / "config.json").write_text(json.dumps({"config": config.to_dict(), "config_hash": "0123abcd"}))
  data = _training_data()
  monkeypatch.setattr(train_data, "build_training_data", lambda cfg: types.SimpleNamespace(catalogue=data),
                      raising=False)
  dataset = {"train": [_work(w) for w in TRAIN + (EXCLUDED_WITH_CONTENT, EXCLUDED_WITHOUT_CONTENT)],
             "validation": [_work(w) for w in HELDOUT], "test": []}
  monkeypatch.setattr(train_data, "load_works", lambda cfg: dataset)
  out = io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    assert main(["manifest", "--workdir", str(workdir), "--json", "--date", "2025-01-01"]) == 0
  summary = json.loads(out.getvalue())
  assert summary["num_works"] == 5 and summary["without_content"] == []  # every work fingerprinted
  assert summary["fingerprint_sources"] == {"from_source": 5, "from_tokens": 0, "without_content": 0}
  manifest = mfst.load_manifest(workdir / "manifest")
  assert manifest.doc["url"] == "urn:govjax:run:0123abcd"
  assert manifest.doc["name"] == "govjax-chorales-run-0123abcd"
  excluded = manifest.record(EXCLUDED_WITH_CONTENT)["tier1"]["treatment"]
  assert excluded["status"] == "excluded" and excluded["rule"] == "opted-out"  # reason from the run's policy
  assert manifest.record(EXCLUDED_WITH_CONTENT)["tier1"]["rights"]["opted_out"] is True
  assert mfst.has_fingerprint(manifest.record(EXCLUDED_WITH_CONTENT))
  # A rights holder's transposed copy of the opted-out work is found, with its exclusion.
  notes = mf.notes_from_score(music21.corpus.parse(EXCLUDED_WITH_CONTENT)).notes
  copy = tmp_path / "opted_out_down3.mid"
  mf.score_from_notes([dataclasses.replace(n, pitch=n.pitch - 3) for n in notes]).write("midi", fp=str(copy))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert main(["lookup", str(copy), "--workdir", str(workdir), "--json"]) == 0
  found = json.loads(out.getvalue())
  assert found["found"] and [m["work_id"] for m in found["matches"]] == [EXCLUDED_WITH_CONTENT]
  match = found["matches"][0]
  assert (match["matched_by"], match["treatment"]["status"], match["record"]["opted_out"]) == (
      "content", "excluded", True)
  (workdir / "audit").mkdir()
  (workdir / "audit" / "per_work.jsonl").write_text(json.dumps({"work_id": "bach/bwv66.6",
                                                                "extraction_rate": 0.5}) + "\n")
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = main(["lookup", str(music21.corpus.getWork("bach/bwv66.6")), "--workdir", str(workdir), "--json"])
  assert code == 0
  match = json.loads(out.getvalue())["matches"][0]
  assert (match["work_id"], match["matched_by"]) == ("bach/bwv66.6", "exact")
  assert match["audit"]["extraction_rate"] == 0.5 and match["provenance_appearances"] == "not available"


def test_cli_manifest_of_a_dataset_alone(tmp_path, monkeypatch):
  from govjax.cli import main
  from govjax.data import chorales

  splits = {"train": [_work("bach/bwv66.6"), _work("bach/bwv26.6")], "validation": [_work("bach/bwv101.7")],
            "test": []}
  monkeypatch.setattr(chorales, "load_chorale_works", lambda data_dir, split: splits[split])
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = main(["manifest", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m"), "--json", "--workers", "1"])
  assert code == 0
  summary = json.loads(out.getvalue())
  assert summary["by_treatment_status"] == {"included": 2, "not-trained": 1}
  manifest = mfst.load_manifest(tmp_path / "m")
  assert manifest.record("bach/bwv66.6")["tier1"]["rights"]["licence"] == "CC-PDM-1.0"
  with contextlib.redirect_stderr(io.StringIO()) as err:
    assert main(["manifest", "--workdir", str(tmp_path / "no-run")]) == 2
  assert "not a govjax run directory" in err.getvalue()


def test_works_outside_the_training_split_are_not_trained_and_depth_overrides_are_explained():
  data = _training_data()
  considered = set(TRAIN) | {EXCLUDED_WITH_CONTENT}
  treatments = run_manifest.run_treatments(
      works=data.works, records=data.records, per_work_depth=[6, 6], num_groups=6, heldout_works=data.heldout_works,
      considered=considered, reasons={"bach/bwv26.6": {"rule": "restricted", "reason": "needs removal", "depth": 2}})
  assert {w: t["status"] for w, t in treatments.items()} == {
      "bach/bwv66.6": "included", "bach/bwv26.6": "included", "bach/bwv101.7": "not-trained",
      EXCLUDED_WITH_CONTENT: "excluded", EXCLUDED_WITHOUT_CONTENT: "not-trained"}
  assert treatments[EXCLUDED_WITHOUT_CONTENT]["reason"] == run_manifest.OTHER_SPLIT_REASON
  assert treatments["bach/bwv26.6"]["reason"] == "needs removal (the policy's depth 2; this run trained depth 6)"


def test_manifest_of_real_training_data():
  """Against ``govjax.train.data.build_training_data`` itself (simulated rights scenario, tiny model)."""
  from govjax.core import config as train_config
  from govjax.train.data import build_training_data

  config = train_config.TrainConfig(
      model=train_config.ModelSpec(num_layers=1, width=16, num_heads=2, context=16), batch_size=2,
      window_stride=16, governance=train_config.GovernanceSpec(scenario="default", routing="depth"))
  splits = {"train": [_work(w) for w in TRAIN + (EXCLUDED_WITH_CONTENT,)], "validation": [_work(HELDOUT[0])],
            "test": [_work(EXCLUDED_WITHOUT_CONTENT)]}
  data = build_training_data(config, works=splits)
  catalogue = data.catalogue
  records = run_manifest.run_treatments(
      works=catalogue.works, records=catalogue.records, per_work_depth=catalogue.per_work_depth,
      num_groups=catalogue.num_groups, per_work_region=catalogue.per_work_region,
      heldout_works=catalogue.heldout_works, reasons=catalogue.treatments, considered=set(catalogue.treatments))
  for i, work in enumerate(data.catalogue.works):
    assert records[work.work_id]["depth"] == int(data.catalogue.per_work_depth[i])
    assert records[work.work_id]["reason"].startswith(data.catalogue.treatments[work.work_id]["reason"])
  assert records[HELDOUT[0]]["status"] == records[EXCLUDED_WITHOUT_CONTENT]["status"] == "not-trained"
  excluded = {w for w, t in data.catalogue.treatments.items() if not t["include"]}
  assert {w for w, t in records.items() if t["status"] == "excluded"} == excluded


def test_document_run_fingerprints_every_work_of_real_training_data(tmp_path):
  """``document_run`` (what ``govjax manifest --workdir`` and ``govjax study`` call) on
  ``govjax.train.data.build_training_data``: an opted-out work, a test-split work and planted canaries are all
  fingerprinted, and a transposed copy of the opted-out work is found."""
  from govjax.core import config as train_config
  from govjax.train.data import build_training_data

  records = tmp_path / "records.jsonl"
  records.write_text("".join(json.dumps({"work_id": w, "licence": "CC-PDM-1.0", "creators": ["J. S. Bach"],
                                         "tdm_reservation": w == EXCLUDED_WITH_CONTENT}) + "\n"
                             for w in TRAIN + HELDOUT + (EXCLUDED_WITH_CONTENT, EXCLUDED_WITHOUT_CONTENT)))
  config = train_config.TrainConfig(
      model=train_config.ModelSpec(num_layers=1, width=16, num_heads=2, context=16), batch_size=2,
      window_stride=16, governance=train_config.GovernanceSpec(scenario=str(records), routing="depth"),
      canaries=train_config.CanarySpec(count=1, repeats=(2,), frames=8))
  splits = {"train": [_work(w) for w in TRAIN + (EXCLUDED_WITH_CONTENT,)], "validation": [_work(HELDOUT[0])],
            "test": [_work(EXCLUDED_WITHOUT_CONTENT)]}
  data = build_training_data(config, works=splits)
  assert EXCLUDED_WITH_CONTENT not in {w.work_id for w in data.catalogue.works}
  summary = run_manifest.document_run(tmp_path / "manifest", config, data.catalogue, splits, config_hash="feed",
                                      date_published="2025-01-01")
  assert summary["num_works"] == 7 and summary["without_content"] == [] and summary["notes"] == []
  assert summary["fingerprint_sources"] == {"from_source": 5, "from_tokens": 2, "without_content": 0}
  manifest = mfst.load_manifest(tmp_path / "manifest")
  assert manifest.doc["name"] == "govjax-run-feed"
  status = {r["work_id"]: r["tier1"]["treatment"]["status"] for r in manifest.records}
  assert status == {"bach/bwv66.6": "included", "bach/bwv26.6": "included", "bach/bwv101.7": "not-trained",
                    EXCLUDED_WITH_CONTENT: "excluded", EXCLUDED_WITHOUT_CONTENT: "not-trained",
                    "canary/r2/0/copy0": "included", "canary/r2/0/copy1": "included"}
  assert all(mfst.has_fingerprint(r) for r in manifest.records)
  notes = mf.notes_from_score(music21.corpus.parse(EXCLUDED_WITH_CONTENT)).notes
  transposed = mf.NoteList(tuple(dataclasses.replace(n, pitch=n.pitch + 5) for n in notes), 4)
  result = lookup.lookup_fingerprint(lookup.ManifestIndex(manifest), "music",
                                     mf.fingerprint_notes(transposed, manifest.music_config))
  assert [(m.work_id, m.treatment["status"], m.record["opted_out"]) for m in result.matches] == [
      (EXCLUDED_WITH_CONTENT, "excluded", True)]
