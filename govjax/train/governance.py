"""Turns a config's governance section into the loss function and optimizer a train step uses.

Example:
  >>> from govjax.train.config import TrainConfig
  >>> components = governance_components(TrainConfig(), num_groups=6)
  >>> components.routing
  'none'
"""

from __future__ import annotations

import dataclasses

import optax

from govjax.train.config import TrainConfig
from govjax.train.step import LossFn, make_optimizer, plain_loss

ROUTING_MODES = ("none",)


@dataclasses.dataclass(frozen=True)
class GovernanceComponents:
  """The pieces of a governed train step.

  Attributes:
    routing: the routing mode.
    loss_fn: ``loss_fn(model, batch, group_mask, rng) -> (loss, aux)``.
    tx: the optimizer chain, called with ``group_mask=`` as an extra argument.
    plugins: step plugins (e.g. the memorization probe), see ``govjax.train.step.StepPlugin``.
  """

  routing: str
  loss_fn: LossFn
  tx: optax.GradientTransformationExtraArgs
  plugins: tuple = ()


def governance_components(config: TrainConfig, *, num_groups: int) -> GovernanceComponents:
  """Builds loss and optimizer for ``config.governance.routing``.

  Args:
    config: the training config.
    num_groups: the model's number of depth groups.

  Returns:
    :class:`GovernanceComponents`.
  """
  del num_groups
  routing = config.governance.routing
  if routing == "none":
    tx, _ = make_optimizer(config)
    return GovernanceComponents(routing, plain_loss, tx)
  raise ValueError(f"unknown governance.routing {routing!r}; expected one of {ROUTING_MODES}")
