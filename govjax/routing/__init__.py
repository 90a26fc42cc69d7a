"""Depth-selective gradient routing: depth groups, masks, the in-model gate, routed losses and optax transforms.

- :mod:`~govjax.routing.groups`: depth groups from path-regex rules (``G`` = the groups the rules define).
- :mod:`~govjax.routing.masks`: strict ``[B, G]`` mask checks; masks from per-example depths or classes.
- :mod:`~govjax.routing.protocol`: :class:`RoutableModel`, what your own NNX or Linen model implements.
- :mod:`~govjax.routing.gate`: :func:`routed_apply` (depth gate, per-group routing) for routable models.
- :mod:`~govjax.routing.loss`: routed losses with the default next-token or your own per-example loss.
- :mod:`~govjax.routing.transforms`: optax transforms (exact aggregate, normaliser, freezing, accumulation).

See ``docs/API.md`` for how they compose.
"""

from govjax.routing.gate import (
    depth_gate,
    depth_loss_weights,
    group_routed_call,
    is_depth_compatible,
    per_group_forward,
    routed_apply,
    scale_cotangent,
)
from govjax.routing.groups import (
    GroupCoverageError,
    SharedParameterError,
    check_shared_parameters,
    depth_groups,
    group_sizes,
    rules_num_groups,
    transformer_group_rules,
)
from govjax.routing.loss import LOSS_MODES, make_routed_loss, next_token_example_loss, routed_loss
from govjax.routing.masks import check_group_mask, masks_from_classes, masks_from_depths, resolve_num_groups
from govjax.routing.protocol import RoutableModel, check_routable
from govjax.routing.transforms import (
    NORMALISERS,
    exact_routed_grads,
    freeze_groups_without_contributors,
    normalise_by_contributors,
    per_example_routed_aggregate,
    routed_multi_steps,
    routed_optimizer,
)

__all__ = [
    "GroupCoverageError", "LOSS_MODES", "NORMALISERS", "RoutableModel", "SharedParameterError", "check_group_mask",
    "check_routable", "check_shared_parameters", "depth_gate", "depth_groups", "depth_loss_weights",
    "exact_routed_grads", "freeze_groups_without_contributors", "group_routed_call", "group_sizes",
    "is_depth_compatible", "make_routed_loss", "masks_from_classes", "masks_from_depths", "next_token_example_loss",
    "normalise_by_contributors", "per_example_routed_aggregate", "per_group_forward", "resolve_num_groups",
    "routed_apply", "routed_loss", "routed_multi_steps", "routed_optimizer", "rules_num_groups", "scale_cotangent",
    "transformer_group_rules",
]
