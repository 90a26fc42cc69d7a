"""`govjax trace` validates its input, refuses long pieces at once, and never writes a lineage from broken scores."""

import dataclasses
import json
import time

import jax
import numpy as np
import pytest

from govjax import cli
from govjax.commands import trace as trace_command
from govjax.core.errors import UserError
from govjax.data import tokenizer
from govjax.provenance import runs
from govjax.provenance.lineage import build_lineage, work_entry, write_lineage
from govjax.provenance.query import (
    MAX_TRACE_TOKENS,
    Attribution,
    NonFiniteScoresError,
    TraceInputError,
    check_output_tokens,
)

VOCAB = 72  # the tiny run's vocabulary (synthetic works)


def refusal(argv, capsys) -> str:
  """The one-line message of a refused command (raised as a UserError, or printed by the CLI with a non-zero code)."""
  try:
    code = cli.main(argv)
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


@pytest.fixture(scope="module")
def tracer(tiny_run):
  return runs.load_tracer(tiny_run.workdir)


def lineage_files(workdir, output):
  """The lineage files a trace of ``output`` writes that exist: its sidecar and the run's copy."""
  paths = [output.with_name(output.name + ".lineage.json"), workdir / "provenance" / "lineage" / f"{output.stem}.json"]
  return [p for p in paths if p.exists()]


def midi_bytes(events: list[tuple[int, bytes]], ticks_per_quarter: int = 480) -> bytes:
  """A one-track MIDI file from ``(delta ticks, event bytes)`` pairs."""

  def varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
      out.append(0x80 | (value & 0x7F))
      value >>= 7
    return bytes(reversed(out))

  track = b"".join(varlen(delta) + event for delta, event in events) + b"\x00\xff\x2f\x00"
  return (b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
          + ticks_per_quarter.to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track)


@pytest.mark.parametrize(("tokens", "expected"), [
    (np.array([40, 36, 31, 72]), "token 72 at position 3 is outside the model's vocabulary 0..71"),
    (np.array([40, -1, 31, 24, 99, 2, 2, 2]), "token -1 at position 1 is outside the model's vocabulary 0..71 (2 such"),
    (np.array([40, 36, 31]), "3 tokens are not whole frames of 4 voices"),
    (np.array([[40, 36, 31], [2, 2, 2]]), "expected tokens of shape [T] or [frames, 4], got (2, 3)"),
    (np.zeros((2, 2, 4), np.int32), "expected tokens of shape [T] or [frames, 4]"),
    (np.array([40.0, 36.0, 31.0, 24.0]), "expected integer token ids, got dtype float64"),
    (np.array([True, False, True, True]), "expected integer token ids, got dtype bool"),
    (np.zeros(0, np.int32), "no tokens"),
    (np.array([40, 0, 0, 0, 0, 0, 0, 0]), "nothing to score: every predicted token is PAD"),
])
def test_invalid_outputs_are_refused_with_the_file_and_the_reason(tiny_run, tmp_path, capsys, tokens, expected):
  output = tmp_path / "bad.npy"
  np.save(output, tokens)
  message = refusal(["trace", "--workdir", str(tiny_run.workdir), "--input", str(output)], capsys)
  assert message.startswith(f"{output}: ") and expected in message
  assert lineage_files(tiny_run.workdir, output) == []


def test_unreadable_and_missing_inputs_are_user_errors(tiny_run, tmp_path, capsys):
  pickled = tmp_path / "obj.npy"
  np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
  assert "not a readable .npy token array" in refusal(
      ["trace", "--workdir", str(tiny_run.workdir), "--input", str(pickled)], capsys)
  garbage = tmp_path / "noise.mid"
  garbage.write_bytes(b"not a midi file at all")
  assert "not a readable MIDI file" in refusal(
      ["trace", "--workdir", str(tiny_run.workdir), "--input", str(garbage)], capsys)
  assert refusal(["trace", "--workdir", str(tiny_run.workdir), "--input", str(tmp_path / "none.mid")],
                 capsys).endswith("none.mid: no such file")
  np.save(tmp_path / "ok.npy", tiny_run.data.catalogue.works[0]["tokens"])
  assert "--top must be >= 1, got 0" in refusal(
      ["trace", "--workdir", str(tiny_run.workdir), "--input", str(tmp_path / "ok.npy"), "--top", "0"], capsys)


