"""DP-SGD step: exact against the plain step without noise/clipping, per-example clipping, resumable noise."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from govjax.baselines.dpsgd import dp_aggregate, privacy_spent
from govjax.core.config import ModelSpec, TrainConfig
from govjax.train.gradients import per_example_gradients
from govjax.train.step import create_train_state, make_optimizer, make_train_step

B, T, V = 4, 8, 11
CONFIG = TrainConfig(model=ModelSpec(num_layers=1, width=16, num_heads=2, context=T), num_steps=10,
                     warmup_steps=0, learning_rate=1e-2)
MASK = jnp.ones((B, CONFIG.model.num_layers + 2))


def _batch(seed):
  tokens = np.random.default_rng(seed).integers(3, V, size=(B, T)).astype(np.int32)
  tokens[-1, -2:] = 0
  return {"tokens": jnp.asarray(tokens), "example_id": jnp.arange(B, dtype=jnp.int32)}


def _only_row(batch, i):
  """The batch with every row but ``i`` all PAD (a PAD-only row has zero loss and zero gradient)."""
  tokens = np.array(batch["tokens"])
  tokens[np.arange(B) != i] = 0
  return dict(batch, tokens=jnp.asarray(tokens))


def _delta(new, old):
  """``new - old`` as a tree of numpy arrays (reference math runs in numpy: eager JAX compiles per shape)."""
  return jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new, old)


def _norms(grads):
  """Global L2 norm of each example's gradient ``[B]``."""
  return np.sqrt(sum((g.reshape(B, -1).astype(np.float64) ** 2).sum(1) for g in jax.tree.leaves(grads)))


class Steps:
  """Shared setup: one initial state and lazily compiled steps (compiling is the slow part of these tests)."""

  def __init__(self):
    self.graphdef, self.state, _, _ = create_train_state(CONFIG, vocab_size=V, tx=optax.sgd(1.0))
    self.cache = {}

  def sgd(self, clip, noise, microbatch=None):
    """A DP step with SGD at lr 1 (so ``new - old params = -privatised gradient``) and its initial state."""
    key = ("dp", clip, noise, microbatch)
    if key not in self.cache:
      tx = optax.chain(dp_aggregate(clip, noise), optax.sgd(1.0))
      gradients = per_example_gradients(microbatch, clip_norm=clip, prefix="dp/")
      step = make_train_step(self.graphdef, tx, gradients=gradients, donate=False)
      self.cache[key] = step, self.state._replace(opt_state=tx.init(self.state.params))
    return self.cache[key]

  def plain(self):
    if "plain" not in self.cache:
      self.cache["plain"] = make_train_step(self.graphdef, optax.sgd(1.0), donate=False)
    return self.cache["plain"]

  def per_example_grads(self, batch):
    """Reference per-example gradients, each from a batch where only that row is not PAD."""
    step, state = self.sgd(1e6, 0.0)
    rows = [_delta(step(state, _only_row(batch, i), MASK)[0].params, self.state.params) for i in range(B)]
    return jax.tree.map(lambda *d: -B * np.stack(d), *rows)


@pytest.fixture(scope="module")
def steps():
  return Steps()


def test_no_noise_huge_clip_equals_plain_step(steps):
  batch = _batch(0)
  dp_step, state = steps.sgd(1e6, 0.0)
  dp_state, dp_metrics = dp_step(state, batch, MASK)
  plain_state, plain_metrics = steps.plain()(steps.state, batch, MASK)
  chex.assert_trees_all_close(dp_state.params, plain_state.params, atol=1e-6, rtol=1e-6)
  for name in ("loss", "grad_norm", "per_example_loss", "contributors", "group_mask"):
    chex.assert_trees_all_close(dp_metrics[name], plain_metrics[name], atol=1e-6, rtol=1e-5)
  assert int(dp_state.step) == 1 and float(dp_metrics["dp/clipped_fraction"]) == 0.0
  # the per-example reference adds up to the plain gradient
  grads = steps.per_example_grads(batch)
  chex.assert_trees_all_close(jax.tree.map(lambda g: -g.mean(0), grads), _delta(plain_state.params, steps.state.params),
                              atol=1e-6, rtol=1e-5)


def test_clipping_bounds_each_example_microbatched(steps):
  clip = 0.05
  batch = _batch(1)
  dp_step, state = steps.sgd(clip, 0.0, microbatch=3)
  new_state, metrics = dp_step(state, batch, MASK)  # per-example gradients in chunks of 3 and 1 rows
  grads = steps.per_example_grads(batch)
  norms = _norms(grads)
  assert (norms > clip).all()  # every example is clipped at this bound
  np.testing.assert_allclose(metrics["dp/example_grad_norm"], norms, rtol=1e-4)
  assert float(metrics["dp/clipped_fraction"]) == 1.0
  scale = np.minimum(1.0, clip / norms).astype(np.float32)
  expected = jax.tree.map(lambda g: -(g * scale.reshape((-1,) + (1,) * (g.ndim - 1))).mean(0), grads)
  delta = _delta(new_state.params, steps.state.params)
  chex.assert_trees_all_close(delta, expected, atol=1e-7, rtol=1e-3)
  assert np.sqrt(sum((d.astype(np.float64) ** 2).sum() for d in jax.tree.leaves(delta))) <= clip + 1e-6


