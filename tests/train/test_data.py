"""The training data pipeline on the tiny prepared chorale dataset: policy, exclusion, masks, end to end."""

import dataclasses

import jax
import numpy as np
import pytest

from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig
from govjax.data.scenario import resolve_records
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.rights.records import save_records
from govjax.routing.groups import resolve_group_ids, transformer_group_rules
from govjax.train.data import build_training_data, load_works
from govjax.train.governance import governance_components
from govjax.train.loop import train
from govjax.train.step import create_train_state


def tiny_config(data_dir, **governance):
  return TrainConfig(
      data_dir=str(data_dir), max_works=12, model=ModelSpec(num_layers=1, width=16, num_heads=2, context=32),
      governance=GovernanceSpec(**governance), batch_size=4, num_steps=6, learning_rate=1e-2, warmup_steps=1,
      window_stride=32, eval_every=6, eval_max_batches=1, checkpoint_every=6, seed=1)


@pytest.fixture(scope="module")
def scenario_file(prepared_data_dir, tmp_path_factory):
  """The default (simulated) scenario for the tiny dataset, frozen into a file so subsets share records."""
  works = load_works(tiny_config(prepared_data_dir))
  every = [w for split in ("train", "validation", "test") for w in works[split]]
  path = tmp_path_factory.mktemp("scenario") / "records.jsonl"
  save_records(resolve_records("default", every, seed=0), path)
  return path


def test_real_scenario_keeps_every_work_at_full_depth(prepared_data_dir):
  data = build_training_data(tiny_config(prepared_data_dir, routing="depth"))
  assert len(data.catalogue.works) == 10 and data.catalogue.report["train_works_excluded"] == 0
  assert (data.catalogue.per_work_depth == data.catalogue.num_groups).all()
  batch = data.batches.train[0]
  assert batch["tokens"].shape == (4, 32) and batch["region"].shape == (4,)
  assert data.batches.group_mask(batch).shape == (4, 3)
  assert len(data.catalogue.heldout_works) == 1 and data.batches.validation is not None
  assert set(data.catalogue.records) >= {w.work_id for w in data.catalogue.works}


def test_default_scenario_excludes_opted_out_and_reports_them(prepared_data_dir, scenario_file):
  data = build_training_data(tiny_config(prepared_data_dir, routing="depth", scenario=str(scenario_file)))
  excluded = data.catalogue.report["exclusion"]["excluded"]
  assert excluded, "the default scenario must opt some of 10 works out"
  excluded_ids = {e["work_id"] for e in excluded}
  assert excluded_ids.isdisjoint(w.work_id for w in data.catalogue.works)
  assert len(data.catalogue.works) + len(excluded_ids) == 10
  assert all(data.catalogue.treatments[w]["action"] == "exclude" for w in excluded_ids)
  # Restricted works train only the surface: depth 1 of 3 groups; the mask follows the work.
  assert set(data.catalogue.per_work_depth.tolist()) <= {1, data.catalogue.num_groups}
  batch = data.batches.train[3]
  mask = data.batches.group_mask(batch)
  np.testing.assert_array_equal(mask.sum(axis=1), data.catalogue.per_work_depth[batch["work_index"]])
  # Vanilla routing ignores depths but still applies the policy's exclusions.
  vanilla = build_training_data(tiny_config(prepared_data_dir, scenario=str(scenario_file)))
  assert (vanilla.catalogue.per_work_depth == vanilla.catalogue.num_groups).all()
  assert len(vanilla.catalogue.works) == len(data.catalogue.works)


def test_input_surface_counts_depth_from_the_embeddings(prepared_data_dir, scenario_file, tmp_path):
  config = tiny_config(prepared_data_dir, routing="per_group", surface="input", scenario=str(scenario_file))
  data = build_training_data(config)
  g = data.catalogue.num_groups
  restricted = np.flatnonzero(data.catalogue.per_work_depth < g)
  assert restricted.size, "the default scenario must restrict some of the 10 works"
  for step in range(8):
    batch = data.batches.train[step]
    mask = data.batches.group_mask(batch)
    depth = data.catalogue.per_work_depth[batch["work_index"]]
    np.testing.assert_array_equal(mask, (np.arange(g)[None] < depth[:, None]).astype(np.float32))
  # Only restricted works (depth 1) in training, groups without contributors frozen: after two steps the
  # embeddings (group 0) have moved and every other group is exactly its initial value.
  frozen = dataclasses.replace(config, num_steps=2, eval_every=2, checkpoint_every=2,
                               governance=dataclasses.replace(config.governance, freeze_empty_groups=True))
  only = [w for i, w in enumerate(data.catalogue.works) if data.catalogue.per_work_depth[i] < g]
  one = build_training_data(frozen, works=dict(load_works(frozen), train=only))
  assert (one.catalogue.per_work_depth == 1).all()
  _, initial, _, _ = create_train_state(frozen, vocab_size=VOCAB_SIZE, tx=governance_components(frozen).tx)
  trained = train(frozen, tmp_path / "run", data=one, progress=False).state.params
  ids = resolve_group_ids(transformer_group_rules(frozen.model.num_layers), initial.params)
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), initial.params, trained)
  by_group = {}
  for group, changed in zip(jax.tree.leaves(ids), jax.tree.leaves(moved), strict=True):
    by_group.setdefault(group, []).append(changed)
  assert any(by_group[0]) and not any(any(v) for k, v in by_group.items() if k > 0), by_group


def test_training_with_opted_out_works_present_equals_training_without_them(
    prepared_data_dir, scenario_file, tmp_path):
  config = tiny_config(prepared_data_dir, scenario=str(scenario_file))
  works = load_works(config)
  with_them = build_training_data(config, works=works)
  kept = {w.work_id for w in with_them.catalogue.works}
  without = dict(works, train=[w for w in works["train"] if w.work_id in kept])
  assert len(without["train"]) < len(works["train"])
  a = train(config, tmp_path / "a", data=with_them, progress=False)
  b = train(config, tmp_path / "b", data=build_training_data(config, works=without), progress=False)
  for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert a.val_nll == b.val_nll


def test_missing_data_dir_says_to_prepare(tmp_path):
  from govjax.data.chorales import DataNotPreparedError

  with pytest.raises(DataNotPreparedError, match="govjax prepare chorales"):
    build_training_data(dataclasses.replace(tiny_config(tmp_path / "nothing")))


def test_policy_excluding_everything_is_an_error(prepared_data_dir, tmp_path):
  policy = tmp_path / "policy.json"
  policy.write_text('{"name": "none", "rules": [{"name": "all", "when": {}, '
                    '"treatment": {"action": "exclude", "reason": "test"}}]}')
  with pytest.raises(ValueError, match="excluded every training work"):
    build_training_data(tiny_config(prepared_data_dir, policy=str(policy)))