def test_frames_by_voices_array_traces_like_the_flat_one(tiny_run, tracer, tmp_path):
  tokens = tiny_run.data.catalogue.works[2]["tokens"]
  np.save(tmp_path / "flat.npy", tokens)
  np.save(tmp_path / "grid.npy", tokens.reshape(-1, 4))
  flat, grid = (trace_command.read_output_tokens(tmp_path / f"{name}.npy") for name in ("flat", "grid"))
  np.testing.assert_array_equal(grid, flat)
  scores = [tracer.trace_tokens(t, top=3).work_scores for t in (flat, grid)]
  np.testing.assert_array_equal(scores[0], scores[1])
  assert int(np.argmax(scores[0])) == 2


def test_corrupted_parameters_give_an_error_and_no_lineage(tiny_run, tmp_path, capsys, monkeypatch):
  original = runs._checkpoints

  def poisoned(run, steps):
    checkpoints = original(run, steps)
    checkpoints[1] = dataclasses.replace(checkpoints[1],
                                         params=jax.tree.map(lambda x: x * np.nan, checkpoints[1].params))
    return checkpoints

  monkeypatch.setattr(runs, "_checkpoints", poisoned)
  output = tmp_path / "poisoned.npy"
  np.save(output, tiny_run.data.catalogue.works[1]["tokens"])
  message = refusal(["trace", "--workdir", str(tiny_run.workdir), "--input", str(output)], capsys)
  assert message.startswith(f"{output}: ") and "NaN or infinite at checkpoint step(s) [16]" in message
  assert lineage_files(tiny_run.workdir, output) == [] and list(tmp_path.iterdir()) == [output]


def test_nan_scores_from_the_scorer_or_the_index_are_errors(tiny_run, tracer, monkeypatch):
  tokens = tiny_run.data.catalogue.works[0]["tokens"]
  assert tracer.trace_tokens(tokens, top=2).proponents[0] == 0
  features = np.array(tracer.index.features)
  features[0, 3, 0] = np.nan
  broken = runs.load_tracer(tiny_run.workdir, index=dataclasses.replace(tracer.index, features=features))
  with pytest.raises(NonFiniteScoresError, match=r"^x\.npy: 1 of \d+ influence scores are NaN or infinite"):
    broken.trace_tokens(tokens, source="x.npy")
  monkeypatch.setattr(tracer, "query_features",
                      lambda inputs: np.full((3, len(inputs["tokens"]), 256), np.nan, np.float32))
  with pytest.raises(NonFiniteScoresError, match=r"checkpoint step\(s\) \[8, 16, 24\]"):
    tracer.trace_tokens(tokens)


def test_a_lineage_is_only_built_and_written_from_finite_scores(tmp_path):
  works = [work_entry({"work_id": "a"}, depth=1, licence="CC-BY-4.0"),
           work_entry({"work_id": "b"}, depth=1, licence="CC0-1.0")]

  def attribution(work_scores, example_scores=(0.0,)):
    order = np.argsort(-np.asarray(work_scores), kind="stable")
    return Attribution(example_scores=np.asarray(example_scores), work_scores=np.asarray(work_scores),
                       aggregation="sum", proponents=order, opponents=order[::-1], top_examples=np.array([0]))

  with pytest.raises(NonFiniteScoresError, match="listed works have NaN or infinite influence scores"):
    build_lineage(attribution([np.nan, 1.0]), works, top=2)
  with pytest.raises(NonFiniteScoresError, match="1 of 2 example influence scores"):
    build_lineage(attribution([2.0, 1.0], example_scores=[1.0, np.inf]), works, top=2)
  with pytest.raises(TraceInputError, match="top must be an integer >= 1"):
    build_lineage(attribution([2.0, 1.0]), works, top=0)
  # "no attribution required" only when valid scores say so, and the lineage says why.
  required = build_lineage(attribution([2.0, 1.0]), works, top=2)["duties"]
  assert required["attribution_required"] and required["basis"].startswith("1 of the 2 listed work(s)")
  cc0_only = build_lineage(attribution([-2.0, 1.0]), works, top=2)["duties"]
  assert not cc0_only["attribution_required"] and cc0_only["attribution_text"] == ""
  assert cc0_only["basis"] == "none of the 1 listed work(s) with positive influence requires attribution"
  negative = build_lineage(attribution([-2.0, -1.0]), works, top=2)["duties"]
  assert negative["basis"] == "no training work has positive influence on this output"
  lineage = build_lineage(attribution([2.0, 1.0]), works, top=2)
  lineage["works"][0]["score"] = float("nan")
  with pytest.raises(NonFiniteScoresError, match="nothing written"):
    write_lineage(lineage, output_file=tmp_path / "x.mid", workdir=tmp_path, name="x")
  assert list(tmp_path.iterdir()) == []


