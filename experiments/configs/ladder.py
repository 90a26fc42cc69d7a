"""Size ladder: the demo transformer up to ~1B parameters, to know what fits where before renting devices.

Each rung is a :class:`~govjax.core.config.TrainConfig` (the governed "per_group" router, contributor
normaliser, the memorization probe on); the parameter count of each is computed from the model's abstract
initialisation (``jax.eval_shape``: nothing is allocated) and must fall in the rung's stated range (tested in
``tests/bench/test_scaling.py``). Rungs from ``100m`` up compute in bfloat16 with float32 master weights and
rematerialise each block.

Command:
  govjax bench scaling --json          # per-device bytes of every rung: replicated vs fsdp on 1, 2, 4 devices
  govjax train --config experiments/configs/ladder.py --workdir runs/ladder-demo   # the "demo" rung

Runtime: planning is abstract (seconds for every rung). Training the demo rung is demo.py's run (~3 minutes on
2 CPU cores); the larger rungs need an accelerator (no figure for one yet).
Expected result: ``num_params`` of each rung inside ``LADDER[name].params_range``; under fsdp the per-device bytes
of parameters, optimizer state and probe state fall as 1/N with N devices (up to the small replicated leaves).

Example:
  >>> rung = LADDER["1b"]
  >>> rung.params_range
  (900000000, 1200000000)
  >>> get_config("100m").model.precision
  'bfloat16'
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from govjax.core.config import GovernanceSpec, ModelSpec, ProbeSpec, TrainConfig
from govjax.train.sharding import abstract_train_state

VOCAB_SIZE = 72  # the chorale tokenizer's vocabulary (a bigger vocabulary adds 2 * vocab * width parameters)


class Rung(NamedTuple):
  """One size of the ladder: the model shape and the range its parameter count must fall in."""

  model: ModelSpec
  params_range: tuple[int, int]
  batch_size: int


LADDER: dict[str, Rung] = {
    "demo": Rung(ModelSpec(num_layers=4, width=128, num_heads=4, context=128), (500_000, 1_500_000), 32),
    "10m": Rung(ModelSpec(num_layers=6, width=384, num_heads=6, context=256), (8_000_000, 13_000_000), 32),
    "100m": Rung(ModelSpec(num_layers=14, width=768, num_heads=12, context=1024, precision="bfloat16", remat=True),
                 (80_000_000, 120_000_000), 64),
    "300m": Rung(ModelSpec(num_layers=24, width=1024, num_heads=16, context=1024, precision="bfloat16", remat=True),
                 (250_000_000, 350_000_000), 64),
    "1b": Rung(ModelSpec(num_layers=36, width=1536, num_heads=24, context=1024, precision="bfloat16", remat=True),
               (900_000_000, 1_200_000_000), 128),
}


def get_config(size: str = "demo") -> TrainConfig:
  """The training config of one rung.

  Args:
    size: a key of :data:`LADDER`.

  Returns:
    The config (chorales data, per-group routing with the contributor normaliser, the probe on).
  """
  if size not in LADDER:
    raise ValueError(f"unknown ladder size {size!r}; one of {sorted(LADDER)}")
  rung = LADDER[size]
  return TrainConfig(
      name=f"ladder-{size}",
      model=rung.model,
      governance=GovernanceSpec(routing="per_group", normaliser="contributors", scenario="default"),
      probe=ProbeSpec(enabled=True),
      batch_size=rung.batch_size,
      num_steps=300,
      learning_rate=3e-3 if size == "demo" else 3e-4,
      warmup_steps=30,
      seed=0,
  )


def num_params(config: TrainConfig, *, vocab_size: int = VOCAB_SIZE) -> int:
  """Parameters of the config's model, counted from abstract shapes (no memory allocated)."""
  config = dataclasses.replace(config, probe=ProbeSpec())
  params = abstract_train_state(config, vocab_size=vocab_size).params
  return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(params)))
