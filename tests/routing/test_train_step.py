"""Governed train steps (governance_components + make_train_step) against a per-example reference optimizer."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from govjax.core.config import GovernanceSpec, ModelSpec, TrainConfig
from govjax.core.losses import per_example_next_token_loss
from govjax.models.transformer import drop_region
from govjax.routing.groups import transformer_group_rules
from govjax.routing.transforms import per_example_routed_aggregate
from govjax.train.governance import governance_components
from govjax.train.step import create_train_state, make_optimizer, make_train_step, plain_loss

B, T, V, LAYERS = 4, 8, 11, 1
G = LAYERS + 2


def _config(routing, normaliser="contributors", region_width=0, grad_clip=1.0):
  return TrainConfig(model=ModelSpec(num_layers=LAYERS, width=16, num_heads=2, context=T, region_width=region_width),
                     governance=GovernanceSpec(routing=routing, normaliser=normaliser),
                     num_steps=10, warmup_steps=0, learning_rate=1e-2, grad_clip=grad_clip, batch_size=B)


def _batches(num_steps):
  keys = jax.random.split(jax.random.PRNGKey(42), num_steps)
  return [{"tokens": jax.random.randint(k, (B, T), 1, V)} for k in keys]


def _masks(kind):
  if kind == "depth":
    return [jnp.array([[1., 1., 1.], [0., 1., 1.], [0., 0., 1.], [0., .5, 1.]]),
            jnp.array([[0., 0., 1.], [0., 1., 1.], [0., .3, .7], [0., 1., 1.]])]  # no contributor to group 0
  return [jnp.array([[1., 0., 1.], [0., 1., 0.], [.5, 0., 1.], [0., .2, .7]]),
          jnp.array([[0., 1., 0.], [0., 0., 1.], [0., .4, .1], [0., 1., 1.]])]


def _reference_run(config, batches, masks):
  """Per-example gradients -> per_example_routed_aggregate -> clip + AdamW (make_optimizer), step by step."""
  graphdef, state, _, _ = create_train_state(config, vocab_size=V, tx=optax_identity())
  step = _reference_step(graphdef, dataclasses.replace(config, governance=GovernanceSpec(
      normaliser=config.governance.normaliser)))
  params, opt_state = state.params, make_optimizer(config)[0].init(state.params)
  for batch, mask in zip(batches, masks, strict=True):
    params, opt_state = step(params, opt_state, batch["tokens"], mask)
  return params


@functools.cache
def _reference_step(graphdef, config):
  rules = transformer_group_rules(LAYERS)
  inner, _ = make_optimizer(config)
  aggregate = per_example_routed_aggregate(rules, normaliser=config.governance.normaliser)

  @jax.jit
  def step(params, opt_state, tokens, mask):
    def single(p, toks):
      return per_example_next_token_loss(nnx.merge(graphdef, p)(toks[None]), toks[None])[0][0]
    per_example = jax.vmap(jax.grad(single), in_axes=(None, 0))(params, tokens)
    grads, _ = aggregate.update(per_example, aggregate.init(params), group_mask=mask)
    updates, opt_state = inner.update(grads, opt_state, params, group_mask=mask)
    return jax.tree.map(jnp.add, params, updates), opt_state

  return step


def optax_identity():
  return optax.identity()


def _comparable(params):
  """Params without the attention key biases: their exact gradient is 0 (softmax is shift invariant), so AdamW
  turns float rounding noise (~1e-10) into full-size steps, differently in any two correct implementations."""
  return {"/".join(map(str, path)): v[...] for path, v in nnx.to_flat_state(params)
          if path[-2:] != ("key", "bias")}


def _governed_run(config, batches, masks):
  components = governance_components(config)
  graphdef, state, tx, _ = create_train_state(config, vocab_size=V, tx=components.tx)
  step = components.train_step(graphdef)
  for batch, mask in zip(batches, masks, strict=True):
    state, metrics = step(state, batch, mask)
    np.testing.assert_allclose(metrics["contributors"], mask.sum(0), rtol=1e-6)
  return graphdef, state


@pytest.mark.parametrize("routing,kind", [("depth", "depth"), ("per_group", "arbitrary"), ("exact", "arbitrary")])
def test_governed_step_equals_reference_through_optimizer(routing, kind):
  config = _config(routing)
  batches, masks = _batches(2), _masks(kind)
  _, state = _governed_run(config, batches, masks)
  chex.assert_trees_all_close(_comparable(state.params), _comparable(_reference_run(config, batches, masks)),
                              atol=2e-6, rtol=1e-5)


def test_region_dropped_equals_base_trained_without_region_rows():
  """Base weights of a region-routed run == a region-free model trained on the non-region rows alone."""
  config = _config("region", region_width=8, grad_clip=1e9)  # clipping couples all parameters: off here
  region = jnp.array([1., 0., 1., 0.])
  batches = [dict(b, region=region) for b in _batches(2)]
  masks = [jnp.ones((B, G))] * 2
  graphdef, state = _governed_run(config, batches, masks)
  trained = nnx.merge(graphdef, state.params)

  _, init_state, _, _ = create_train_state(config, vocab_size=V, tx=optax_identity())
  base = drop_region(nnx.merge(graphdef, init_state.params))
  base_config = dataclasses.replace(config, model=dataclasses.replace(config.model, region_width=0),
                                    governance=GovernanceSpec())
  tx, _ = make_optimizer(base_config)
  base_graphdef, base_params = nnx.split(base, nnx.Param)
  _, base_state, _, _ = create_train_state(base_config, vocab_size=V, tx=tx)
  base_state = base_state._replace(params=base_params, opt_state=tx.init(base_params))
  base_step = make_train_step(base_graphdef, tx, plain_loss)
  keep = np.asarray(region) == 0
  for batch in batches:
    base_state, _ = base_step(base_state, {"tokens": batch["tokens"][keep]}, jnp.ones((int(keep.sum()), G)))

  dropped = drop_region(trained)
  chex.assert_trees_all_close(_comparable(nnx.state(dropped, nnx.Param)), _comparable(base_state.params),
                              atol=2e-6, rtol=1e-5)
  tokens = batches[0]["tokens"]
  reference_logits = nnx.merge(base_graphdef, base_state.params)(tokens)
  chex.assert_trees_all_close(dropped(tokens), reference_logits, atol=1e-5)
  chex.assert_trees_all_close(trained(tokens, region=0.0), reference_logits, atol=1e-5)
  assert not np.allclose(trained(tokens), reference_logits, atol=1e-3)  # the region did learn something


def test_governance_rejects_bad_settings():
  with pytest.raises(ValueError, match="routing"):
    governance_components(_config("deep"))
  with pytest.raises(ValueError, match="normaliser"):
    governance_components(_config("depth", normaliser="rows"))
  with pytest.raises(ValueError, match="region_width"):
    governance_components(_config("region"))
  assert governance_components(_config("none")).loss_fn is plain_loss
