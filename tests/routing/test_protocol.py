"""Your own model through the efficient routing paths: NNX and Linen models following RoutableModel."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.models.transformer import Transformer, TransformerConfig
from govjax.routing.gate import group_routed_call, per_group_forward, routed_apply
from govjax.routing.groups import SharedParameterError, depth_groups, shared_parameters
from govjax.routing.loss import make_routed_loss
from govjax.routing.masks import masks_from_depths
from govjax.routing.protocol import RoutableModel, check_routable, forward
from tests.routing.models import RULES, LinenNet, NNXNet, data, mse, reference_grads

TOL = {"atol": 1e-6, "rtol": 1e-5}
DEPTH = masks_from_depths(jnp.array([3, 1, 2, 0, 3, 1]), RULES)
ARBITRARY = jnp.array([[1., 0., 1.], [0., 1., 0.], [.5, 0., 1.], [0., .2, .7], [1., 1., 0.], [0., 0., 0.]])
CASES = [("depth", DEPTH), ("per_group", ARBITRARY), ("per_group", DEPTH), ("exact", ARBITRARY)]


def _nnx_setup():
  model = NNXNet(nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, params


@pytest.mark.parametrize("mode,mask", CASES)
def test_own_nnx_model_equals_per_example_reference(mode, mask):
  graphdef, params = _nnx_setup()
  batch = data(0)
  loss_fn = make_routed_loss(mode, example_loss=mse, inputs="x", microbatch=4)
  got = jax.jit(jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p), batch, mask)[0]))(params)
  expected = reference_grads(lambda p, x: nnx.merge(graphdef, p)(x), params, batch, mask)
  chex.assert_trees_all_close(got, expected, **TOL)


@pytest.mark.parametrize("mode,mask", CASES)
def test_own_linen_model_equals_per_example_reference(mode, mask):
  module = LinenNet()
  batch = data(1)
  params = module.init(jax.random.PRNGKey(0), batch["x"])["params"]
  loss_fn = make_routed_loss(mode, example_loss=mse, inputs="x", microbatch=4)
  got = jax.jit(jax.grad(lambda p: loss_fn(module.bind({"params": p}), batch, mask)[0]))(params)
  expected = reference_grads(lambda p, x: module.apply({"params": p}, x), params, batch, mask)
  chex.assert_trees_all_close(got, expected, **TOL)


def test_routed_apply_equals_plain_forward_and_returns_hidden():
  model = NNXNet(nnx.Rngs(0))
  batch = data(2)
  for mode in ("none", "depth", "per_group"):
    out, hidden = routed_apply(model, batch["x"], ARBITRARY if mode != "depth" else DEPTH, mode=mode,
                               return_hidden=True)
    np.testing.assert_allclose(out, model(batch["x"]), rtol=1e-6)
    assert len(hidden) == 2 and hidden[0].shape == (6, 8)
  assert isinstance(model, RoutableModel) and isinstance(LinenNet().bind({}), RoutableModel)
  assert not isinstance(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), RoutableModel)


def test_builtin_transformer_follows_the_protocol_unchanged():
  cfg = TransformerConfig(vocab_size=9, num_layers=2, width=16, num_heads=2, context=8, region_width=4)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.PRNGKey(0), (3, 8), 1, 9)
  assert isinstance(model, RoutableModel) and model.num_groups == 4
  region = jnp.array([1.0, 0.0, 0.5])
  out, hidden = forward(model, tokens, 4, region=region)
  expected, expected_hidden = model(tokens, return_hidden=True, region=region)
  np.testing.assert_array_equal(out, expected)
  for a, b in zip(hidden, expected_hidden, strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r"group must be an int in \[0, 3\]"):
    model.apply_group(4, tokens)


def test_per_group_forward_and_group_routed_call_on_linen():
  module = LinenNet()
  batch = data(3)
  params = module.init(jax.random.PRNGKey(0), batch["x"])["params"]
  bound = module.bind({"params": params})
  out = per_group_forward(bound, batch["x"], ARBITRARY)
  np.testing.assert_allclose(out, module.apply({"params": params}, batch["x"]), rtol=1e-6)

  def first_layer_sum(p):
    h = group_routed_call(module.bind({"params": p}), 0, lambda m, x: m.apply_group(0, x), batch["x"],
                          jnp.array([1., 0., 0., 0., 0., 0.]))
    return h.sum()

  grads = jax.grad(first_layer_sum)(params)
  only_row0 = jax.grad(lambda p: jnp.tanh(batch["x"][:1] @ p["inp"]["kernel"] + p["inp"]["bias"]).sum())(params)
  chex.assert_trees_all_close(grads["inp"], only_row0["inp"], **TOL)
  assert not np.any(np.asarray(grads["out"]["kernel"]))


class _NoProtocol(nnx.Module):
  def __init__(self, rngs):
    self.blocks = nnx.List([nnx.Linear(2, 2, rngs=rngs)])

  def __call__(self, x):
    return self.blocks[0](x)


class _WrongCount(NNXNet):
  num_groups = 4


def test_errors_name_what_is_missing():
  x = jnp.ones((2, 2))
  with pytest.raises(TypeError, match=r"_NoProtocol does not follow govjax.routing.RoutableModel: it has no "
                                      r"num_groups, group_rules, apply_group \(embed_tokens/blocks/head alone"):
    routed_apply(_NoProtocol(nnx.Rngs(0)), x, jnp.ones((2, 1)))
  with pytest.raises(TypeError, match=r"Linen module LinenNet is not bound.*module.bind"):
    per_group_forward(LinenNet(), x, jnp.ones((2, 3)))
  with pytest.raises(ValueError, match=r"num_groups=4 but its group_rules\(\) define 3 groups"):
    routed_apply(_WrongCount(nnx.Rngs(0)), jnp.ones((2, 4)), jnp.ones((2, 4)))
  with pytest.raises(ValueError, match=r"example_loss must return one loss per example, shape \[B\] = \[6\]"):
    make_routed_loss("depth", example_loss=lambda out, b: out, inputs="x")(NNXNet(nnx.Rngs(0)), data(0), DEPTH)
  with pytest.raises(ValueError, match=r"no 'tokens' entry for the model input"):
    make_routed_loss("depth", example_loss=mse)(NNXNet(nnx.Rngs(0)), data(0), DEPTH)


# ----------------------------------------------------------------------------- parameters shared by two groups


class _TiedNNX(nnx.Module):
  """Tied embeddings: the head reads the embedding table (group 0) from group 2."""

  num_groups = 3

  def __init__(self, rngs):
    self.embed = nnx.Embed(7, 8, rngs=rngs)
    self.mid = nnx.Linear(8, 8, rngs=rngs)

  def group_rules(self):
    return [(r"embed/.*", 0), (r"mid/.*", 1), (r"head/.*", 2)]

  def apply_group(self, group, h):
    if group == 0:
      return self.embed(h)
    if group == 1:
      return h + self.mid(h)
    return self.embed.attend(h)


class _TiedLinen(nn.Module):
  num_groups: int = 3

  def setup(self):
    self.embed = nn.Embed(7, 8)
    self.mid = nn.Dense(8)

  def group_rules(self):
    return [(r"embed/.*", 0), (r"mid/.*", 1), (r"head/.*", 2)]

  def apply_group(self, group, h):
    if group == 0:
      return self.embed(h)
    if group == 1:
      return h + self.mid(h)
    return self.embed.attend(h)

  def __call__(self, tokens):
    for group in range(3):
      tokens = self.apply_group(group, tokens)
    return tokens


class _AliasedNNX(_TiedNNX):
  """The embedding module is also stored as ``head`` (a second path to the same parameters)."""

  def __init__(self, rngs):
    super().__init__(rngs)
    self.head = self.embed

  def apply_group(self, group, h):
    return self.head.attend(h) if group == 2 else super().apply_group(group, h)


def test_tied_embeddings_are_rejected_nnx_and_linen():
  tokens, mask = jnp.array([[1, 2], [3, 4]]), jnp.ones((2, 3))
  message = r"group 2 reads 'embed/embedding' \(group 0\)"
  for mode in ("depth", "per_group"):
    with pytest.raises(SharedParameterError, match=message):
      routed_apply(_TiedNNX(nnx.Rngs(0)), tokens, mask, mode=mode)
  module = _TiedLinen()
  params = module.init(jax.random.PRNGKey(0), tokens)["params"]
  with pytest.raises(SharedParameterError, match=message):
    jax.grad(lambda p: routed_apply(module.bind({"params": p}), tokens, mask).sum())(params)
  with pytest.raises(SharedParameterError, match=message):
    check_routable(_TiedNNX(nnx.Rngs(0)), jax.ShapeDtypeStruct((2, 2), jnp.int32))


def test_shared_parameters_are_found_when_groups_are_built():
  model = _AliasedNNX(nnx.Rngs(0))
  found = shared_parameters(model, model.group_rules())
  assert sorted(found) == [("embed/embedding", "head/embedding", 0, 2)]
  with pytest.raises(SharedParameterError, match=r"'embed/embedding' \(group 0\) is also 'head/embedding' "
                                                 r"\(group 2\)"):
    depth_groups(model, model.group_rules())
  # Paths of one group sharing a parameter are fine.
  assert shared_parameters(model, [(r"(embed|head)/.*", 0), (r"mid/.*", 1)]) == []
  ids = depth_groups(NNXNet(nnx.Rngs(0)), RULES)
  assert jax.tree.leaves(ids) == [0, 0, 1, 1, 2, 2]
