"""Strict routing masks: shapes tied to the group rules, values in [0, 1], no NaN / inf through a barred group."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.experimental import checkify

from govjax.routing.gate import depth_gate, routed_apply
from govjax.routing.loss import make_routed_loss
from govjax.routing.masks import check_group_mask, masks_from_classes, masks_from_depths, resolve_num_groups
from govjax.routing.transforms import (
    freeze_groups_without_contributors,
    normalise_by_contributors,
    per_example_routed_aggregate,
    routed_optimizer,
)
from tests.routing.models import RULES, NNXNet, data, mse, reference_grads

B, G = 6, 3


def _per_example(seed):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {"inp": {"kernel": jax.random.normal(keys[0], (B, 2))}, "mid": {"kernel": jax.random.normal(keys[1], (B, 3))},
          "out": {"kernel": jax.random.normal(keys[2], (B, 1))}}


BAD_SHAPES = [
    ((B, G + 1), r"group_mask must be \[B, G\] = \[6, 3\].*got shape \(6, 4\)"),
    ((1, G), r"group_mask must be .*got shape \(1, 3\) \(a \[1, G\] mask is not broadcast"),
    ((G, B), r"group_mask must be .*got shape \(3, 6\) \(transposed\?"),
    ((B,), r"group_mask must be .*got shape \(6,\)"),
]
BAD_VALUES = [(2.0, r"group_mask\[1, 2\] = 2.0"), (-1.0, r"group_mask\[1, 2\] = -1.0"),
              (np.nan, r"group_mask\[1, 2\] = nan"), (np.inf, r"group_mask\[1, 2\] = inf")]


@pytest.mark.parametrize("shape,message", BAD_SHAPES)
def test_bad_shapes_are_rejected_by_transforms_and_gate(shape, message):
  mask = jnp.ones(shape)
  with pytest.raises(ValueError, match="per_example_routed_aggregate: " + message):
    per_example_routed_aggregate(RULES).update(_per_example(0), (), group_mask=mask)
  with pytest.raises(ValueError, match="routed_apply: " + message):
    routed_apply(NNXNet(nnx.Rngs(0)), data(0)["x"], mask)
  with pytest.raises(ValueError, match="routed_loss: " + message):
    make_routed_loss("exact", example_loss=mse, inputs="x")(NNXNet(nnx.Rngs(0)), data(0), mask)


def test_gradient_shaped_transforms_check_the_groups_of_their_rules():
  grads = jax.tree.map(lambda g: g[0], _per_example(0))
  for tx in (normalise_by_contributors(RULES), freeze_groups_without_contributors(_sgd(), RULES),
             routed_optimizer(_sgd(), RULES, normaliser="batch")):
    with pytest.raises(ValueError, match=r"must be \[B, G\] = \[B, 3\].*got shape \(6, 4\)"):
      tx.update(grads, tx.init(grads), grads, group_mask=jnp.ones((B, G + 1)))
    with pytest.raises(ValueError, match=r"got shape \(3, 6\) \(transposed\?"):
      tx.update(grads, tx.init(grads), grads, group_mask=jnp.ones((G, B)))
    with pytest.raises(ValueError, match=r"needs the extra argument group_mask=\[B, G\]"):
      tx.update(grads, tx.init(grads), grads)


def _sgd():
  return optax.sgd(1.0)


@pytest.mark.parametrize("value,message", BAD_VALUES)
def test_bad_values_are_rejected_concrete(value, message):
  mask = jnp.ones((B, G)).at[1, 2].set(value)
  with pytest.raises(ValueError, match=r"values must be finite and in \[0, 1\]; 1 are not, e.g. " + message):
    per_example_routed_aggregate(RULES).update(_per_example(0), (), group_mask=mask)
  with pytest.raises(ValueError, match=message):
    routed_apply(NNXNet(nnx.Rngs(0)), data(0)["x"], mask, mode="per_group")
  with pytest.raises(ValueError, match=message):
    depth_gate(mask)


@pytest.mark.parametrize("value", [2.0, -1.0, np.nan])
def test_checked_mode_rejects_traced_values(value):
  mask = jnp.ones((B, G)).at[1, 2].set(value)
  tx = per_example_routed_aggregate(RULES, checked=True)
  update = jax.jit(checkify.checkify(lambda g, m: tx.update(g, (), group_mask=m)[0]))
  err, _ = update(_per_example(0), mask)
  with pytest.raises(Exception, match=r"per_example_routed_aggregate: group_mask values must be finite and in "
                                      r"\[0, 1\]; 1 are not"):
    err.throw()
  err, _ = update(_per_example(0), jnp.ones((B, G)))
  err.throw()  # a valid mask passes
  model = NNXNet(nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  loss_fn = make_routed_loss("depth", example_loss=mse, inputs="x", checked=True)
  grads = jax.jit(checkify.checkify(jax.grad(lambda p, m: loss_fn(nnx.merge(graphdef, p), data(0), m)[0])))
  err, _ = grads(params, mask)
  with pytest.raises(Exception, match=r"routed_loss: group_mask values must be finite"):
    err.throw()


def test_unchecked_traced_values_are_clamped_never_widening_routing():
  mask = jnp.array([[np.nan, 1., 1.], [-1., 2., 1.], [.5, 1., np.inf]])
  clamped = jax.jit(lambda m: check_group_mask(m, G))(mask)
  np.testing.assert_array_equal(clamped, [[0., 1., 1.], [0., 1., 1.], [.5, 1., 1.]])
  valid = jax.random.uniform(jax.random.PRNGKey(0), (B, G))
  np.testing.assert_array_equal(jax.jit(lambda m: check_group_mask(m, G))(valid), valid)  # bit for bit


# ------------------------------------------------------------------------------------ no NaN / inf leak


def test_aggregate_ignores_non_finite_gradients_of_barred_rows():
  g = _per_example(1)
  poisoned = jax.tree.map(lambda x: x.at[0].set(jnp.nan).at[1].set(jnp.inf), g)
  mask = jnp.ones((B, G)).at[0].set(0.0).at[1, :2].set(0.0)  # row 0 barred everywhere, row 1 from groups 0-1
  tx = per_example_routed_aggregate(RULES)
  got, _ = jax.jit(lambda x, m: tx.update(x, (), group_mask=m))(poisoned, mask)
  clean, _ = tx.update(jax.tree.map(lambda x: x.at[:2].set(0.0), g), (), group_mask=mask)
  chex.assert_trees_all_close(got["inp"], clean["inp"], rtol=1e-6)
  chex.assert_trees_all_close(got["mid"], clean["mid"], rtol=1e-6)
  assert np.all(np.isinf(np.asarray(got["out"]["kernel"])))  # row 1 may reach the output group: its inf does


def test_normaliser_zeroes_groups_without_contributors_even_if_not_finite():
  grads = {"inp": {"kernel": jnp.full(2, jnp.nan)}, "mid": {"kernel": jnp.ones(3)}, "out": {"kernel": jnp.ones(1)}}
  out, _ = normalise_by_contributors(RULES).update(grads, (), group_mask=jnp.ones((B, G)).at[:, 0].set(0.0))
  assert out["inp"]["kernel"].tolist() == [0.0, 0.0] and out["mid"]["kernel"].tolist() == [1.0] * 3


def _poisoned_loss(outputs, batch):
  """mse times ``batch["scale"]``: a NaN scale makes that row's loss and gradient NaN (its forward is finite)."""
  return mse(outputs, batch) * batch["scale"]


