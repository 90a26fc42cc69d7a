"""Routed gradients of every mode against the per-example reference (vmap + per_example_routed_aggregate)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.core.losses import per_example_next_token_loss
from govjax.models.transformer import Transformer, TransformerConfig
from govjax.routing.groups import depth_groups, transformer_group_rules
from govjax.routing.loss import make_routed_loss, region_masks
from govjax.routing.transforms import per_example_routed_aggregate

B, T, V, LAYERS = 5, 8, 11, 2
G = LAYERS + 2
TOL = {"atol": 1e-6, "rtol": 1e-5}


def _model(region_width=0):
  cfg = TransformerConfig(vocab_size=V, num_layers=LAYERS, width=16, num_heads=2, context=T,
                          region_width=region_width)
  return Transformer(cfg, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def setup():
  model = _model()
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, params


def _tokens(seed):
  return jax.random.randint(jax.random.PRNGKey(seed), (B, T), 1, V)


def depth_mask(seed, soft=False):
  """Rows train the top d groups (d in 1..G); soft rows have values in (0, 1] on their support."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  depth = jax.random.randint(k1, (B,), 1, G + 1)
  mask = (jnp.arange(G)[None, :] >= G - depth[:, None]).astype(jnp.float32)
  if soft:
    mask = mask * jax.random.uniform(k2, (B, G), minval=0.1, maxval=1.0)
  return mask


