"""Small models of a user's own, following govjax.routing.RoutableModel, shared by the routing tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from govjax.routing.transforms import per_example_routed_aggregate

IN, HIDDEN, OUT = 4, 8, 3
RULES = [(r"inp/.*", 0), (r"mid/.*", 1), (r"out/.*", 2)]
G = 3


class NNXNet(nnx.Module):
  """Three depth groups: input layer, residual hidden layer, output layer."""

  num_groups = G

  def __init__(self, rngs: nnx.Rngs):
    self.inp = nnx.Linear(IN, HIDDEN, rngs=rngs)
    self.mid = nnx.Linear(HIDDEN, HIDDEN, rngs=rngs)
    self.out = nnx.Linear(HIDDEN, OUT, rngs=rngs)

  def group_rules(self):
    return RULES

  def apply_group(self, group, h):
    if group == 0:
      return jnp.tanh(self.inp(h))
    if group == 1:
      return h + jnp.tanh(self.mid(h))
    return self.out(h)

  def __call__(self, x):
    for group in range(G):
      x = self.apply_group(group, x)
    return x


class LinenNet(nn.Module):
  """The same network in Linen (submodules in ``setup`` so that ``apply_group`` can pick one)."""

  num_groups: int = G

  def setup(self):
    self.inp = nn.Dense(HIDDEN)
    self.mid = nn.Dense(HIDDEN)
    self.out = nn.Dense(OUT)

  def group_rules(self):
    return RULES

  def apply_group(self, group, h):
    if group == 0:
      return jnp.tanh(self.inp(h))
    if group == 1:
      return h + jnp.tanh(self.mid(h))
    return self.out(h)

  def __call__(self, x):
    for group in range(G):
      x = self.apply_group(group, x)
    return x


def mse(outputs, batch):
  """Per-example mean squared error, ``[B]``."""
  return ((outputs - batch["y"]) ** 2).mean(axis=-1)


def data(seed, batch=6):
  kx, ky = jax.random.split(jax.random.PRNGKey(seed))
  return {"x": jax.random.normal(kx, (batch, IN)), "y": jax.random.normal(ky, (batch, OUT))}


def reference_grads(apply, params, batch, mask, normaliser="batch", loss=mse):
  """Per-example gradients (vmap over single rows) aggregated by the reference transform."""

  def single(p, x, y):
    return loss(apply(p, x[None]), {"y": y[None]})[0]

  per_example = jax.vmap(jax.grad(single), in_axes=(None, 0, 0))(params, batch["x"], batch["y"])
  tx = per_example_routed_aggregate(RULES, normaliser=normaliser)
  grads, _ = tx.update(per_example, tx.init(params), group_mask=mask)
  return grads
