"""A tiny trained run on random-token works, indexed once per test session (shared by the provenance tests)."""

from __future__ import annotations

import dataclasses

import pytest

from govjax.bench.provenance import synthetic_works_data
from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig

NUM_LAYERS = 1


@dataclasses.dataclass
class TinyRun:
  workdir: object
  data: object
  config: TrainConfig


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
  """8 works x 32 tokens, context 16 (stride 8), 1-layer width-16 transformer, 24 steps, checkpoints at 8/16/24;
  works alternate depth 3 (full) and 2, routed by the depth gate; indexed with ``govjax index --k 256`` (k small
  for speed)."""
  from govjax import cli
  from govjax.train.loop import train

  workdir = tmp_path_factory.mktemp("provenance-run")
  config = TrainConfig(name="provenance-test", model=ModelSpec(num_layers=NUM_LAYERS, width=16, num_heads=2,
                                                               context=16),
                       batch_size=8, num_steps=24, learning_rate=1e-2, warmup_steps=2, checkpoint_every=8,
                       max_to_keep=None, eval_every=1000, governance=GovernanceSpec(routing="depth"))
  data = synthetic_works_data(num_works=8, work_tokens=32, context=16, num_groups=NUM_LAYERS + 2, batch_size=8,
                              seed=0)
  train(config, workdir, data=data, progress=False)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr("govjax.train.data.build_training_data", lambda cfg: data)
    assert cli.main(["index", "--workdir", str(workdir), "--k", "256", "--microbatch", "8"]) == 0
  return TinyRun(workdir=workdir, data=data, config=config)
