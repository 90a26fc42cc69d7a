"""Tiny config for tests and smoke runs: seconds on 2 CPU cores.

Command:
  govjax prepare chorales --max-works 12
  govjax train --config experiments/configs/tiny.py --workdir runs/tiny

Runtime: under 30 seconds on 2 CPU cores (20 steps of batch 8 x 64 tokens).
Expected result: the training loss falls from ~4.3 (uniform over 72 tokens) to below 3; nothing more.
"""

from govjax.core.config import ModelSpec, TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      name="chorales-tiny",
      max_works=12,
      model=ModelSpec(num_layers=2, width=32, num_heads=2, context=64),
      batch_size=8,
      num_steps=20,
      learning_rate=1e-2,
      warmup_steps=2,
      window_stride=32,
      eval_every=10,
      eval_max_batches=2,
      checkpoint_every=10,
      max_to_keep=3,
  )