def test_a_5000_measure_piece_is_refused_in_seconds(tiny_run, tmp_path, capsys, monkeypatch):
  frames = 5000 * 16  # 4/4 measures on the 16th-note grid
  grid = np.full((frames, 4), tokenizer.HOLD, np.int32)
  grid[::4] = 40
  output = tmp_path / "long.npy"
  np.save(output, grid.reshape(-1))
  start = time.perf_counter()
  message = refusal(["trace", "--workdir", str(tiny_run.workdir), "--input", str(output)], capsys)
  assert time.perf_counter() - start < 60  # loose: loading the tracer included; scoring would take minutes
  assert f"320000 tokens (80000 frames) is more than the {MAX_TRACE_TOKENS} a trace scores" in message
  assert lineage_files(tiny_run.workdir, output) == []
  # The same piece as MIDI: refused from its note events, before music21 parses it.
  midi = tmp_path / "long.mid"
  midi.write_bytes(midi_bytes([(0, b"\x90\x3c\x40"), (frames // 4 * 480, b"\x80\x3c\x00")]))
  monkeypatch.setattr(trace_command.music21.converter, "parse", lambda *a, **k: pytest.fail("parsed"))
  start = time.perf_counter()
  with pytest.raises(TraceInputError, match=r"long\.mid: 20000 quarter notes \(80000 frames\) is more than the "
                                            r"4096 frames"):
    trace_command.read_output_tokens(midi)
  assert time.perf_counter() - start < 5
  monkeypatch.setattr(trace_command, "MAX_SCORE_BYTES", 100)
  big = tmp_path / "big.musicxml"
  big.write_text("<score-partwise>" + " " * 200 + "</score-partwise>")
  with pytest.raises(TraceInputError, match=r"big\.musicxml: 233 bytes is more than the 100"):
    trace_command.read_output_tokens(big)
  monkeypatch.setattr(trace_command, "MAX_MIDI_BYTES", 20)
  with pytest.raises(TraceInputError, match=r"long\.mid: 37 bytes is more than the 20"):
    trace_command.read_output_tokens(midi)


def test_the_length_bound_is_exact_and_can_be_set(tiny_run, tracer):
  tokens = tiny_run.data.catalogue.works[4]["tokens"]  # 32 tokens, 2 windows of 16
  assert tracer.trace_tokens(tokens, max_tokens=32).example_scores.shape == (tracer.index.num_examples,)
  with pytest.raises(TraceInputError, match=r"32 tokens \(8 frames\) is more than the 28 a trace scores"):
    tracer.trace_tokens(tokens, max_tokens=28)
  assert check_output_tokens(np.ones(MAX_TRACE_TOKENS, np.int32), vocab_size=VOCAB).size == MAX_TRACE_TOKENS
  with pytest.raises(TraceInputError, match="trace it in parts"):
    check_output_tokens(np.ones(MAX_TRACE_TOKENS + 4, np.int32), vocab_size=VOCAB)


def test_a_valid_midi_output_traces(tiny_run, tmp_path, capsys):
  tokens = tiny_run.data.catalogue.works[5]["tokens"]
  midi = tokenizer.write_midi(tokenizer.decode_tokens(tokens), tmp_path / "piece.mid")
  assert cli.main(["trace", "--workdir", str(tiny_run.workdir), "--input", str(midi), "--top", "2"]) == 0
  printed = capsys.readouterr().out
  assert "attribution: " in printed and len(lineage_files(tiny_run.workdir, midi)) == 2
  lineage = json.loads((tmp_path / "piece.mid.lineage.json").read_text())
  assert lineage["output"]["num_tokens"] % 4 == 0 and lineage["output"]["context"] == 16
  assert trace_command.midi_end_quarters(midi) * 4 == lineage["output"]["num_frames"]  # 4 steps a quarter


def test_midi_length_scan_reads_meta_events_and_running_status(tmp_path):
  path = tmp_path / "x.mid"
  path.write_bytes(midi_bytes([(0, b"\xff\x51\x03\x07\xa1\x20"), (0, b"\xf0\x02\x7e\xf7"), (0, b"\x90\x3c\x40"),
                               (0, b"\x40\x40"), (960, b"\x3c\x00"), (240, b"\x40\x00"), (480, b"\xb0\x07\x64")]))
  assert trace_command.midi_end_quarters(path) == 2.5  # the last note event at 1200 ticks of 480 a quarter
  path.write_bytes(midi_bytes([(0, b"\x90\x3c\x40"), (480, b"\x80\x3c\x00")])[:-8])  # truncated track
  assert trace_command.midi_end_quarters(path) == 0.0  # what is there: a lower bound