@pytest.mark.parametrize("mode", ["depth", "per_group", "exact"])
def test_barred_rows_cannot_leak_nan_into_barred_groups(mode):
  model = NNXNet(nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  batch = {**data(4), "scale": jnp.ones(B).at[0].set(jnp.nan).at[1].set(jnp.nan)}
  mask = jnp.ones((B, G)).at[0].set(0.0).at[1, :2].set(0.0)  # row 0 barred everywhere; row 1 only at the top
  loss_fn = make_routed_loss(mode, example_loss=_poisoned_loss, inputs="x", microbatch=4)
  got = jax.jit(jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p), batch, mask)[0]))(params)
  clean_mask = mask.at[1].set(0.0)
  expected = reference_grads(lambda p, x: nnx.merge(graphdef, p)(x), params, data(4), clean_mask)
  for name in ("inp", "mid"):  # groups 0 and 1: both poisoned rows are barred, the result is the clean aggregate
    chex.assert_trees_all_close(got[name], expected[name], atol=1e-6, rtol=1e-5)
  assert np.all(np.isnan(np.asarray(got["out"]["kernel"][...])))  # row 1 is allowed at the top: its NaN is real


# ------------------------------------------------------------------------------------------ builders


def test_masks_from_depths_and_classes():
  np.testing.assert_array_equal(masks_from_depths(np.array([0, 1, 3]), RULES),
                                [[0, 0, 0], [0, 0, 1], [1, 1, 1]])
  assert jax.jit(lambda d: masks_from_depths(d, 3))(jnp.array([5, -1])).tolist() == [[1.] * 3, [0.] * 3]  # clipped
  np.testing.assert_array_equal(masks_from_depths(np.array([0, 1, 3]), RULES, surface="input"),
                                [[0, 0, 0], [1, 0, 0], [1, 1, 1]])
  table = {"permissive": "full", "restrictive": 1, "excluded": 0}
  got = masks_from_classes(["restrictive", "permissive", "excluded"], table, NNXNet(nnx.Rngs(0)))
  np.testing.assert_array_equal(got, [[0, 0, 1], [1, 1, 1], [0, 0, 0]])
  by_id = jax.jit(lambda c: masks_from_classes(c, [3, 1, 0], RULES))(jnp.array([1, 0, 2]))
  np.testing.assert_array_equal(by_id, got)


