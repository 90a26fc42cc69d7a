"""Tests for govjax.data.chorales (TFDS builder, array_record, no TensorFlow) and `govjax prepare`."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

import numpy as np
import pytest

from govjax import cli
from govjax.data import chorales, corpus, tokenizer


@pytest.fixture(scope="module")
def max_works(prepared_data_dir):
  """The size the shared fixture was prepared with (conftest's TINY_MAX_WORKS)."""
  return chorales.read_skip_report(prepared_data_dir).max_works


def _all_examples(data_dir):
  sources = {split: chorales.load_chorales(data_dir, split) for split in corpus.SPLITS}
  return {split: [source[i] for i in range(len(source))] for split, source in sources.items()}


def test_no_tensorflow_needed(prepared_data_dir):
  assert importlib.util.find_spec("tensorflow") is None
  chorales.load_chorales(prepared_data_dir, "train")[0]
  assert "tensorflow" not in sys.modules


def test_splits_are_by_work_disjoint_and_non_empty(prepared_data_dir, max_works):
  examples = _all_examples(prepared_data_dir)
  ids = {split: [ex["work_id"].decode() for ex in items] for split, items in examples.items()}
  assert {split: len(v) for split, v in ids.items()} == corpus.split_quotas(max_works)
  assert all(ids.values())
  assert sum(len(v) for v in ids.values()) == len(set().union(*ids.values())) == max_works
  for split, work_ids in ids.items():
    assert all(corpus.split_for_work(w) == split for w in work_ids)


def test_examples_carry_provenance_matching_the_source(prepared_data_dir):
  root = corpus.corpus_root()
  for items in _all_examples(prepared_data_dir).values():
    for ex in items:
      work_id = ex["work_id"].decode()
      source = root / ex["source_path"].decode()
      assert corpus.work_id_for(source, root) == work_id
      assert ex["sha256"].decode() == hashlib.sha256(source.read_bytes()).hexdigest()
      assert ex["composer"] == b"J. S. Bach" and ex["collection"] == b"music21 corpus: bach"
      assert ex["title"] and ex["key"].decode().split(" ")[1] in ("major", "minor")
      tokens = ex["tokens"]
      assert tokens.dtype == np.int32 and tokens.ndim == 1
      assert ex["length"] == tokens.size == 4 * ex["num_frames"]
      assert tokens.min() >= tokenizer.REST and tokens.max() < tokenizer.VOCAB_SIZE


def test_tokens_equal_a_fresh_encoding(prepared_data_dir):
  ex = chorales.load_chorales(prepared_data_dir, "test")[0]
  parsed = corpus.parse_work(corpus.corpus_root() / ex["source_path"].decode())
  np.testing.assert_array_equal(ex["tokens"], parsed.work.tokens)


def test_rerun_is_a_no_op(prepared_data_dir, max_works):
  dataset_dir = prepared_data_dir / chorales.BUILDER_NAME / f"spq4_max{max_works}" / "1.0.0"
  before = {p.name: p.stat().st_mtime_ns for p in dataset_dir.iterdir()}
  report = chorales.prepare_chorales(prepared_data_dir, max_works=max_works, progress=False)
  assert report.already_prepared and report.wall_time_s == 0
  assert "already prepared, nothing to do" in report.format()
  assert {p.name: p.stat().st_mtime_ns for p in dataset_dir.iterdir()} == before
  assert report.dataset_dir == os.fspath(dataset_dir)
  assert report.split_counts == corpus.split_quotas(max_works)
  assert report.kept == max_works and report.tokens_per_work["works"] == max_works


def test_skip_report_is_saved_next_to_the_data(prepared_data_dir, max_works):
  report = chorales.read_skip_report(prepared_data_dir)
  assert report.kept == max_works and report.max_works == max_works
  assert report.kept + len(report.skipped) == report.files_seen
  # The three Humdrum (.krn) copies of works also stored as .mxl are always reported.
  assert report.counts_by_reason()["duplicate encoding"] == 3


def test_tiny_works_fixture(tiny_works, max_works):
  assert len(tiny_works) == corpus.split_quotas(max_works)["train"]
  assert [w.work_id for w in tiny_works] == sorted(w.work_id for w in tiny_works)
  assert all(w.length == w.tokens.size for w in tiny_works)


def test_missing_data_tells_the_user_to_prepare(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(chorales.DataNotPreparedError) as info:
    chorales.load_chorales(missing, "train")
  assert f"govjax prepare chorales --data-dir {missing}" in str(info.value)
  with pytest.raises(chorales.DataNotPreparedError, match="govjax prepare chorales"):
    chorales.load_chorale_works(missing)
  with pytest.raises(FileNotFoundError):  # DataNotPreparedError is a FileNotFoundError
    chorales.read_skip_report(missing)


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv(chorales.DATA_DIR_ENV, str(tmp_path / "custom"))
  assert chorales.default_data_dir() == tmp_path / "custom"
  monkeypatch.delenv(chorales.DATA_DIR_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  assert chorales.default_data_dir() == tmp_path / "cache" / "govjax" / "data"


def test_config_names():
  assert chorales.config_name() == "spq4" and chorales.config_name(2, 12) == "spq2_max12"
  assert chorales.make_config() is chorales.make_config(4, None)  # the predefined default config
  config = chorales.config_from_name("spq8_max5")
  assert (config.steps_per_quarter, config.max_works) == (8, 5)
  with pytest.raises(ValueError):
    chorales.config_from_name("default")


def test_settings_do_not_collide(tmp_path):
  """Two grids prepared in one data dir live side by side; the same works, at different resolutions."""
  chorales.prepare_chorales(tmp_path, max_works=3, progress=False)
  chorales.prepare_chorales(tmp_path, steps_per_quarter=2, max_works=3, progress=False)
  assert chorales.prepared_configs(tmp_path) == ["spq2_max3", "spq4_max3"]
  with pytest.raises(ValueError, match="several"):
    chorales.load_chorales(tmp_path, "train")
  fine = chorales.load_chorale_works(tmp_path, "train", config_name="spq4_max3")
  coarse = chorales.load_chorale_works(tmp_path, "train", config_name="spq2_max3")
  assert [w.work_id for w in fine] == [w.work_id for w in coarse]
  assert fine[0].length == 2 * coarse[0].length


def _run_cli(argv):
  return cli.main(argv)


def test_prepare_command(prepared_data_dir, max_works, capsys):
  code = _run_cli(["prepare", "chorales", "--data-dir", str(prepared_data_dir), "--max-works",
                   str(max_works), "--no-progress"])
  out = capsys.readouterr().out
  assert code == 0
  assert "already prepared, nothing to do" in out
  quotas = corpus.split_quotas(max_works)
  assert f"splits: train {quotas['train']}, validation {quotas['validation']}, test {quotas['test']}" in out
  assert "skipped, duplicate encoding: 3" in out
  assert _run_cli(["prepare", "chorales", "--data-dir", str(prepared_data_dir), "--max-works", "2"]) == 2
  assert "max_works must be at least 3" in capsys.readouterr().err
