import json
import shutil

import numpy as np

from govjax import cli
from govjax.provenance.lineage import build_lineage, work_entry
from govjax.provenance.query import Attribution
from govjax.rights.records import RightsRecord


def test_work_entry_uses_the_rights_record():
  record = RightsRecord(work_id="x/1", title="Song", creators=("A. Composer",), licence="CC-BY-SA-4.0",
                        attribution_text="Song by A. Composer, CC BY-SA 4.0")
  entry = work_entry({"work_id": "x/1"}, depth=2, record=record)
  assert entry["licence"] == "CC-BY-SA-4.0"
  assert entry["attribution"] == "Song by A. Composer, CC BY-SA 4.0"
  assert (entry["attribution_required"], entry["share_alike"], entry["depth"]) == ("yes", "yes", 2)


def test_build_lineage_duties():
  works = [work_entry({"work_id": "a", "title": "A"}, depth=3, licence="CC-BY-4.0"),
           work_entry({"work_id": "b", "title": "B"}, depth=1, licence="CC0-1.0"),
           work_entry({"work_id": "c", "title": "C"}, depth=1, licence="CC-BY-SA-4.0")]
  attribution = Attribution(example_scores=np.zeros(3), work_scores=np.array([3.0, 1.0, -2.0]),
                            aggregation="sum", proponents=np.array([0, 1, 2]), opponents=np.array([2, 1, 0]),
                            top_examples=np.array([0]))
  lineage = build_lineage(attribution, works, top=3, output={"file": "x.mid"})
  assert [w["work_id"] for w in lineage["works"]] == ["a", "b", "c"]
  assert [w["share"] for w in lineage["works"]] == [0.75, 0.25, 0.0]
  assert lineage["duties"]["attribution"] == ['"A" (CC-BY-4.0)']  # CC0 needs none, c has negative influence
  assert lineage["duties"]["share_alike_licences"] == []
  assert lineage["opponents"][0]["work_id"] == "c"
  json.dumps(lineage)


def test_trace_command_writes_sidecar(tiny_run, capsys):
  work = tiny_run.data.catalogue.works[3]
  output = tiny_run.workdir / "generated.npy"
  np.save(output, work["tokens"])
  assert cli.main(["trace", "--workdir", str(tiny_run.workdir), "--input", str(output), "--top", "3",
                   "--json"]) == 0
  printed = json.loads(capsys.readouterr().out)
  sidecar = json.loads((tiny_run.workdir / "generated.npy.lineage.json").read_text())
  copy = json.loads((tiny_run.workdir / "provenance" / "lineage" / "generated.json").read_text())
  assert printed == sidecar == copy
  assert sidecar["works"][0]["work_id"] == work["work_id"]
  assert sidecar["works"][0]["depth"] == int(tiny_run.data.catalogue.per_work_depth[3])
  assert sidecar["method"]["checkpoints"] == [8, 16, 24] and sidecar["method"]["k"] == 256
  assert len(sidecar["output"]["sha256"]) == 64


def test_index_preconditioning_options_reach_the_lineage(tiny_run, tmp_path, monkeypatch, capsys):
  # `govjax index --precondition update` indexes Adam steps against raw queries (TracIn-Adam); a bare
  # `--precondition` keeps its old meaning, both sides (TrackStar); the default is plain TracIn.
  default = tmp_path / "default"
  shutil.copytree(tiny_run.workdir, default)  # the fixture's run is shared: traces write beside it
  assert sidecar_method(default, tiny_run, capsys)["name"] == "TracIn-CP"
  monkeypatch.setattr("govjax.train.data.build_training_data", lambda cfg: tiny_run.data)
  for flags, name, query_precondition in ((["--precondition", "update"], "TracIn-Adam", False),
                                          (["--precondition"], "TracIn-CP, Adam-preconditioned both sides", True)):
    workdir = tmp_path / flags[-1].lstrip("-")
    shutil.copytree(tiny_run.workdir, workdir)
    assert cli.main(["index", "--workdir", str(workdir), "--k", "256", "--microbatch", "8", *flags]) == 0
    method = sidecar_method(workdir, tiny_run, capsys)
    assert (method["name"], method["precondition"], method["query_precondition"]) == (name, True, query_precondition)


def sidecar_method(workdir, tiny_run, capsys) -> dict:
  output = workdir / "generated-method.npy"
  np.save(output, tiny_run.data.catalogue.works[3]["tokens"])
  assert cli.main(["trace", "--workdir", str(workdir), "--input", str(output), "--top", "3", "--json"]) == 0
  capsys.readouterr()
  return json.loads((workdir / "generated-method.npy.lineage.json").read_text())["method"]
