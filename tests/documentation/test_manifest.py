"""Manifest: Croissant 1.1 accepted and read by mlcroissant, govjax's own checks, tier-1 normalisation, round trip."""

from __future__ import annotations

import copy
import json

import mlcroissant
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
  assert fields["works/treatment_status"]["source"] == {"fileObject": {"@id": "records.jsonl"},
                                                        "extract": {"column": "tier1"},
                                                        "transform": {"jsonPath": "$.treatment.status"}}


def _mlcroissant_issues(doc_or_path):
  """``(errors, warnings)`` of mlcroissant loading a document (a ValidationError's message counts as errors)."""
  try:
    dataset = mlcroissant.Dataset(jsonld=doc_or_path)
  except mlcroissant.ValidationError as error:
    return [str(error)], []
  return sorted(dataset.metadata.ctx.issues.errors), sorted(dataset.metadata.ctx.issues.warnings)


def test_mlcroissant_accepts_the_export_and_reads_its_records(written, records):
  assert _mlcroissant_issues(str(written.croissant)) == ([], [])
  dataset = mlcroissant.Dataset(jsonld=str(written.croissant))
  assert dataset.metadata.ctx.is_v1_1()
  rows = {r["works/work_id"].decode(): r for r in dataset.records("works")}
  assert sorted(rows) == sorted(r["work_id"] for r in records)
  chorale, excluded, text = rows["bach/bwv66.6"], rows["bach/bwv10.7"], rows["text/psalm"]
  assert (chorale["works/licence"], chorale["works/treatment_status"], chorale["works/treatment_depth"]) == (
      b"CC-PDM-1.0", b"included", 6)
  assert (excluded["works/treatment_status"], excluded["works/treatment_depth"]) == (b"excluded", 0)
  by_id = {r["work_id"]: r for r in records}
  assert chorale["works/fingerprint_full"].decode() == by_id["bach/bwv66.6"]["tier3"]["full"]
  assert chorale["works/content_sha256"].decode() == by_id["bach/bwv66.6"]["tier2"]["content_sha256"]
  assert text["works/fingerprint_text"].decode() == by_id["text/psalm"]["tier3"]["signature"]
  assert text["works/licence"] is None and text["works/fingerprint_full"] is None


def test_mlcroissant_rejects_what_govjax_no_longer_checks_itself(written):
  doc = json.loads(written.croissant.read_text())
  for edit, message in [
      (lambda d: d.pop("@context"), "doesn't extend https://schema.org/Dataset"),
      (lambda d: d["@context"].update({"@vocab": "http://schema.org/", "sc": "http://schema.org/"}),
       "doesn't extend https://schema.org/Dataset"),  # what the export used to write
      (lambda d: d.update({"@type": "sc:Thing"}), "doesn't extend https://schema.org/Dataset"),
      (lambda d: d["recordSet"][0]["field"][0]["source"]["fileObject"].update({"@id": "missing.jsonl"}),
       'reference to node with UUID "missing.jsonl"'),
      (lambda d: d["recordSet"][0]["field"][0].pop("dataType"), "does not specify a valid"),
      (lambda d: d.update({"datePublished": "yesterday"}), "ISO 8601"),
  ]:
    broken = copy.deepcopy(doc)
    edit(broken)
    assert mfst.validate_croissant(broken) == []
    errors, _ = _mlcroissant_issues(broken)
    assert any(message in e for e in errors), (message, errors)


@pytest.mark.parametrize("prop", ["license", "conformsTo", "name", "description", "url", "creator", "datePublished",
                                  "distribution"])
def test_validation_reports_a_missing_required_property(written, prop):
  doc = json.loads(written.croissant.read_text())
  del doc[prop]
  problems = mfst.validate_croissant(doc)
  assert any(f"'{prop}'" in p for p in problems), problems


def test_validation_reports_broken_file_objects_and_keys(written):
  doc = json.loads(written.croissant.read_text())
  broken = copy.deepcopy(doc)
  del broken["distribution"][0]["sha256"]
  broken["distribution"][1]["sha256"] = "not-a-hash"
  broken["distribution"].append(copy.deepcopy(broken["distribution"][2]))
  broken["recordSet"][0]["key"] = {"@id": "works/nope"}
  broken["conformsTo"] = "http://mlcommons.org/croissant/1.0"
  problems = mfst.validate_croissant(broken)
  assert problems == [
      "dataset: 'conformsTo' is ['http://mlcommons.org/croissant/1.0'], must include "
      "http://mlcommons.org/croissant/1.1",
      "distribution[0] (records.jsonl): missing required property 'sha256'",
      "distribution[1] (source/bach/bwv66.6): 'sha256' must be 64 lowercase hex digits, got 'not-a-hash'",
      f"distribution[{len(broken['distribution']) - 1}] ({broken['distribution'][2]['@id']}): duplicate '@id' "
      f"{broken['distribution'][2]['@id']!r}",
      "recordSet[0]: key 'works/nope' is not one of its fields",
  ]
  with pytest.raises(mfst.ManifestError, match="missing required property 'sha256'"):
    mfst.write_manifest(written.croissant.parent / "again", [], name="x", description="x", url="urn:x",
                        extra_files=[{"@type": "cr:FileObject", "@id": "x.json", "contentUrl": "x.json"}])


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
