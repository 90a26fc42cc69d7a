"""Routing in the usual training loops: nnx.Optimizer, plain tx.update, inject_hyperparams, gradient accumulation
and Flax's TrainState, each against the per-example reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

from govjax.routing.loss import make_routed_loss
from govjax.routing.masks import masks_from_depths
from govjax.routing.transforms import (
    freeze_groups_without_contributors,
    per_example_routed_aggregate,
    routed_multi_steps,
    routed_optimizer,
)
from tests.routing.models import RULES, NNXNet, data, mse, reference_grads

TOL = {"atol": 1e-6, "rtol": 1e-5}
MASKS = [masks_from_depths(jnp.array([3, 1, 2, 3, 1, 2]), RULES),
         masks_from_depths(jnp.array([1, 2, 2, 1, 2, 0]), RULES)]  # no contributor to group 0: it must freeze
LOSS = make_routed_loss("depth", example_loss=mse, inputs="x")


def _inner():
  return optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(1e-2, weight_decay=0.1))


def _reference_run(steps):
  """Per-example gradients -> contributor-normalised aggregate -> frozen clip + AdamW, step by step."""
  model = NNXNet(nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = freeze_groups_without_contributors(_inner(), RULES)
  state = tx.init(params)
  for batch, mask in steps:
    grads = reference_grads(lambda p, x: nnx.merge(graphdef, p)(x), params, batch, mask, "contributors")
    updates, state = tx.update(grads, state, params, group_mask=mask)
    params = optax.apply_updates(params, updates)
  return params


STEPS = [(data(10), MASKS[0]), (data(11), MASKS[1])]


@pytest.fixture(scope="module")
def reference():
  return _reference_run(STEPS)


def test_nnx_optimizer_update_with_group_mask(reference):
  model = NNXNet(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, routed_optimizer(_inner(), RULES, freeze_empty=True), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, batch, mask):
    grads = nnx.grad(lambda m: LOSS(m, batch, mask)[0])(model)
    optimizer.update(model, grads, group_mask=mask)

  before = nnx.state(model, nnx.Param)["inp"]["kernel"][...]
  step(model, optimizer, *STEPS[0])
  after_first = nnx.state(model, nnx.Param)["inp"]["kernel"][...]
  step(model, optimizer, *STEPS[1])
  params = nnx.state(model, nnx.Param)
  chex.assert_trees_all_close(params, reference, **TOL)
  assert not np.array_equal(after_first, before)
  np.testing.assert_array_equal(params["inp"]["kernel"][...], after_first)  # group 0 frozen in step 2


def test_plain_tx_update_under_jit(reference):
  graphdef, params = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param)
  tx = routed_optimizer(_inner(), RULES, freeze_empty=True)
  state = tx.init(params)

  @jax.jit
  def step(params, state, batch, mask):
    grads = jax.grad(lambda p: LOSS(nnx.merge(graphdef, p), batch, mask)[0])(params)
    updates, state = tx.update(grads, state, params, group_mask=mask)
    return optax.apply_updates(params, updates), state

  for batch, mask in STEPS:
    params, state = step(params, state, batch, mask)
  chex.assert_trees_all_close(params, reference, **TOL)


def test_inject_hyperparams_forwards_group_mask():
  graphdef, params = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param)
  batch, mask = STEPS[1]
  grads = jax.grad(lambda p: LOSS(nnx.merge(graphdef, p), batch, mask)[0])(params)
  tx = optax.inject_hyperparams(lambda learning_rate: routed_optimizer(optax.sgd(learning_rate), RULES,
                                                                       freeze_empty=True))(learning_rate=0.5)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params, group_mask=mask)
  expected = reference_grads(lambda p, x: nnx.merge(graphdef, p)(x), params, batch, mask, "contributors")
  chex.assert_trees_all_close(updates, jax.tree.map(lambda g: -0.5 * g, expected), **TOL)
  state.hyperparams["learning_rate"] = jnp.asarray(0.25)
  halved, _ = tx.update(grads, state, params, group_mask=mask)
  chex.assert_trees_all_close(halved, jax.tree.map(lambda u: u / 2, updates), **TOL)
  assert not np.any(np.asarray(halved["inp"]["kernel"][...]))  # group 0 has no contributor: frozen


def _halves(batch, mask):
  return [(jax.tree.map(lambda x, i=i: x[i:i + 3], batch), mask[i:i + 3]) for i in (0, 3)]


def test_routed_multi_steps_equals_one_step_on_the_whole_batch():
  """Two micro-batches of 3 rows accumulate to exactly the update of one 6-row batch (normaliser and freezing
  see the contributors of the whole cycle)."""
  graphdef, params = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param)
  grad_fn = jax.jit(lambda p, b, m: jax.grad(lambda q: LOSS(nnx.merge(graphdef, q), b, m)[0])(p))
  whole = routed_optimizer(_inner(), RULES, freeze_empty=True)
  accumulated = routed_multi_steps(routed_optimizer(_inner(), RULES, freeze_empty=True), RULES, every_k_schedule=2)
  p_whole, s_whole = params, whole.init(params)
  p_acc, s_acc = params, accumulated.init(params)
  # Micro-batch masks of one cycle: [3, 1, 2] and [3, 1, 2] / [1, 2, 2] and [1, 2, 0] (group 0: 1 contributor).
  for batch, mask in STEPS:
    updates, s_whole = whole.update(grad_fn(p_whole, batch, mask), s_whole, p_whole, group_mask=mask)
    p_whole = optax.apply_updates(p_whole, updates)
    for i, (micro, micro_mask) in enumerate(_halves(batch, mask)):
      updates, s_acc = accumulated.update(grad_fn(p_acc, micro, micro_mask), s_acc, p_acc, group_mask=micro_mask)
      if i == 0:
        assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))
      p_acc = optax.apply_updates(p_acc, updates)
  chex.assert_trees_all_close(p_acc, p_whole, **TOL)
  # optax.MultiSteps alone hands the inner optimizer the last micro-batch's mask: different contributor counts.
  plain = optax.MultiSteps(routed_optimizer(optax.sgd(1.0), RULES), 2)
  batch, mask = data(12), masks_from_depths(jnp.array([3, 3, 2, 1, 1, 2]), RULES)  # group 0: first half only
  state, out = plain.init(params), None
  for micro, micro_mask in _halves(batch, mask):
    out, state = plain.update(grad_fn(params, micro, micro_mask), state, params, group_mask=micro_mask)
  sgd = routed_optimizer(optax.sgd(1.0), RULES)
  right, _ = sgd.update(grad_fn(params, batch, mask), sgd.init(params), params, group_mask=mask)
  assert not np.any(np.asarray(out["inp"]["kernel"][...])) and np.all(np.asarray(right["inp"]["kernel"][...]))


def test_routed_multi_steps_with_nnx_optimizer():
  model = NNXNet(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, routed_multi_steps(routed_optimizer(optax.sgd(0.1), RULES), RULES, 2),
                            wrt=nnx.Param)
  batch, mask = STEPS[0]
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))  # nnx.state shares the model's variables
  for micro, micro_mask in _halves(batch, mask):
    grads = nnx.grad(lambda m, b=micro, k=micro_mask: LOSS(m, b, k)[0])(model)
    optimizer.update(model, grads, group_mask=micro_mask)
  graphdef, _ = nnx.split(model, nnx.Param)
  expected = reference_grads(lambda p, x: nnx.merge(graphdef, p)(x), before, batch, mask, "contributors")
  chex.assert_trees_all_close(nnx.state(model, nnx.Param), jax.tree.map(lambda p, g: p - 0.1 * g, before, expected),
                              **TOL)


def test_multisteps_gradient_transformation_in_a_chain_gives_the_working_pattern():
  params = nnx.state(NNXNet(nnx.Rngs(0)), nnx.Param)
  tx = optax.chain(optax.MultiSteps(routed_optimizer(optax.sgd(1.0), RULES), 2).gradient_transformation())
  with pytest.raises(ValueError, match=r"normalise_by_contributors needs the extra argument group_mask=\[B, G\].*"
                                       r"use govjax.routing.routed_multi_steps"):
    tx.update(params, tx.init(params), params, group_mask=MASKS[0])


def test_train_state_apply_gradients_limitation_and_workaround(reference):
  graphdef, params = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param)
  state = train_state.TrainState.create(apply_fn=None, params=params,
                                        tx=routed_optimizer(_inner(), RULES, freeze_empty=True))
  batch, mask = STEPS[0]
  grads = jax.grad(lambda p: LOSS(nnx.merge(graphdef, p), batch, mask)[0])(params)
  with pytest.raises(ValueError, match=r"TrainState.apply_gradients cannot pass it: call updates, opt_state = "
                                       r"state.tx.update\(grads, state.opt_state, state.params, group_mask=mask\)"):
    state.apply_gradients(grads=grads)
  for batch, mask in STEPS:
    grads = jax.grad(lambda p, b=batch, m=mask: LOSS(nnx.merge(graphdef, p), b, m)[0])(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params, group_mask=mask)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
  chex.assert_trees_all_close(state.params, reference, **TOL)
  assert int(state.step) == 2


def test_exact_per_example_chain_matches_the_efficient_one():
  """per_example_routed_aggregate first in a chain (the reference optimizer) against the efficient path."""
  graphdef, params = nnx.split(NNXNet(nnx.Rngs(0)), nnx.Param)
  batch, mask = STEPS[0]

  def single(p, x, y):
    return mse(nnx.merge(graphdef, p)(x[None]), {"y": y[None]})[0]

  per_example = jax.vmap(jax.grad(single), in_axes=(None, 0, 0))(params, batch["x"], batch["y"])
  exact = optax.chain(per_example_routed_aggregate(RULES, normaliser="contributors"), optax.sgd(1.0))
  efficient = routed_optimizer(optax.sgd(1.0), RULES)
  grads = jax.grad(lambda p: LOSS(nnx.merge(graphdef, p), batch, mask)[0])(params)
  a, _ = exact.update(per_example, exact.init(params), params, group_mask=mask)
  b, _ = efficient.update(grads, efficient.init(params), params, group_mask=mask)
  chex.assert_trees_all_close(a, b, **TOL)
