"""Per-group clipping: each depth group is clipped on its own; the global norm stays bounded."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from govjax.core.config import GovernanceSpec, TrainConfig
from govjax.routing.transforms import clip_by_group_norm
from govjax.train.governance import governance_components


def test_a_large_group_does_not_scale_the_others():
  grads = {"head": jnp.array([30.0, 40.0]), "trunk": jnp.array([0.3, 0.4])}
  ids = {"head": 1, "trunk": 0}
  per_group, _ = clip_by_group_norm(ids, 1.0).update(grads, None)
  np.testing.assert_allclose(per_group["trunk"], [0.3, 0.4], rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(per_group["head"]), 1.0, rtol=1e-6)
  global_clip, _ = optax.clip_by_global_norm(1.0).update(grads, None)
  assert float(jnp.linalg.norm(global_clip["trunk"])) < 0.02  # what one global norm does to the trunk


def test_group_norm_bound_keeps_the_global_norm_and_rejects_bad_norms():
  grads = {"a": jnp.full(3, 5.0), "b": jnp.full(3, 5.0), "c": jnp.full(3, 5.0), "d": jnp.full(3, 5.0)}
  out, _ = clip_by_group_norm({"a": 0, "b": 1, "c": 2, "d": 3}, 0.5).update(grads, None, group_mask=None)
  assert float(optax.tree.norm(out)) == pytest.approx(1.0, rel=1e-5)
  with pytest.raises(ValueError, match="max_norm"):
    clip_by_group_norm({"a": 0}, 0.0)


def test_governance_option_puts_it_in_the_chain():
  config = dataclasses.replace(TrainConfig(), governance=GovernanceSpec(routing="depth", clip="per_group"))
  assert governance_components(config).routing == "depth"
  with pytest.raises(ValueError, match="surface"):
    GovernanceSpec(routing="depth", surface="input")
  assert GovernanceSpec(routing="per_group", surface="input").surface == "input"
