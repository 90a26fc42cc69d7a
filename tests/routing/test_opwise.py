"""Per-operation parameter routing (govjax.routing.opwise) equals the whole-group VJP and the per-example sum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.models.transformer import Transformer, TransformerConfig
from govjax.routing.gate import param_routed_parts
from govjax.routing.opwise import opwise_call, plan_opwise

B, T, V = 5, 8, 11
TOL = {"atol": 1e-6, "rtol": 1e-5}


def _group_fn(model, group):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def fn(parts, inp):
    return nnx.merge(graphdef, parts[0], rest).apply_group(group, inp[0], **inp[1])

  return fn, params


def _inputs(model, group, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  if group == 0:
    return jax.random.randint(k1, (B, T), 1, V)
  return jax.random.normal(k2, (B, T, model.config.width))


def _weighted_reference(fn, params, x, kwargs, scale, weights):
  """``sum_b scale[b] * d(weights_b . fn(params, x)_b)/dparams``: the output is linear in each row's weight."""
  s = scale.reshape((-1,) + (1,) * (weights.ndim - 1))
  return jax.grad(lambda p: jnp.sum(fn((p,), (x, kwargs)).astype(jnp.float32) * weights * s))(params)


VARIANTS = [{"region_width": 4}, {"dtype": "bfloat16", "remat": True}]


def _model(variant):
  return Transformer(TransformerConfig(vocab_size=V, num_layers=1, width=16, num_heads=2, context=T, **variant),
                     rngs=nnx.Rngs(0))


def _kwargs(variant):
  return {"region": jnp.array([1.0, 0.0, 1.0, 0.0, 1.0])} if variant.get("region_width") else {}


@pytest.mark.parametrize("variant", VARIANTS, ids=["fp32-region", "bf16-remat"])
def test_every_transformer_group_is_planned(variant):
  model = _model(variant)
  for group in range(model.num_groups):
    fn, params = _group_fn(model, group)
    plan = plan_opwise(fn, (params,), (_inputs(model, group), _kwargs(variant)))
    # Embeddings: token gather + position add; a block: 16 (19 with the region); the head: norm + unembedding.
    assert plan.supported and plan.num_routed >= 2, (group, plan.reason)


@pytest.mark.parametrize("variant", VARIANTS, ids=["fp32-region", "bf16-remat"])
def test_block_gradients_equal_whole_group_vjp_and_weighted_sum(variant):
  """(The per_group loss against the per-example reference for every group: tests/routing/test_loss.py.)"""
  model, kwargs = _model(variant), _kwargs(variant)
  fn, params = _group_fn(model, 1)
  x = _inputs(model, 1)
  scale = jnp.array([1.0, 0.0, 0.3, 1.0, 0.0])
  w = jax.random.normal(jax.random.PRNGKey(1), x.shape)

  def loss(p, h, opwise):
    return jnp.sum(param_routed_parts(fn, (p,), (h, kwargs), (scale,), opwise=opwise).astype(jnp.float32) * w)

  @jax.jit
  def grads(params, x):
    plain = jax.grad(lambda h, p: jnp.sum(fn((p,), (h, kwargs)).astype(jnp.float32) * w), argnums=(0, 1))
    return (jax.grad(loss, argnums=(0, 1))(params, x, True), jax.grad(loss, argnums=(0, 1))(params, x, False),
            _weighted_reference(fn, params, x, kwargs, scale, w), plain(x, params)[0])

  (got, got_x), (whole, whole_x), ref, plain_x = grads(params, x)
  bf16 = variant.get("dtype") == "bfloat16"
  tol = {"atol": 2e-2, "rtol": 2e-2} if bf16 else TOL
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(whole), strict=True):
    np.testing.assert_allclose(a, b, **tol)
  assert _max_rel_err(got, ref) < (2e-2 if bf16 else 1e-5)
  np.testing.assert_allclose(got_x, whole_x, **tol)
  np.testing.assert_allclose(got_x, plain_x, **tol)  # the input gradient is the unscaled one


def _max_rel_err(a, b) -> float:
  diff = max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
  return diff / max(float(jnp.abs(y).max()) for y in jax.tree.leaves(b))


def test_two_parts_take_their_own_scales():
  fn = lambda parts, x: jnp.tanh(x @ parts[0]["w"]) @ parts[1]["v"]  # noqa: E731
  parts = ({"w": jax.random.normal(jax.random.PRNGKey(0), (3, 4))},
           {"v": jax.random.normal(jax.random.PRNGKey(1), (4, 2))})
  x = jax.random.normal(jax.random.PRNGKey(2), (6, 3))
  scales = (jnp.array([1.0, 0.0, 0.5, 1.0, 0.0, 0.2]), jnp.array([0.0, 1.0, 1.0, 0.3, 0.0, 1.0]))
  plan = plan_opwise(fn, parts, x)
  assert plan.supported and plan.num_routed == 2
  got = jax.grad(lambda p: opwise_call(plan, p, x, scales).sum())(parts)
  for k in range(2):
    ref = jax.grad(lambda p, k=k: (scales[k][:, None] * fn(p, x)).sum())(parts)[k]
    np.testing.assert_allclose(got[k]["w" if k == 0 else "v"], ref["w" if k == 0 else "v"], **TOL)


@pytest.mark.parametrize("case", ["merged_rows", "parameter_output", "two_parts_in_one_value"])
def test_unprovable_groups_fall_back_to_the_whole_group_vjp(case):
  w = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 3))
  scale = jnp.array([1.0, 0.0, 0.5, 1.0])
  if case == "merged_rows":  # rows merged with time: no single batch axis where the parameter meets them
    fn = lambda parts, h: (h.reshape(-1, 3) @ parts[0]).reshape(h.shape)  # noqa: E731
    parts, scales = (w,), (scale,)
  elif case == "parameter_output":
    fn = lambda parts, h: (h * 0 + 1, parts[0] * 2)  # noqa: E731
    parts, scales = (w,), (scale,)
  else:
    fn = lambda parts, h: h @ (parts[0] + parts[1])  # noqa: E731
    parts, scales = (w, w.T), (scale, 1 - scale)
  plan = plan_opwise(fn, parts, x)
  assert not plan.supported and plan.reason
  with pytest.raises(ValueError, match="unsupported"):
    opwise_call(plan, parts, x, scales)
  if case == "merged_rows":  # still exact, through the whole-group custom_vjp
    got = jax.grad(lambda p: param_routed_parts(fn, p, x, scales).sum())(parts)
    ref = jax.grad(lambda p: (scale[:, None, None] * fn(p, x)).sum())(parts)
    np.testing.assert_allclose(got[0], ref[0], **TOL)
