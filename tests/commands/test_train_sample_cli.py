"""`govjax train` then `govjax sample` through the CLI on the tiny prepared dataset; invalid sample requests."""

import json

import music21
import numpy as np
import pytest

from govjax.cli import main
from govjax.core.errors import UserError


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

  # Past the model's context (32 tokens = 8 frames): a sliding window gives every requested frame.
  long = tmp_path / "samples" / "long.mid"
  assert main(["sample", "--workdir", str(workdir), "--out", str(long), "--frames", "20", "--prompt-frames", "2",
               "--seed", "3"]) == 0
  tokens = np.load(long.with_suffix(".npy"))
  assert tokens.shape == (80,) and tokens.min() >= 0 and tokens.max() < 72
  meta = json.loads(long.with_suffix(".json").read_text())
  assert (meta["num_frames"], meta["context"], meta["sliding_window"]) == (20, 32, True)
  assert music21.converter.parse(str(long)).highestTime > 0


def refusal(argv, capsys) -> str:
  """The one-line message of a refused command (raised as a UserError, or printed by the CLI with a non-zero code)."""
  try:
    code = main(argv)
  except UserError as error:
    message = str(error)
  else:
    assert code != 0
    printed = capsys.readouterr().err.strip()
    prefix = f"govjax {argv[0]}: error: "
    assert printed.startswith(prefix) and "\n" not in printed
    message = printed[len(prefix):]
  assert message and "\n" not in message
  return message


@pytest.mark.parametrize(("extra", "expected"), [
    (["--out", "{dir}/s.json"], "the sample and its .json sidecar would both be"),
    (["--out", "{dir}/s.npy", "--num", "2"], "its .npy sidecar would both be"),
    (["--out", "{dir}/s.musicxml", "--musicxml"], "its .musicxml sidecar would both be"),
    (["--num", "0"], "num_samples (--num) must be an integer >= 1, got 0"),
    (["--temperature", "-1"], "temperature must be a finite number >= 0 (0 = greedy), got -1.0"),
    (["--temperature", "nan"], "temperature must be a finite number >= 0"),
    (["--frames", "2", "--prompt-frames", "4"], "num_frames (--frames) must exceed the prompt's 4 frame(s)"),
])
def test_invalid_sample_requests_are_refused_before_the_run_is_read(tmp_path, capsys, extra, expected):
  extra = [arg.format(dir=tmp_path) for arg in extra]
  argv = ["sample", "--workdir", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "s.mid"), *extra]
  assert expected in refusal(argv, capsys)
  assert list(tmp_path.iterdir()) == []