def test_aggregate_noise_scale_and_key():
  clip, noise, size = 0.5, 2.0, 4
  tx = dp_aggregate(clip, noise)
  update = jax.jit(lambda g, k: tx.update(g, tx.init(None), key=k)[0])
  zeros = {"a": jnp.zeros((size, 300, 10)), "b": jnp.zeros((size, 1000))}
  drawn = update(zeros, jax.random.PRNGKey(0))
  values = np.concatenate([np.ravel(x) for x in jax.tree.leaves(drawn)])
  assert abs(values.std() / (clip * noise / size) - 1.0) < 0.05  # N(0, (clip * noise)^2) on the sum, then / B
  assert abs(values.mean()) < 0.05 * clip * noise / size
  chex.assert_trees_all_equal(drawn, update(zeros, jax.random.PRNGKey(0)))
  typed = update(zeros, jax.random.key(0))
  assert not np.allclose(drawn["b"], update(zeros, jax.random.PRNGKey(1))["b"])
  assert typed["b"].shape == (1000,)


def test_optimizer_plugins_and_resume(steps):
  tx, _ = make_optimizer(CONFIG, before=(dp_aggregate(0.1, 1.0),))

  @dataclasses.dataclass
  class Recorder:
    name: str = "recorder"
    needs_hidden: bool = True

    def init(self, num_examples):
      return jnp.zeros(())

    def effective_mask(self, plugin_state, batch, group_mask):
      return group_mask.at[0, 0].set(0.0)

    def update(self, plugin_state, batch, aux, step):
      assert aux["per_example_loss"].shape == (B,) and aux["logits"].shape == (B, T, V)
      assert [h.shape for h in aux["hidden"]] == [(B, T, 16)] * (CONFIG.model.num_layers + 1)
      return plugin_state + aux["per_example_loss"].sum(), {"contributors": aux["contributors"]}

  plugin = Recorder()
  state = steps.state._replace(opt_state=tx.init(steps.state.params), extras={"recorder": plugin.init(B)})
  step = make_train_step(steps.graphdef, tx, gradients=per_example_gradients(prefix="dp/"), plugins=(plugin,),
                         donate=False)
  batch = _batch(3)
  first, metrics = step(state, batch, MASK)
  np.testing.assert_array_equal(metrics["recorder/contributors"], [B - 1, B, B])
  np.testing.assert_allclose(first.extras["recorder"], metrics["per_example_loss"].sum(), rtol=1e-6)
  assert "dp/clipped_fraction" not in metrics and metrics["dp/example_grad_norm"].shape == (B,)
  assert all(jax.tree.leaves(jax.tree.map(lambda d: bool(np.any(d != 0)), _delta(first.params, state.params))))
  # same state -> same noise; resuming from a host copy of the state replays the next step bitwise
  chex.assert_trees_all_equal(first, step(state, batch, MASK)[0])
  second, _ = step(first, batch, MASK)
  resumed = jax.tree.map(lambda x: jnp.array(np.asarray(x)), first)
  chex.assert_trees_all_equal(second, step(resumed, batch, MASK)[0])
  # the noise differs between steps: the same state at a different step number gives a different update
  shifted, _ = step(state._replace(step=jnp.ones((), jnp.int32)), batch, MASK)
  assert not np.allclose(np.asarray(jax.tree.leaves(shifted.params)[0]), np.asarray(jax.tree.leaves(first.params)[0]))


def test_aggregate_needs_key_and_valid_arguments():
  tx = dp_aggregate(1.0, 1.0)
  grads = {"w": jnp.ones((2, 3))}
  with pytest.raises(ValueError, match="needs key="):
    tx.update(grads, tx.init(None))
  out, _ = tx.update(grads, tx.init(None), key=jax.random.PRNGKey(0))
  assert out["w"].shape == (3,)
  with pytest.raises(ValueError, match="l2_norm_clip"):
    dp_aggregate(0.0, 1.0)
  with pytest.raises(ValueError, match="noise_multiplier"):
    dp_aggregate(1.0, -1.0)


def test_privacy_spent_reports_missing_accountant():
  out = privacy_spent(noise_multiplier=0.0, sample_rate=0.01, steps=100, delta=1e-5)
  assert out["epsilon"] is None and "infinite" in out["note"]
  out = privacy_spent(noise_multiplier=1.1, sample_rate=0.01, steps=100, delta=1e-5)
  try:
    import dp_accounting  # noqa: F401
  except ImportError:
    assert out["epsilon"] is None and "not installed" in out["note"]
  else:
    assert 0 < out["epsilon"] < 10
