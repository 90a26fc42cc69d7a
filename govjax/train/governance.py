"""Turns a config's governance section into the loss function and optimizer a train step uses.

``config.governance.routing`` picks the routing (see :mod:`govjax.routing.loss` for the exact gradients):

- ``"none"``: vanilla training, the mask is only logged;
- ``"depth"``: in-model depth gate (exact for depth masks, nearly free);
- ``"per_group"``: per-group ``custom_vjp`` (exact for any mask);
- ``"exact"``: per-example gradients (:func:`~govjax.train.gradients.per_example_gradients`) reduced by the
  routed aggregate :func:`~govjax.routing.transforms.per_example_routed_aggregate` (slow; the check on the others);
- ``"region"``: rows with ``batch["region"] == 1`` train only the model's removable region (needs
  ``config.model.region_width > 0``).

``config.governance.normaliser`` (``"contributors"`` or ``"batch"``) divides each group's summed gradient by its
number of contributing rows or by the batch size; ``freeze_empty_groups`` wraps clip + AdamW so that groups with
no contributor in a step get no update and keep their moments. For ``"depth"``/``"per_group"`` the normaliser is a
transform in front of the optimizer; ``"exact"`` applies it in the routed aggregate, ``"region"`` inside the loss.
``governance.clip="per_group"`` clips each depth group's gradient on its own (after the normaliser) instead of
relying on the one global norm alone. ``governance.baseline="dpsgd"`` is per-example gradients and
:func:`~govjax.baselines.dpsgd.dp_aggregate` in front of the optimizer: the same train step, so it also runs
data-parallel.

Example:
  >>> from govjax.core.config import TrainConfig
  >>> components = governance_components(TrainConfig())
  >>> components.routing
  'none'
  >>> import dataclasses
  >>> from govjax.core.config import GovernanceSpec
  >>> cfg = dataclasses.replace(TrainConfig(), governance=GovernanceSpec(routing="depth"))
  >>> governance_components(cfg).routing
  'depth'
"""

from __future__ import annotations

import dataclasses

import optax

from govjax.baselines.dpsgd import dp_aggregate
from govjax.baselines.goldfish import goldfish_loss
from govjax.core.config import TrainConfig
from govjax.probe.monitor import make_probe_plugin
from govjax.routing.groups import transformer_group_rules
from govjax.routing.loss import make_routed_loss
from govjax.routing.transforms import (
  clip_by_group_norm,
  freeze_groups_without_contributors,
  normalise_by_contributors,
  per_example_routed_aggregate,
)
from govjax.train.gradients import GradientStrategy, batch_gradients, per_example_gradients
from govjax.train.step import LossFn, make_optimizer, make_train_step, plain_loss


@dataclasses.dataclass(frozen=True)
class GovernanceComponents:
  """The pieces of a governed train step.

  Attributes:
    routing: the routing mode.
    loss_fn: ``loss_fn(model, batch, group_mask, rng) -> (loss, aux)``.
    tx: the optimizer chain, called with ``group_mask=`` as an extra argument.
    plugins: step plugins (e.g. the memorization probe), see ``govjax.train.step.StepPlugin``.
    gradients: the gradient strategy (per-example for the exact router and DP-SGD; see
      :mod:`govjax.train.gradients`).
  """

  routing: str
  loss_fn: LossFn
  tx: optax.GradientTransformationExtraArgs
  plugins: tuple = ()
  gradients: GradientStrategy = dataclasses.field(default_factory=batch_gradients)

  def train_step(self, graphdef, *, donate: bool = True):
    """The jitted train step for these components."""
    return make_train_step(graphdef, self.tx, self.loss_fn, gradients=self.gradients, plugins=self.plugins,
                           donate=donate)


def governance_components(config: TrainConfig, *, microbatch: int = 8) -> GovernanceComponents:
  """Builds loss, gradient strategy, optimizer and plugins for the config's governance, baseline and probe.

  ``governance.baseline`` replaces the loss (``"goldfish"``) or the gradient strategy and the optimizer's first
  transform (``"dpsgd"``); the config allows it with routing ``"none"`` only. ``probe.enabled`` adds the
  memorization probe as a step plugin. The model's depth groups are ``config.model.num_groups``.

  Args:
    config: the training config (validated when it was built).
    microbatch: rows per per-example chunk for the exact router and DP-SGD.

  Returns:
    :class:`GovernanceComponents`.
  """
  spec = config.governance
  if spec.baseline == "goldfish":
    tx, _ = make_optimizer(config)
    components = GovernanceComponents("none", goldfish_loss(spec.goldfish_k, spec.goldfish_h, config.seed), tx)
  elif spec.baseline == "dpsgd":
    tx, _ = make_optimizer(config, before=(dp_aggregate(spec.dp_clip, spec.dp_noise),))
    gradients = per_example_gradients(microbatch, clip_norm=spec.dp_clip, prefix="dp/")
    components = GovernanceComponents("none", plain_loss, tx, gradients=gradients)
  else:
    components = routing_components(config, microbatch=microbatch)
  if config.probe.enabled:
    probe = make_probe_plugin(config.probe, config.model.num_groups, surface=config.governance.surface)
    components = dataclasses.replace(components, plugins=(probe,))
  return components


def routing_components(config: TrainConfig, *, microbatch: int = 8) -> GovernanceComponents:
  """Builds loss, gradient strategy and optimizer for ``config.governance.routing``.

  Args:
    config: the training config.
    microbatch: rows per per-example chunk for ``"exact"``.

  Returns:
    :class:`GovernanceComponents`.
  """
  spec = config.governance
  routing = spec.routing
  rules = transformer_group_rules(config.model.num_layers)
  # Per-group clipping at grad_clip / sqrt(G) bounds the global norm by grad_clip: the global clip after it is inert.
  clip = ((clip_by_group_norm(rules, config.grad_clip / config.model.num_groups ** 0.5),)
          if spec.clip == "per_group" else ())
  if routing == "none":
    tx, _ = make_optimizer(config, before=clip)
    return GovernanceComponents(routing, plain_loss, tx)
  wrap = (lambda inner: freeze_groups_without_contributors(inner, rules)) if spec.freeze_empty_groups else None
  if routing == "exact":  # per-example gradients, reduced by the routed aggregate (normaliser included)
    tx, _ = make_optimizer(config, before=(per_example_routed_aggregate(rules, normaliser=spec.normaliser), *clip),
                           wrap=wrap)
    return GovernanceComponents(routing, plain_loss, tx, gradients=per_example_gradients(microbatch))
  if routing in ("depth", "per_group"):
    before = (normalise_by_contributors(rules),) if spec.normaliser == "contributors" else ()
    loss_fn = make_routed_loss(routing)
  else:  # region: the normaliser is applied inside the loss, separately for base and region parameters
    before = ()
    loss_fn = make_routed_loss(routing, normaliser=spec.normaliser, microbatch=microbatch, rules=rules)
  tx, _ = make_optimizer(config, before=(*before, *clip), wrap=wrap)
  return GovernanceComponents(routing, loss_fn, tx)
