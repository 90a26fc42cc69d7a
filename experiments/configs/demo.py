"""Demo config: a small chorale transformer trained for a few minutes on 2 CPU cores.

Command:
  govjax prepare chorales
  govjax train --config experiments/configs/demo.py --workdir runs/demo/vanilla

Runtime: about 3 minutes on 2 CPU cores (300 steps of batch 32 x 128 tokens, ~0.5 s/step).
Expected result: validation NLL around 0.6-0.8 nats per token (16th-note grid, most tokens are holds; a
uniform model scores log(72) = 4.28), sampled continuations that keep four voices in range.
"""

from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig(
      name="chorales-demo",
      model=ModelSpec(num_layers=4, width=128, num_heads=4, context=128),
      governance=GovernanceSpec(routing="none", scenario="real"),
      batch_size=32,
      num_steps=300,
      learning_rate=3e-3,
      warmup_steps=30,
      window_stride=64,
      eval_every=100,
      eval_max_batches=8,
      checkpoint_every=100,
      max_to_keep=5,
      seed=0,
  )
