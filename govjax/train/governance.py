"""Turns a config's governance section into the loss function and optimizer a train step uses.

``config.governance.routing`` picks the routing (see :mod:`govjax.routing.loss` for the exact gradients):

- ``"none"``: vanilla training, the mask is only logged;
- ``"depth"``: in-model depth gate (exact for depth masks, nearly free);
- ``"per_group"``: per-group ``custom_vjp`` (exact for any mask);
- ``"exact"``: per-example gradients aggregated by the reference transform (slow; the check on the others);
- ``"region"``: rows with ``batch["region"] == 1`` train only the model's removable region (needs
  ``config.model.region_width > 0``).

``config.governance.normaliser`` (``"contributors"`` or ``"batch"``) divides each group's summed gradient by its
number of contributing rows or by the batch size; ``freeze_empty_groups`` wraps clip + AdamW so that groups with
no contributor in a step get no update and keep their moments. For ``"depth"``/``"per_group"`` the normaliser is a
transform in front of the optimizer; ``"exact"`` and ``"region"`` apply it inside the loss.

Example:
  >>> from govjax.core.config import TrainConfig
  >>> components = governance_components(TrainConfig(), num_groups=6)
  >>> components.routing
  'none'
  >>> import dataclasses
  >>> from govjax.core.config import GovernanceSpec
  >>> cfg = dataclasses.replace(TrainConfig(), governance=GovernanceSpec(routing="depth"))
  >>> governance_components(cfg, num_groups=6).routing
  'depth'
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import optax

from govjax.baselines.dpsgd import dpsgd_optimizer, make_dpsgd_train_step
from govjax.baselines.goldfish import goldfish_loss
from govjax.core.config import TrainConfig
from govjax.probe.monitor import make_probe_plugin
from govjax.routing.groups import transformer_group_rules
from govjax.routing.loss import make_routed_loss
from govjax.routing.transforms import NORMALISERS, freeze_groups_without_contributors, normalise_by_contributors
from govjax.train.step import LossFn, make_optimizer, make_train_step, plain_loss

ROUTING_MODES = ("none", "depth", "per_group", "exact", "region")
BASELINES = ("none", "goldfish", "dpsgd")


@dataclasses.dataclass(frozen=True)
class GovernanceComponents:
  """The pieces of a governed train step.

  Attributes:
    routing: the routing mode.
    loss_fn: ``loss_fn(model, batch, group_mask, rng) -> (loss, aux)``.
    tx: the optimizer chain, called with ``group_mask=`` as an extra argument.
    plugins: step plugins (e.g. the memorization probe), see ``govjax.train.step.StepPlugin``.
    make_step: builds the train step when it is not ``make_train_step`` (DP-SGD needs per-example gradients).
  """

  routing: str
  loss_fn: LossFn
  tx: optax.GradientTransformationExtraArgs
  plugins: tuple = ()
  make_step: Callable | None = None

  def train_step(self, graphdef):
    """The jitted train step for these components (``make_train_step`` unless a baseline brings its own)."""
    make = self.make_step or make_train_step
    return make(graphdef, self.tx, self.loss_fn, plugins=self.plugins)


def governance_components(config: TrainConfig, *, num_groups: int, microbatch: int = 8) -> GovernanceComponents:
  """Builds loss, optimizer, plugins and step for the config's governance, baseline and probe settings.

  ``governance.baseline`` replaces the loss (``"goldfish"``) or the step and optimizer (``"dpsgd"``); it combines
  with routing ``"none"`` only. ``probe.enabled`` adds the memorization probe as a step plugin.

  Args:
    config: the training config.
    num_groups: the model's number of depth groups (``config.model.num_layers + 2``).
    microbatch: rows per per-example chunk in ``"exact"`` mode and for DP-SGD.

  Returns:
    :class:`GovernanceComponents`.
  """
  spec = config.governance
  baseline = spec.baseline
  if baseline not in BASELINES:
    raise ValueError(f"unknown governance.baseline {baseline!r}; expected one of {BASELINES}")
  if baseline != "none" and spec.routing != "none":
    raise ValueError(f"governance.baseline={baseline!r} is an alternative to routing; use governance.routing="
                     f"'none' with it (got {spec.routing!r})")
  if baseline == "goldfish":

    tx, _ = make_optimizer(config)
    components = GovernanceComponents("none", goldfish_loss(spec.goldfish_k, spec.goldfish_h, config.seed), tx)
  elif baseline == "dpsgd":

    tx, _ = dpsgd_optimizer(config, l2_norm_clip=spec.dp_clip, noise_multiplier=spec.dp_noise)
    make = functools.partial(make_dpsgd_train_step, microbatch=microbatch, l2_norm_clip=spec.dp_clip)
    components = GovernanceComponents("none", plain_loss, tx, make_step=make)
  else:
    components = routing_components(config, num_groups=num_groups, microbatch=microbatch)
  if config.probe.enabled:

    components = dataclasses.replace(components, plugins=(make_probe_plugin(config.probe, num_groups),))
  return components


def routing_components(config: TrainConfig, *, num_groups: int, microbatch: int = 8) -> GovernanceComponents:
  """Builds loss and optimizer for ``config.governance.routing``.

  Args:
    config: the training config.
    num_groups: the model's number of depth groups (``config.model.num_layers + 2``).
    microbatch: rows per per-example chunk in ``"exact"`` mode.

  Returns:
    :class:`GovernanceComponents`.
  """
  spec = config.governance
  routing = spec.routing
  if routing not in ROUTING_MODES:
    raise ValueError(f"unknown governance.routing {routing!r}; expected one of {ROUTING_MODES}")
  if routing == "none":
    tx, _ = make_optimizer(config)
    return GovernanceComponents(routing, plain_loss, tx)
  if spec.normaliser not in NORMALISERS:
    raise ValueError(f"unknown governance.normaliser {spec.normaliser!r}; expected one of {NORMALISERS}")
  if num_groups != config.model.num_layers + 2:
    raise ValueError(f"num_groups={num_groups} does not match the transformer's {config.model.num_layers + 2} "
                     f"depth groups (model.num_layers={config.model.num_layers})")
  if routing == "region" and config.model.region_width <= 0:
    raise ValueError("governance.routing='region' needs model.region_width > 0 (the removable region's width)")
  rules = transformer_group_rules(config.model.num_layers)
  wrap = (lambda inner: freeze_groups_without_contributors(inner, rules)) if spec.freeze_empty_groups else None
  if routing in ("depth", "per_group"):
    before = (normalise_by_contributors(rules),) if spec.normaliser == "contributors" else ()
    loss_fn = make_routed_loss(routing)
  else:
    before = ()
    loss_fn = make_routed_loss(routing, normaliser=spec.normaliser, microbatch=microbatch, rules=rules)
  tx, _ = make_optimizer(config, before=before, wrap=wrap)
  return GovernanceComponents(routing, loss_fn, tx)
