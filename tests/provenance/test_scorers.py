"""Scorers against exact references: least-squares influence (TRAK), the index (TracIn), identity Adam."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from govjax.core.checkpoint import CheckpointParams
from govjax.provenance.featurize import FeatureConfig, Featurizer, project
from govjax.provenance.index import build_index
from govjax.provenance.query import Tracer
from govjax.provenance.record import read_training_record
from govjax.provenance.runs import load_tracer, training_examples
from govjax.provenance.scorers import (
    checkpoint_features,
    ensemble,
    exact_trak_scores,
    flat_gradients,
    gradient_grams,
    gram_damping,
    tracin_scores,
    trak_damping,
    trak_scores,
)


class Linear(nnx.Module):
  def __init__(self, w: np.ndarray):
    self.w = nnx.Param(jnp.asarray(w, jnp.float32))


def squared_error(model, inputs):
  return 0.5 * (inputs["x"] @ model.w[...] - inputs["y"]) ** 2


def output(model, inputs):
  return inputs["x"] @ model.w[...]


def featurizer(loss, graphdef, k):
  return Featurizer(graphdef, loss, group_of_path=lambda path: 0, num_groups=1,
                    config=FeatureConfig(k=k, projection="gaussian", seed=3))


def test_trak_without_projection_loss_equals_closed_form_influence_and_leave_one_out():
  rng = np.random.default_rng(0)
  n, p = 12, 4
  x = rng.normal(size=(n, p)).astype(np.float32)
  y = (x @ rng.normal(size=p) + 0.3 * rng.normal(size=n)).astype(np.float32)
  w, *_ = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)
  graphdef, params = nnx.split(Linear(w), nnx.Param)
  inputs = {"x": x, "y": y}
  # k = P: an invertible projection, so TRAK in the projected space is TRAK without projection.
  phi = featurizer(squared_error, graphdef, p)(params, inputs)
  kernel = featurizer(output, graphdef, p)(params, inputs)  # Gauss-Newton of least squares: output gradients
  xq = rng.normal(size=(3, p)).astype(np.float32)
  yq = rng.normal(size=3).astype(np.float32)
  psi = featurizer(squared_error, graphdef, p)(params, {"x": xq, "y": yq})
  scores = trak_scores(phi, psi, damping=0.0, kernel_features=kernel)

  xd = x.astype(np.float64)
  hessian = xd.T @ xd
  g_train = (xd @ w - y)[:, None] * xd
  g_query = (xq @ w - yq)[:, None] * xq
  closed_form = g_query @ np.linalg.solve(hessian, g_train.T)
  np.testing.assert_allclose(scores, closed_form, rtol=2e-3, atol=2e-4)

  # The closed form is exact first-order leave-one-out: w_{-n} - w = H^-1 g_n / (1 - h_n).
  leverage = np.einsum("np,pq,nq->n", xd, np.linalg.inv(hessian), xd)
  for i in range(n):
    keep = np.arange(n) != i
    w_minus, *_ = np.linalg.lstsq(xd[keep], y[keep].astype(np.float64), rcond=None)
    np.testing.assert_allclose(g_query @ (w_minus - w), scores[:, i] / (1 - leverage[i]), rtol=5e-3, atol=5e-4)


def test_the_default_index_scores_tracin_and_precondition_update_scores_tracin_adam(tiny_run):
  tracer = load_tracer(tiny_run.workdir)  # built by `govjax index` with its default --precondition none
  assert not tracer.featurizer.config.precondition
  examples = training_examples(tiny_run.data)
  record = read_training_record(tiny_run.workdir, num_examples=len(examples))
  inputs = {"tokens": examples.tokens}
  raw = np.stack([checkpoint_features(tracer.featurizer, c, inputs, record.credit_masks()[i])
                  for i, c in enumerate(tracer.checkpoints)])
  queries = examples.tokens[:5]
  psi = np.stack([checkpoint_features(tracer.featurizer, c, {"tokens": queries}) for c in tracer.checkpoints])
  influence = tracer.influence({"tokens": queries})
  np.testing.assert_allclose(tracin_scores(raw, psi, record.learning_rates), influence, rtol=1e-4, atol=1e-6)
  # --precondition update: the index holds each example's Adam step, the queries stay raw (TracIn-Adam).
  adam = np.stack([checkpoint_features(tracer.featurizer, c, inputs, record.credit_masks()[i], adam=True)
                   for i, c in enumerate(tracer.checkpoints)])
  update = Featurizer(tracer.featurizer.graphdef, tracer.featurizer.example_loss,
                      group_of_path=tracer.featurizer.group_of_path, num_groups=tracer.featurizer.num_groups,
                      config=dataclasses.replace(tracer.featurizer.config, precondition=True, query_precondition=False))
  index = build_index(update, tracer.checkpoints, inputs, record.credit_masks(), example_work=examples.work_index,
                      works=tracer.index.works)
  adam_influence = Tracer(index, update, tracer.checkpoints).influence({"tokens": queries})
  np.testing.assert_allclose(tracin_scores(adam, psi, record.learning_rates), adam_influence, rtol=1e-4, atol=1e-6)
  assert not np.allclose(adam_influence, influence, rtol=1e-2)


def test_tracin_adam_with_unit_second_moment_is_tracin():
  rng = np.random.default_rng(1)
  graphdef, params = nnx.split(Linear(rng.normal(size=4)), nnx.Param)
  feat = featurizer(squared_error, graphdef, 64)
  inputs = {"x": rng.normal(size=(6, 4)).astype(np.float32), "y": rng.normal(size=6).astype(np.float32)}
  ckpt = CheckpointParams(step=1, learning_rate=0.1, params=params, adam_nu={"w": np.ones(4, np.float32)},
                          adam_count=10 ** 6)
  np.testing.assert_allclose(checkpoint_features(feat, ckpt, inputs, adam=True),
                             checkpoint_features(feat, ckpt, inputs), rtol=1e-6)
  # A larger second moment on a coordinate shrinks Adam's step there, and the features with it.
  ckpt = dataclasses.replace(ckpt, adam_nu={"w": np.array([4.0, 1.0, 1.0, 1.0], np.float32)})
  grads = feat.per_example_grads(params, inputs)["w"]
  # Adam's step is g / (sqrt(nu_hat) + eps): the same projection of the rescaled gradient.
  expected = np.asarray(project({"w": grads / np.array([2.0, 1.0, 1.0, 1.0], np.float32)}, feat.config))
  np.testing.assert_allclose(checkpoint_features(feat, ckpt, inputs, adam=True), expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="second moment"):
    checkpoint_features(feat, CheckpointParams(step=2, learning_rate=0.1, params=params, adam_nu=None,
                                               adam_count=None), inputs, adam=True)


def test_trak_with_orthonormal_features_ranks_like_tracin():
  phi = np.eye(3, dtype=np.float32)
  psi = np.array([[3.0, -1.0, 2.0]], np.float32)
  trak = trak_scores(phi, psi, damping=0.0)
  tracin = tracin_scores(phi[None], psi[None], [0.5])
  np.testing.assert_allclose(trak, tracin / 0.5)
  np.testing.assert_allclose(trak_scores(phi, psi, damping=1.0), tracin)  # (I + I)^-1 = I / 2
  assert trak_damping(phi, relative=0.1) == pytest.approx(0.1)
  np.testing.assert_allclose(ensemble([trak, 3 * trak]), 2 * trak)


def test_exact_trak_from_grams_equals_trak_of_the_unprojected_gradients():
  rng = np.random.default_rng(2)
  phi, psi = rng.normal(size=(7, 20)), rng.normal(size=(3, 20))  # N < P: only the damped inverse exists
  for damping in (1e-2, 1.0, 30.0):
    np.testing.assert_allclose(exact_trak_scores(phi @ phi.T, psi @ phi.T, damping=damping),
                               trak_scores(phi, psi, damping=damping), rtol=1e-6, atol=1e-9)
  # The relative damping has the same scale as TRAK's: trace / N here, trace / k there.
  assert gram_damping(phi @ phi.T, relative=2.0) == pytest.approx(2.0 * np.sum(phi ** 2) / 7)


def test_gradient_grams_are_products_of_masked_per_example_gradients(tiny_run):
  tracer = load_tracer(tiny_run.workdir)
  examples = training_examples(tiny_run.data)
  params = tracer.checkpoints[-1].params
  train = {"tokens": examples.tokens[:6]}
  query = {"tokens": examples.tokens[6:9]}
  mask = np.ones((6, tracer.featurizer.num_groups), np.float32)
  mask[0, 1:] = 0.0  # example 0 trained only in group 0
  mask[1] = 0.5
  grads = tracer.featurizer.per_example_grads(params, train)
  expected = []
  for n in range(6):
    expected.append(np.concatenate([grads[p][n].ravel() * mask[n, tracer.featurizer.group_index(p)]
                                    for p in sorted(grads)]))
  expected = np.stack(expected).astype(np.float64)
  flat = flat_gradients(tracer.featurizer, params, train, mask, chunk=4)
  np.testing.assert_allclose(flat, expected, rtol=1e-5, atol=1e-6)  # batch shapes differ
  gram, (cross,) = gradient_grams(tracer.featurizer, params, train, [query], mask)
  np.testing.assert_allclose(gram, expected @ expected.T, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(cross, flat_gradients(tracer.featurizer, params, query).astype(np.float64)
                             @ expected.T, rtol=1e-4, atol=1e-6)
  # A group outside the mask contributes nothing: example 0's gradient is its group-0 part alone.
  group0 = [p for p in sorted(grads) if tracer.featurizer.group_index(p) == 0]
  assert np.abs(flat[0]).sum() == pytest.approx(sum(np.abs(grads[p][0]).sum() for p in group0), rel=1e-5)


def test_scorers_refuse_mismatched_shapes():
  with pytest.raises(ValueError, match="disagree"):
    tracin_scores(np.zeros((2, 3, 4)), np.zeros((1, 5, 4)), [1.0, 1.0])
  with pytest.raises(ValueError, match="damping"):
    trak_scores(np.eye(2), np.eye(2), damping=-1.0)
  with pytest.raises(ValueError, match="damping must be > 0"):
    exact_trak_scores(np.eye(2), np.eye(2), damping=0.0)
  with pytest.raises(ValueError, match=r"\[N, N\] and \[Q, N\]"):
    exact_trak_scores(np.eye(2), np.zeros((1, 3)), damping=1.0)
  with pytest.raises(ValueError, match="different shapes"):
    ensemble([np.zeros((1, 2)), np.zeros((2, 1))])