def arbitrary_mask(seed):
  """Non-monotone, soft, with exact zeros."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  values = jax.random.uniform(k1, (B, G))
  keep = jax.random.bernoulli(k2, 0.6, (B, G))
  mask = jnp.where(keep, values, 0.0)
  return mask.at[0].set(jnp.array([1.0, 0.0, 1.0, 0.0])).at[1].set(jnp.array([0.0, 1.0, 0.0, 1.0]))


def _per_example_grads(graphdef, params, tokens, region=None):
  def single(p, toks, r):
    model = nnx.merge(graphdef, p)
    logits = model(toks[None], region=None if r is None else r[None])
    return per_example_next_token_loss(logits, toks[None])[0][0]

  if region is None:
    return jax.vmap(jax.grad(lambda p, t: single(p, t, None)), in_axes=(None, 0))(params, tokens)
  return jax.vmap(jax.grad(single), in_axes=(None, 0, 0))(params, tokens, region)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _reference(graphdef, params, tokens, mask, normaliser, rules, region):
  # The mask may have columns for groups without parameters (region groups of the embeddings and the head).
  tx = per_example_routed_aggregate(list(rules), normaliser=normaliser, num_groups=mask.shape[1])
  grads, _ = tx.update(_per_example_grads(graphdef, params, tokens, region), tx.init(params), group_mask=mask)
  return grads


def reference(graphdef, params, tokens, mask, normaliser="batch", rules=None, region=None):
  """Per-example gradients (vmap) aggregated by the reference optax transform, under jit."""
  rules = tuple(rules or transformer_group_rules(LAYERS))
  return _reference(graphdef, params, tokens, mask, normaliser, rules, region)


@functools.cache
def _grads_fn(loss_fn, graphdef):
  @jax.jit
  def grads(params, batch, mask):
    def objective(p):
      return loss_fn(nnx.merge(graphdef, p), batch, mask, jax.random.PRNGKey(0), return_hidden=True)
    (loss, aux), g = jax.value_and_grad(objective, has_aux=True)(params)
    return g, loss, aux

  return grads


@functools.cache
def loss_for(mode, normaliser="batch", microbatch=2):
  return make_routed_loss(mode, normaliser=normaliser, microbatch=microbatch)


def routed_grads(loss_fn, graphdef, params, batch, mask):
  """Gradient of a routed loss under jit (one compilation per loss and shape)."""
  return _grads_fn(loss_fn, graphdef)(params, batch, mask)[0]


@pytest.mark.parametrize("soft", [False, True])
def test_depth_gate_equals_reference_for_depth_masks(setup, soft):
  graphdef, params = setup
  loss_fn = loss_for("depth")
  for seed in range(2):
    tokens, mask = _tokens(seed), depth_mask(seed + 10, soft=soft)
    chex.assert_trees_all_close(routed_grads(loss_fn, graphdef, params, {"tokens": tokens}, mask),
                                reference(graphdef, params, tokens, mask), **TOL)


def test_per_group_equals_reference_for_arbitrary_masks(setup):
  graphdef, params = setup
  loss_fn = loss_for("per_group")
  for seed, mask_fn in ((0, arbitrary_mask), (1, arbitrary_mask), (2, depth_mask)):
    tokens, mask = _tokens(seed), mask_fn(seed + 20)
    chex.assert_trees_all_close(routed_grads(loss_fn, graphdef, params, {"tokens": tokens}, mask),
                                reference(graphdef, params, tokens, mask), **TOL)


@pytest.mark.parametrize("normaliser", ["batch", "contributors"])
def test_exact_mode_equals_reference(setup, normaliser):
  graphdef, params = setup
  loss_fn = loss_for("exact", normaliser)  # 5 rows: padded chunks
  tokens, mask = _tokens(3), arbitrary_mask(30)
  chex.assert_trees_all_close(routed_grads(loss_fn, graphdef, params, {"tokens": tokens}, mask),
                              reference(graphdef, params, tokens, mask, normaliser), **TOL)


def test_depth_gate_is_conservative_on_non_monotone_rows(setup):
  graphdef, params = setup
  tokens = _tokens(4)
  mask = jnp.ones((B, G)).at[0].set(jnp.array([1.0, 1.0, 0.0, 1.0]))
  # Row 0 reaches only the head: everything below its highest zero is cut.
  expected_mask = mask.at[0].set(jnp.array([0.0, 0.0, 0.0, 1.0]))
  chex.assert_trees_all_close(routed_grads(loss_for("depth"), graphdef, params, {"tokens": tokens}, mask),
                              reference(graphdef, params, tokens, expected_mask), **TOL)


@pytest.mark.parametrize("mode", ["depth", "per_group", "exact"])
def test_masked_example_contributes_exactly_zero(setup, mode):
  graphdef, params = setup
  tokens = _tokens(5)
  mask = jnp.ones((B, G)).at[0, :2].set(0.0)  # row 0 may not reach the embeddings nor block 0
  other = tokens.at[0].set((tokens[0] * 7 + 3) % (V - 1) + 1)  # row 0 replaced by different tokens
  loss_fn = loss_for(mode)
  ids = depth_groups(params, transformer_group_rules(LAYERS))
  # Alone (other rows fully masked), row 0 gives groups 0 and 1 an exactly-zero gradient.
  alone = routed_grads(loss_fn, graphdef, params, {"tokens": tokens}, mask.at[1:].set(0.0))
  for g, i in zip(jax.tree.leaves(alone), jax.tree.leaves(ids), strict=True):
    assert (not np.any(np.asarray(g))) == (i < 2)
  # In a batch, changing row 0 changes nothing in the excluded groups.
  a = routed_grads(loss_fn, graphdef, params, {"tokens": tokens}, mask)
  b = routed_grads(loss_fn, graphdef, params, {"tokens": other}, mask)
  changed = []
  for ga, gb, i in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(ids), strict=True):
    if i < 2:
      np.testing.assert_allclose(ga, gb, rtol=0, atol=1e-7)
    else:
      changed.append(not np.allclose(ga, gb))
  assert all(changed[-2:]) and sum(changed) > len(changed) // 2  # the head and most upper leaves do change


def test_loss_aux_and_hidden(setup):
  graphdef, params = setup
  model = nnx.merge(graphdef, params)
  tokens, mask = _tokens(6), depth_mask(60)
  plain = model(tokens)
  for mode in ("depth", "per_group", "exact"):
    _, loss, aux = _grads_fn(loss_for(mode), graphdef)(params, {"tokens": tokens}, mask)
    assert aux["per_example_loss"].shape == (B,) and len(aux["hidden"]) == LAYERS + 1
    chex.assert_trees_all_close(aux["logits"], plain, atol=1e-5)
    chex.assert_trees_all_close(aux["contributors"], mask.sum(0))
    expected = (aux["per_example_loss"] * (mask[:, -1] if mode == "depth" else 1.0)).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match="routing mode"):
    make_routed_loss("deep")
  with pytest.raises(ValueError, match="normalise_by_contributors"):
    make_routed_loss("depth", normaliser="contributors")
  model = _model()
  with pytest.raises(ValueError, match=r"batch\['region'\]"):
    make_routed_loss("region")(model, {"tokens": _tokens(0)}, jnp.ones((B, G)), None)


# ------------------------------------------------------------------------------------------ region


@pytest.mark.parametrize("normaliser", ["batch", "contributors"])
def test_region_mode_equals_reference(normaliser):
  model = _model(region_width=8)
  graphdef, params = nnx.split(model, nnx.Param)
  tokens, mask = _tokens(7), arbitrary_mask(70).at[:, -1].set(1.0)
  region = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0])
  # Reference groups: region units of block i form group G + i + 1, with their own mask columns: the base
  # columns hold the non-region rows, the region columns the region rows; the reference normalises each column.
  rules = [(rf"blocks/{i}/region/.*", G + i + 1) for i in range(LAYERS)] + transformer_group_rules(LAYERS)
  ref_mask = jnp.concatenate([mask * (1.0 - region[:, None]), mask * region[:, None]], axis=1)
  expected = reference(graphdef, params, tokens, ref_mask, normaliser, rules=rules, region=region)
  # region_masks folds that normaliser into the weights (B / N_g per column).
  base_mask, region_mask = region_masks(mask, region, normaliser)
  weights = jnp.concatenate([base_mask, region_mask], axis=1)
  counts = ref_mask.sum(0)
  scale = jnp.where(counts > 0, B / jnp.where(counts > 0, counts, 1.0), 0.0) if normaliser == "contributors" else 1.0
  np.testing.assert_allclose(weights, ref_mask * scale, rtol=1e-6)
  got = routed_grads(loss_for("region", normaliser), graphdef, params,
                     {"tokens": tokens, "region": region}, mask)
  chex.assert_trees_all_close(got, expected, **TOL)


def test_region_rows_touch_only_the_region():
  model = _model(region_width=8)
  graphdef, params = nnx.split(model, nnx.Param)
  tokens, mask = _tokens(8), jnp.ones((B, G))
  loss_fn = loss_for("region")
  only_region = routed_grads(loss_fn, graphdef, params, {"tokens": tokens, "region": jnp.ones(B)}, mask)
  only_base = routed_grads(loss_fn, graphdef, params, {"tokens": tokens, "region": jnp.zeros(B)}, mask)
  for (path, g_region), (_, g_base) in zip(nnx.to_flat_state(only_region), nnx.to_flat_state(only_base),
                                           strict=True):
    in_region = "region" in path
    assert bool(np.any(np.asarray(g_region[...]))) == in_region, path
    assert bool(np.any(np.asarray(g_base[...]))) != in_region, path