def test_builder_errors():
  with pytest.raises(ValueError, match=r"depths must be in \[0, 3\] \(G = 3 groups\); got \[-1, 4\]"):
    masks_from_depths([4, -1, 2], RULES)
  with pytest.raises(ValueError, match=r"surface must be one of \('output', 'input'\), got 'top'"):
    masks_from_depths([1], RULES, surface="top")
  with pytest.raises(ValueError, match=r"depths must be integers"):
    masks_from_depths([1.5], RULES)
  with pytest.raises(ValueError, match=r"depths must be \[B\]"):
    masks_from_depths(np.ones((2, 2), int), RULES)
  with pytest.raises(ValueError, match=r"classes \['unknown'\] are not in the table \(known: \['permissive'\]\)"):
    masks_from_classes(["permissive", "unknown"], {"permissive": 3}, RULES)
  with pytest.raises(ValueError, match=r"table\['permissive'\] must be a depth in \[0, 3\]"):
    masks_from_classes(["permissive"], {"permissive": 4}, RULES)
  with pytest.raises(ValueError, match=r"class ids \[3\] are outside the table's 3 classes"):
    masks_from_classes(np.array([3]), [3, 1, 0], RULES)
  with pytest.raises(TypeError, match="num_groups must be an int, group rules"):
    resolve_num_groups("three")


def test_mask_builder_groups_must_match_the_rules():
  """A mask built for other rules is rejected where the routing rules are used."""
  four_groups = masks_from_depths([4, 2, 1, 0, 3, 4], [(r"a/.*", 0), (r"b/.*", 1), (r"c/.*", 2), (r"d/.*", 3)])
  with pytest.raises(ValueError, match=r"must be \[B, G\] = \[B, 3\].*got shape \(6, 4\)"):
    normalise_by_contributors(RULES).update(jax.tree.map(lambda g: g[0], _per_example(0)), (),
                                            group_mask=four_groups)
  with pytest.raises(ValueError, match=r"must be \[B, G\] = \[6, 3\]"):
    routed_apply(NNXNet(nnx.Rngs(0)), data(0)["x"], four_groups)
  with pytest.raises(ValueError, match=r"num_groups=2 is smaller than the 3 groups"):
    normalise_by_contributors(RULES, num_groups=2)


def test_depth_gate_checks_its_calls():
  gate = depth_gate(jnp.ones((B, G)), num_groups=G)
  with pytest.raises(ValueError, match=r"group_index must be an int in \[0, 1\]"):
    gate(2, jnp.ones((B, 4)))
  with pytest.raises(ValueError, match=r"the mask has B=6 rows but h has leading axis 5"):
    gate(0, jnp.ones((5, 4)))
  with pytest.raises(ValueError, match=r"depth_gate: group_mask must be \[B, G\] = \[B, 4\]"):
    depth_gate(jnp.ones((B, G)), num_groups=4)
