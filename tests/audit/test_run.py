"""Auditing a run directory (checkpoint written from the shared tiny run) and the CLI command."""

import json

import numpy as np

from govjax.audit.run import audit_run, write_audit
from govjax.cli import main
from govjax.core.checkpoint import Checkpoints
from govjax.core.config import config_hash
from govjax.data.loader import Work, build_window_table
from govjax.rights.records import parse_record
from govjax.train.data import PlantedCanaries, TrainingData, WorkCatalogue
from tests.audit.memorize import CONTEXT, tiny_run


def _work(name, tokens):
  return Work(work_id=name, title=name, composer="c", collection="t", source_path=name + ".mxl",
              sha256="0" * 64, key="C major", tokens=tokens, length=tokens.size)


def _fake_data():
  run = tiny_run()
  works = [_work(f"train/{i}", w) for i, w in enumerate(run.fixed)]
  works.append(_work("train/pool", np.concatenate([run.pool[0], run.pool[1][:16]])))  # 2 windows, 1 padded
  heldout = [_work(f"held/{i}", w) for i, w in enumerate(run.heldout[:4])]
  records = {"train/0": parse_record({"work_id": "train/0", "licence": "CC-BY-NC-4.0"}),
             "train/1": parse_record({"work_id": "train/1", "licence": "CC0-1.0"})}
  for w in works[2:] + heldout:
    records[w.work_id] = parse_record({"work_id": w.work_id, "licence": "CC0-1.0"})
  del records["train/3"]
  catalogue = WorkCatalogue(
      works=works, heldout_works=heldout, records=records, context=CONTEXT, num_groups=4,
      per_work_depth=np.array([4, 4, 1, 4, 4], np.int32), per_work_region=np.array([0, 0, 1, 0, 0], np.int32),
      window_table=build_window_table(works, context=CONTEXT, stride=CONTEXT))
  return TrainingData(batches=None, catalogue=catalogue,
                      canaries=PlantedCanaries(tokens=run.fixed[:2], repetitions=np.array([60, 60])))


def _write_run(workdir):
  run = tiny_run()
  (workdir / "config.json").write_text(json.dumps({"config": run.config.to_dict(),
                                                   "config_hash": config_hash(run.config)}))
  with Checkpoints(workdir / "checkpoints", max_to_keep=2) as ckpts:
    ckpts.save(run.state._replace(extras={}), {"step": 60, "config_hash": config_hash(run.config)}, step=60)


def test_audit_run_per_work_split_and_licence(tmp_path):
  _write_run(tmp_path)
  data = _fake_data()
  result = audit_run(tmp_path, k=8, m=16, data=data)
  rows = {r["work_id"]: r for r in result.rows}
  assert [r["split"] for r in result.rows] == ["train"] * 5 + ["heldout"] * 4
  assert rows["train/0"]["licence"] == "CC-BY-NC-4.0" and rows["train/0"]["licence_class"] == "restrictive"
  assert rows["train/3"]["licence"] == "<no record>"
  assert rows["train/2"]["treatment"] == "region depth 1/4" and rows["held/0"]["treatment"] == "heldout"
  assert rows["train/pool"]["num_windows"] == 2 and rows["train/pool"]["num_skipped"] == 1
  assert rows["train/0"]["extraction_rate"] == 1.0 and rows["held/0"]["extraction_rate"] == 0.0
  summary = result.summary
  assert summary["step"] == 60 and summary["works_without_record"] == ["train/3"]
  assert summary["splits"]["heldout"]["extraction_rate"] == 0.0
  assert summary["splits"]["train"]["num_windows"] == 6 and summary["splits"]["train"]["num_skipped"] == 1
  assert summary["by_licence_class"]["restrictive"]["train"]["num_windows"] == 1
  assert summary["by_treatment"]["heldout"]["heldout"]["num_windows"] == 4
  assert summary["membership"]["num_members"] == 6 and summary["membership"]["auc"] > 0.7
  by_class = summary["membership_by_class"]
  assert by_class["works"] == summary["membership"]  # no canaries or structural works here: same comparison
  assert by_class["restrictive"]["num_members"] == 1 and by_class["restrictive"]["num_nonmembers"] == 4
  assert sum(v["num_members"] for k, v in by_class.items() if k != "works") == 6
  assert summary["exposure"]["by_repetitions"]["60"] > 5
  paths = write_audit(tmp_path, result)
  lines = open(paths["per_work_jsonl"]).read().splitlines()
  assert len(lines) == 9 and json.loads(lines[0])["work_id"] == "train/0"
  assert open(paths["per_work_csv"]).readline().startswith("work_id,split,licence")
  assert json.load(open(paths["summary"]))["k"] == 8


def test_audit_command(tmp_path, monkeypatch, capsys):
  _write_run(tmp_path)
  data = _fake_data()
  data.canaries = None
  monkeypatch.setattr("govjax.train.data.build_training_data", lambda config: data)
  assert main(["audit", "--workdir", str(tmp_path), "--k", "8", "--m", "16", "--json"]) == 0
  summary = json.loads(capsys.readouterr().out)
  assert summary["m"] == 16 and summary["exposure"] is None
  assert (tmp_path / "audit" / "per_work.csv").is_file() and (tmp_path / "audit" / "summary.json").is_file()
