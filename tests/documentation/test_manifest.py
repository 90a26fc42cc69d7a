"""Manifest: Croissant 1.1 required fields, validation catches missing ones, tier-1 normalisation, round trip."""

from __future__ import annotations

import copy
import json

import music21
import pytest

from govjax.documentation import manifest as mfst

WORKS = ("bach/bwv66.6", "bach/bwv10.7")


@pytest.fixture(scope="module")
def records():
  works = []
  for work_id in WORKS:
    path = music21.corpus.getWork(work_id)
    works.append({"work_id": work_id, "title": work_id.split("/")[1], "composer": "J. S. Bach",
                  "collection": "music21 corpus: bach", "source_path": f"{work_id}.mxl", "path": str(path),
                  "split": "train"})
  works.append({"work_id": "text/psalm", "modality": "text", "text": "The Lord is my shepherd, I shall not want.",
                "sha256": "a" * 64, "source_path": "psalm.txt"})
  rights = {"bach/bwv66.6": {"work_id": "bach/bwv66.6", "licence": "CC-PDM-1.0", "rightsholder": "",
                             "creators": ["J. S. Bach"], "attribution_text": "J. S. Bach, BWV 66.6"},
            "bach/bwv10.7": {"work_id": "bach/bwv10.7", "licence": "LicenseRef-publisher-terms",
                             "rightsholder": "Example Editions"}}
  treatments = {"bach/bwv66.6": {"action": "depth", "depth": 6, "reason": "permissive"},
                "bach/bwv10.7": {"include": False, "depth": 0, "rule": "opted-out", "reason": "TDM reservation"}}
  return mfst.build_records(works, rights=rights, treatments=treatments, num_groups=6)


@pytest.fixture()
def written(records, tmp_path):
  return mfst.write_manifest(tmp_path / "m", records, name="test-manifest", description="test",
                             url="urn:govjax:test", date_published="2025-01-01")


def test_records_have_tiers_1_to_3(records):
  by_id = {r["work_id"]: r for r in records}
  chorale = by_id["bach/bwv66.6"]
  assert chorale["modality"] == "music"
  assert chorale["tier1"]["treatment"] == {"status": "included", "depth": 6, "num_groups": 6, "region": None,
                                           "rule": None, "reason": "permissive", "label": "depth 6/6"}
  assert by_id["bach/bwv10.7"]["tier1"]["treatment"]["status"] == "excluded"
  assert by_id["bach/bwv10.7"]["tier1"]["treatment"]["label"] == "excluded (TDM reservation)"
  assert len(chorale["tier2"]["source_sha256"]) == 64 and len(chorale["tier2"]["content_sha256"]) == 64
  assert set(chorale["tier3"]) >= {"melody", "full", "melody_size", "full_size", "num_notes", "num_voices"}
  assert by_id["text/psalm"]["tier1"] == {"rights": None, "treatment": mfst.treatment_entry(None, num_groups=6)}


def test_croissant_has_required_fields_and_validates(written):
  doc = json.loads(written.croissant.read_text())
  assert mfst.validate_croissant(doc) == []
  assert doc["@type"] == "sc:Dataset" and doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
  for prop in ("@context", "name", "description", "license", "url", "creator", "datePublished", "version"):
    assert doc[prop], prop
  files = {d["@id"]: d for d in doc["distribution"]}
  assert files["records.jsonl"]["sha256"] == mfst.sha256_file(written.records)
  source = files["source/bach/bwv66.6"]
  assert source["encodingFormat"] == "application/vnd.recordare.musicxml"
  assert source["sha256"] == mfst.sha256_file(music21.corpus.getWork("bach/bwv66.6"))
  assert files["source/bach/bwv10.7"]["prov:wasAttributedTo"] == [{"@type": "prov:Agent",
                                                                   "prov:label": "Example Editions"}]
  assert {"rai:dataCollection", "rai:dataUseCases", "rai:personalSensitiveInformation",
          "rai:dataLimitations"} <= set(doc)
  assert doc["prov:wasDerivedFrom"] and doc["prov:wasAttributedTo"]
  licences = doc["license"]
  assert "https://spdx.org/licenses/CC-PDM-1.0.html" in licences
  assert {"@type": "sc:CreativeWork", "name": "LicenseRef-publisher-terms"} in licences
  fields = {f["@id"]: f for f in doc["recordSet"][0]["field"]}
  assert fields["works/treatment_status"]["source"]["extract"]["jsonPath"] == "$.tier1.treatment.status"


@pytest.mark.parametrize("prop", ["license", "conformsTo", "name", "datePublished", "distribution", "@context"])
def test_validation_reports_a_missing_required_property(written, prop):
  doc = json.loads(written.croissant.read_text())
  del doc[prop]
  problems = mfst.validate_croissant(doc)
  assert any(f"'{prop}'" in p for p in problems), problems


def test_validation_reports_broken_file_objects_and_references(written):
  doc = json.loads(written.croissant.read_text())
  broken = copy.deepcopy(doc)
  del broken["distribution"][0]["sha256"]
  broken["distribution"][1]["sha256"] = "not-a-hash"
  broken["recordSet"][0]["field"][0]["source"]["fileObject"]["@id"] = "missing.jsonl"
  broken["conformsTo"] = "http://mlcommons.org/croissant/1.0"
  problems = "\n".join(mfst.validate_croissant(broken))
  assert "distribution[0] (records.jsonl): missing required property 'sha256'" in problems
  assert "must be 64 lowercase hex digits" in problems
  assert "source fileObject 'missing.jsonl' is not defined" in problems
  assert "must include http://mlcommons.org/croissant/1.1" in problems


def test_manifest_round_trip_and_tamper_detection(records, written):
  loaded = mfst.load_manifest(written.croissant.parent)
  assert loaded.records == json.loads(json.dumps(records))
  assert loaded.music_config == mfst.FingerprintConfig()
  with open(written.records, "a") as f:
    f.write("\n")
  with pytest.raises(mfst.ManifestError, match="sha256 does not match"):
    mfst.load_manifest(written.croissant)


def test_treatment_entry_accepts_policy_outputs():
  from govjax.rights import decisions, policy, records

  recs = [records.parse_record({"work_id": "a", "licence": "CC0-1.0"}),
          records.parse_record({"work_id": "b", "licence": "MIT", "tdm_reservation": True})]
  rows = decisions.apply_policy(recs, policy.default_policy(), num_groups=6).rows()
  included, excluded = (mfst.treatment_entry(r, num_groups=6) for r in rows)
  assert (included["status"], included["depth"], included["label"]) == ("included", 6, "depth 6/6")
  assert (excluded["status"], excluded["depth"], excluded["rule"]) == ("excluded", 0, "opted-out")
  region = mfst.treatment_entry(policy.Treatment(action="region", region="sink", depth=2), num_groups=6)
  assert region["label"] == "region sink, depth 2/6"
  entry = mfst.rights_entry(recs[1])
  assert entry["opted_out"] is True and entry["opt_out_reasons"]
  with pytest.raises(mfst.ManifestError, match="status"):
    mfst.treatment_entry({"depth": 3})


def test_bad_works_are_reported_by_id():
  with pytest.raises(mfst.ManifestError, match="duplicate work ids"):
    mfst.build_records([{"work_id": "x", "text": "a"}, {"work_id": "x", "text": "b"}])
  with pytest.raises(mfst.ManifestError, match="'nothing'.*no music content"):
    mfst.build_records([{"work_id": "nothing", "modality": "music"}])
