import json

import jax
import numpy as np
import pytest

from govjax.core.config import ModelSpec, TrainConfig
from govjax.data.tokenizer import PAD
from govjax.probe.monitor import ProbeSpec, make_probe_plugin
from govjax.probe.reference import ngram_root_surprisal
from govjax.train.data import build_training_data
from govjax.train.loop import attach_references, train
from tests.train.synthetic import synthetic_data
from tests.train.test_data import tiny_config as data_config


def tiny_config(**kw):
  base = dict(model=ModelSpec(num_layers=2, width=32, num_heads=2, context=16), batch_size=8, num_steps=8,
              learning_rate=1e-2, warmup_steps=2, eval_every=4, checkpoint_every=2, max_to_keep=3, seed=3)
  base.update(kw)
  return TrainConfig(**base)


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves((state.params, state.opt_state))]


def test_resume_is_bitwise_identical(tmp_path):
  config = tiny_config()
  straight = train(config, tmp_path / "straight", data=synthetic_data(), progress=False)
  first = train(config, tmp_path / "resumed", data=synthetic_data(), stop_at=4, progress=False)
  assert int(first.state.step) == 4
  resumed = train(config, tmp_path / "resumed", data=synthetic_data(), progress=False)
  assert resumed.steps_run == 4 and int(resumed.state.step) == 8
  for a, b in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(a, b)
  # The metrics of the resumed half equal those of the straight run.
  rows = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
  assert [r["loss"] for r in rows("straight")] == [r["loss"] for r in rows("resumed")]


def test_tiny_model_converges_on_tiny_data(tmp_path):
  config = tiny_config(num_steps=150, eval_every=150, checkpoint_every=150)
  result = train(config, tmp_path / "run", data=synthetic_data(), progress=False)
  losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert losses[0] > 2.0
  # Each window repeats a 4-token motif: after the first period the continuation is fully predictable.
  assert result.val_nll < 0.5 * losses[0]
  assert np.mean(losses[-10:]) < 0.6


def test_other_config_in_workdir_is_refused(tmp_path):
  train(tiny_config(num_steps=2), tmp_path / "run", data=synthetic_data(), progress=False)
  with pytest.raises(ValueError, match="another config"):
    train(tiny_config(num_steps=2, seed=4), tmp_path / "run", data=synthetic_data(), progress=False)


def test_checkpoint_meta_records_step_lr_and_hash(tmp_path):
  from govjax.core.checkpoint import Checkpoints
  from govjax.core.config import config_hash

  config = tiny_config(num_steps=4)
  train(config, tmp_path / "run", data=synthetic_data(), progress=False)
  with Checkpoints(tmp_path / "run" / "checkpoints", max_to_keep=None) as ckpts:
    assert ckpts.all_steps() == [2, 4]
    meta = ckpts.meta(4)
  assert meta["step"] == 4 and meta["config_hash"] == config_hash(config) and meta["learning_rate"] > 0


def test_restore_model_of_a_run_with_plugin_state(tmp_path):
  import dataclasses

  from govjax.core.config import GovernanceSpec
  from govjax.probe.monitor import ProbeSpec
  from govjax.train.loop import restore_model

  config = dataclasses.replace(tiny_config(num_steps=4, checkpoint_every=2),
                               governance=GovernanceSpec(routing="depth"),
                               probe=ProbeSpec(enabled=True, calibrate_every=2))
  result = train(config, tmp_path / "run", data=synthetic_data(), progress=False)
  assert "probe" in result.state.extras
  model, restored_config, meta = restore_model(tmp_path / "run")
  assert meta["step"] == 4 and restored_config == config
  from flax import nnx

  for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(nnx.state(model)), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_probe_gets_the_ngram_reference_of_the_training_windows(prepared_data_dir):
  data = build_training_data(data_config(prepared_data_dir))
  plugin = make_probe_plugin(ProbeSpec(enabled=True, reference_order=3), num_groups=data.batches.num_groups)
  extras = attach_references((plugin,), {"probe": plugin.init(data.batches.num_examples)}, data)
  windows = data.catalogue.all_window_tokens()
  assert windows.shape == (data.batches.num_examples, data.catalogue.context)
  np.testing.assert_array_equal(windows[5], data.catalogue.window_tokens(5))
  want = ngram_root_surprisal(windows, data.catalogue.window_table.work_index, vocab_size=data.batches.vocab_size,
                              order=3, valid=windows != PAD)
  got = np.asarray(extras["probe"].difficulty)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert np.isfinite(got).all()
  assert attach_references((plugin,), {"probe": "untouched"}, synthetic_data()) == {"probe": "untouched"}
  default = make_probe_plugin(ProbeSpec(enabled=True), num_groups=data.batches.num_groups)  # off by default
  assert attach_references((default,), {"probe": "untouched"}, data) == {"probe": "untouched"}
