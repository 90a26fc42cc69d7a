import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from govjax.core.config import TrainConfig
from govjax.routing.transforms import (
  exact_routed_grads,
  normalise_by_contributors,
  per_example_routed_aggregate,
)
from govjax.train.step import make_optimizer

IDS = {"low": 0, "mid": 1, "high": 2}


def _per_example(seed, batch=6):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {"low": jax.random.normal(keys[0], (batch, 3)), "mid": jax.random.normal(keys[1], (batch, 2, 2)),
          "high": jax.random.normal(keys[2], (batch, 4))}


def test_aggregate_known_values_and_normalisers():
  g = {"low": jnp.array([[2.0], [4.0], [6.0], [8.0]]), "mid": jnp.ones((4, 1)), "high": jnp.ones((4, 1))}
  mask = jnp.array([[1., 0., 1.], [0., 0., 1.], [.5, 0., 1.], [0., 0., 1.]])
  batch = per_example_routed_aggregate(IDS, normaliser="batch")
  out, _ = batch.update(g, batch.init(None), group_mask=mask)
  assert out["low"].tolist() == [(2 + 3) / 4] and out["mid"].tolist() == [0.0] and out["high"].tolist() == [1.0]
  contrib = per_example_routed_aggregate(IDS, normaliser="contributors")
  out, _ = contrib.update(g, contrib.init(None), group_mask=mask)
  np.testing.assert_allclose(out["low"], [(2 + 3) / 1.5], rtol=1e-6)
  assert out["mid"].tolist() == [0.0] and out["high"].tolist() == [1.0]


def test_normaliser_semantics_masked_rows():
  """Adding rows masked out of a group leaves its contributor-normalised gradient alone but shrinks the batch one."""
  g, mask = _per_example(0, batch=6), jnp.ones((6, 3)).at[:, 0].set(jnp.array([1., 1., 0., 0., 0., 0.]))
  few = jax.tree.map(lambda x: x[:2], g)
  for normaliser, ratio in (("contributors", 1.0), ("batch", 2 / 6)):
    tx = per_example_routed_aggregate(IDS, normaliser=normaliser)
    full, _ = tx.update(g, (), group_mask=mask)
    alone, _ = tx.update(few, (), group_mask=mask[:2])
    np.testing.assert_allclose(full["low"], ratio * alone["low"], rtol=1e-6)


def test_normalise_by_contributors_matches_reference():
  g, mask = _per_example(1), jax.random.uniform(jax.random.PRNGKey(2), (6, 3)).at[:, 1].set(0.0)
  batch_agg, _ = per_example_routed_aggregate(IDS, normaliser="batch").update(g, (), group_mask=mask)
  expected, _ = per_example_routed_aggregate(IDS, normaliser="contributors").update(g, (), group_mask=mask)
  got, _ = normalise_by_contributors(IDS).update(batch_agg, (), group_mask=mask)
  chex.assert_trees_all_close(got, expected, rtol=1e-6)
  assert not np.any(np.asarray(got["mid"]))


@pytest.mark.parametrize("microbatch", [1, 4, 6, 16])
def test_exact_routed_grads_microbatched_equals_full_vmap(microbatch):
  params = {"low": jnp.arange(3.0), "mid": jnp.ones((2, 2)), "high": jnp.linspace(0.1, 1, 4)}
  x = jax.random.normal(jax.random.PRNGKey(3), (6, 3))
  mask = jax.random.uniform(jax.random.PRNGKey(4), (6, 3)).at[0, 1].set(0.0)

  def losses(p, xb):
    h = jnp.tanh(xb * p["low"]).sum(-1, keepdims=True) * p["mid"].sum()
    return (h * p["high"]).sum(-1) ** 2

  per_example = jax.vmap(jax.grad(lambda p, xi: losses(p, xi[None])[0]), in_axes=(None, 0))(params, x)
  for normaliser in ("batch", "contributors"):
    tx = per_example_routed_aggregate(IDS, normaliser=normaliser)
    expected, _ = tx.update(per_example, (), group_mask=mask)
    got, values = jax.jit(lambda p, xb, m, n=normaliser: exact_routed_grads(
        losses, p, xb, m, IDS, microbatch=microbatch, normaliser=n))(params, x, mask)
    chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, losses(params, x), rtol=1e-5)


def test_bad_inputs_are_named():
  tx = per_example_routed_aggregate(IDS)
  with pytest.raises(ValueError, match="group_mask"):
    tx.update(_per_example(0), ())
  with pytest.raises(ValueError, match="leading axis"):
    tx.update(_per_example(0, batch=6), (), group_mask=jnp.ones((5, 3)))
  with pytest.raises(ValueError, match="group ids"):
    tx.update(_per_example(0), (), group_mask=jnp.ones((6, 2)))
  with pytest.raises(ValueError, match="normaliser"):
    per_example_routed_aggregate(IDS, normaliser="rows")


def test_freeze_keeps_params_and_moments_bit_identical():
  """Through make_optimizer(before=..., wrap=...): a group without contributors does not move at all."""
  from govjax.routing.transforms import freeze_groups_without_contributors

  config = TrainConfig(num_steps=10, warmup_steps=0, learning_rate=0.1, weight_decay=0.1)
  params = {"low": jnp.ones(3), "mid": jnp.ones((2, 2)), "high": jnp.ones(4)}
  grads = jax.tree.map(jnp.ones_like, params)
  full, no_low = jnp.ones((2, 3)), jnp.array([[0., 1., 1.], [0., 0., 1.]])
  results = {}
  for freeze in (True, False):
    wrap = (lambda inner: freeze_groups_without_contributors(inner, IDS)) if freeze else None
    tx, _ = make_optimizer(config, before=(normalise_by_contributors(IDS),), wrap=wrap)
    update = jax.jit(lambda g, s, p, m, tx=tx: tx.update(g, s, p, group_mask=m))
    state = tx.init(params)
    u, state = update(grads, state, params, full)
    p1 = optax.apply_updates(params, u)
    u, state2 = update(grads, state, p1, no_low)
    results[freeze] = (p1, state, optax.apply_updates(p1, u), state2)
  p1, s1, p2, s2 = results[True]
  np.testing.assert_array_equal(p2["low"], p1["low"])
  mu1, mu2 = (optax.tree_utils.tree_get(s, "mu") for s in (s1, s2))
  nu1, nu2 = (optax.tree_utils.tree_get(s, "nu") for s in (s1, s2))
  np.testing.assert_array_equal(mu2["low"], mu1["low"])
  np.testing.assert_array_equal(nu2["low"], nu1["low"])
  assert not np.array_equal(p2["mid"], p1["mid"]) and not np.array_equal(mu2["mid"], mu1["mid"])
  # Without freezing a zero gradient still moves the group (momentum and weight decay).
  p1, _, p2, _ = results[False]
  assert not np.array_equal(p2["low"], p1["low"])
