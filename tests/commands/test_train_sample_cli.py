"""`govjax train` then `govjax sample` through the CLI on the tiny prepared dataset."""

import json

import music21
import numpy as np

from govjax.cli import main


def test_train_then_sample_writes_playable_midi_and_musicxml(prepared_data_dir, tmp_path, capsys):
  workdir = tmp_path / "run"
  code = main(["train", "--config", "experiments/configs/tiny.py", "--workdir", str(workdir),
               "--data-dir", str(prepared_data_dir), "--no-progress",
               "--set", "num_steps=4", "--set", "model.context=32", "--set", "checkpoint_every=4"])
  assert code == 0
  out = capsys.readouterr().out
  assert "validation NLL per token" in out
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2, 3, 4] and "val_nll" in rows[-1]

  midi = tmp_path / "samples" / "s.mid"
  assert main(["sample", "--workdir", str(workdir), "--out", str(midi), "--num", "2", "--frames", "8",
               "--prompt-frames", "2", "--musicxml"]) == 0
  for i in range(2):
    path = midi.with_name(f"s-{i}.mid")
    tokens = np.load(path.with_suffix(".npy"))
    assert tokens.shape == (32,)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["prompt_tokens"] == 8 and meta["prompt_work_id"].startswith("bach/")
    parsed = music21.converter.parse(str(path.with_suffix(".musicxml")))
    assert len(parsed.parts) == 4
    assert music21.converter.parse(str(path)).highestTime > 0
