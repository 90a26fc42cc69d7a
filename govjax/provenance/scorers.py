"""Attribution scorers over projected per-example gradients: TracIn, TracIn with Adam's update, TRAK-style.

Every scorer maps training features ``phi`` and query features ``psi`` (the same seeded projection, see
:mod:`govjax.provenance.featurize`) to a ``[Q, N]`` score matrix; positive means "training on ``n`` lowered the
query's loss". They differ in the metric between the two gradients:

- **TracIn** (Pruthi et al. 2020): ``sum_c lr_c <phi_c(n), psi_c(q)>`` over checkpoints ``c`` (raw gradients).
- **TracIn-Adam**: the same sum with each training gradient replaced by the step Adam actually took for it,
  ``g_n / (sqrt(nu_hat_c) + eps)`` (the checkpoint's second moment), the query side left raw: first order, the
  query's loss changes by ``lr_c <grad_q, update_n>``.
- **TRAK-style** (Park et al. 2023): at the final parameters of each of ``M`` independently trained models,
  ``psi(q)^T (Phi^T Phi + lambda I)^-1 phi(n)`` with ``Phi`` the ``[N, k]`` matrix of all training features, the
  Gauss-Newton (here: empirical Fisher of the loss gradients) curvature in the projected space; averaged over the
  ``M`` models. ``kernel_features`` lets the curvature come from other features than the scored ones (for a
  least-squares model the Gauss-Newton matrix is built from the output gradients ``x_n``, which is how the tests
  compare it with the closed-form influence function).
- **Exact TRAK** (the same estimator without the random projection): with ``G`` the ``P``-dimensional per-example
  gradients, ``G_q^T (G^T G + lambda I)^-1 G_n`` equals ``(G_q G^T) (G G^T + lambda I)^-1`` (the push-through
  identity), so it needs only the ``[N, N]`` Gram matrix of the training gradients and the ``[Q, N]`` cross Gram
  (:func:`gradient_grams`, :func:`exact_trak_scores`): no projection error, ``O(N^2)`` memory, for models whose
  ``N x P`` gradients fit in memory. Like TRAK it is averaged over models (and, optionally, checkpoints).

Example:
  >>> phi = np.eye(2, dtype=np.float32)[None]            # one checkpoint, two orthogonal examples
  >>> psi = np.array([[[2.0, 1.0]]], np.float32)         # one query
  >>> tracin_scores(phi, psi, np.array([0.5])).tolist()
  [[1.0, 0.5]]
  >>> trak_scores(phi[0], psi[0], damping=0.0).tolist()  # Phi^T Phi = I: the same ranking, no learning rate
  [[2.0, 1.0]]
  >>> exact_trak_scores(phi[0] @ phi[0].T, psi[0] @ phi[0].T, damping=1.0).tolist()  # (I + I)^-1
  [[1.0, 0.5]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from govjax.core.checkpoint import CheckpointParams
from govjax.provenance.featurize import Featurizer, adam_preconditioner

SCORERS = ("tracin", "tracin_adam", "trak", "trak_exact")

__all__ = ["SCORERS", "checkpoint_features", "ensemble", "exact_trak_scores", "flat_gradients", "gradient_grams",
           "gram_damping", "tracin_scores", "trak_damping", "trak_scores"]


def tracin_scores(train_features: np.ndarray, query_features: np.ndarray, learning_rates: Sequence[float]
                  ) -> np.ndarray:
  """``sum_c lr_c * psi_c @ phi_c.T``.

  Args:
    train_features: float ``[C, N, k]`` (raw, or Adam-preconditioned for TracIn-Adam).
    query_features: float ``[C, Q, k]``.
    learning_rates: ``[C]`` learning rate each checkpoint stands for.

  Returns:
    float64 ``[Q, N]``.
  """
  train_features = np.asarray(train_features, np.float64)
  query_features = np.asarray(query_features, np.float64)
  lrs = np.asarray(learning_rates, np.float64)
  if train_features.ndim != 3 or query_features.ndim != 3:
    raise ValueError(f"tracin_scores: features must be [C, N, k] and [C, Q, k], got {train_features.shape} and "
                     f"{query_features.shape}")
  if (train_features.shape[0], train_features.shape[2]) != (query_features.shape[0], query_features.shape[2]) or \
      lrs.shape != (train_features.shape[0],):
    raise ValueError(f"tracin_scores: train {train_features.shape}, query {query_features.shape} and learning "
                     f"rates {lrs.shape} disagree on checkpoints or k")
  return np.einsum("c,cqk,cnk->qn", lrs, query_features, train_features)


def trak_damping(kernel_features: np.ndarray, *, relative: float) -> float:
  """``lambda = relative * trace(Phi^T Phi) / k``: damping relative to the mean eigenvalue of the curvature."""
  kernel_features = np.asarray(kernel_features, np.float64)
  return float(relative * np.sum(kernel_features ** 2) / kernel_features.shape[1])


def trak_scores(train_features: np.ndarray, query_features: np.ndarray, *, damping: float,
                kernel_features: np.ndarray | None = None) -> np.ndarray:
  """``psi @ (K^T K + damping I)^-1 @ phi.T`` with ``K = kernel_features`` (default ``phi``).

  Args:
    train_features: float ``[N, k]`` training features at one set of parameters.
    query_features: float ``[Q, k]`` query features at the same parameters.
    damping: ``lambda >= 0`` (0 needs ``K^T K`` invertible, i.e. ``N >= k`` and full rank).
    kernel_features: float ``[M, k]`` features the curvature is built from.

  Returns:
    float64 ``[Q, N]``.
  """
  phi = np.asarray(train_features, np.float64)
  psi = np.asarray(query_features, np.float64)
  kernel = phi if kernel_features is None else np.asarray(kernel_features, np.float64)
  if phi.ndim != 2 or psi.ndim != 2 or kernel.ndim != 2 or not phi.shape[1] == psi.shape[1] == kernel.shape[1]:
    raise ValueError(f"trak_scores: features must be [N, k], [Q, k] and [M, k], got {phi.shape}, {psi.shape}, "
                     f"{kernel.shape}")
  if not damping >= 0:
    raise ValueError(f"trak_scores: damping must be >= 0, got {damping!r}")
  gram = kernel.T @ kernel + damping * np.eye(kernel.shape[1])
  solved = np.linalg.solve(gram, psi.T)  # [k, Q]; gram is symmetric
  return solved.T @ phi.T


def gram_damping(train_gram: np.ndarray, *, relative: float) -> float:
  """``lambda = relative * trace(G G^T) / N``: damping relative to the mean nonzero eigenvalue of the curvature
  when ``N <= P`` (the counterpart of :func:`trak_damping`, whose trace is the same up to projection error)."""
  train_gram = np.asarray(train_gram, np.float64)
  return float(relative * np.trace(train_gram) / train_gram.shape[0])


def exact_trak_scores(train_gram: np.ndarray, cross_gram: np.ndarray, *, damping: float) -> np.ndarray:
  """``cross_gram @ (train_gram + damping I)^-1``: TRAK's score with the unprojected gradients.

  Args:
    train_gram: float ``[N, N]``, ``G G^T`` of the training gradients.
    cross_gram: float ``[Q, N]``, ``G_q G^T`` of the query gradients with the training gradients.
    damping: ``lambda > 0`` (the push-through identity needs it unless ``G G^T`` is invertible).

  Returns:
    float64 ``[Q, N]``, equal to :func:`trak_scores` of the unprojected gradients with the same ``damping``.
  """
  gram = np.asarray(train_gram, np.float64)
  cross = np.asarray(cross_gram, np.float64)
  if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or cross.ndim != 2 or cross.shape[1] != gram.shape[0]:
    raise ValueError(f"exact_trak_scores: grams must be [N, N] and [Q, N], got {gram.shape} and {cross.shape}")
  if not damping > 0:
    raise ValueError(f"exact_trak_scores: damping must be > 0, got {damping!r}")
  return np.linalg.solve(gram + damping * np.eye(gram.shape[0]), cross.T).T  # the gram is symmetric


def flat_gradients(featurizer: Featurizer, params, inputs: Mapping[str, np.ndarray], mask: np.ndarray | None = None,
                   *, chunk: int = 64) -> np.ndarray:
  """Unprojected per-example gradients, leaves in path order, each group's part times the example's mask.

  Args:
    featurizer: supplies the loss, the parameter groups and the per-example gradients.
    params: the checkpoint's parameters.
    inputs: the examples (leading ``[N]`` axis).
    mask: ``[N, G]`` group weights (default all ones); a zero weight zeroes the group exactly.
    chunk: examples per gradient call.

  Returns:
    float32 ``[N, P]`` (``P`` the parameter count: small models only).
  """
  n = len(next(iter(inputs.values())))
  mask = np.ones((n, featurizer.num_groups), np.float32) if mask is None else np.asarray(mask, np.float32)
  if mask.shape != (n, featurizer.num_groups):
    raise ValueError(f"flat_gradients: mask has shape {mask.shape}, expected {(n, featurizer.num_groups)}")
  rows = []
  for start in range(0, n, chunk):
    grads = featurizer.per_example_grads(params, {k: np.asarray(v)[start: start + chunk] for k, v in inputs.items()})
    weights = mask[start: start + chunk]
    parts = []
    for path in sorted(grads):
      g = grads[path].reshape(len(weights), -1).astype(np.float32)
      w = weights[:, featurizer.group_index(path)][:, None]
      parts.append(np.where(w > 0, w * g, 0.0))
    rows.append(np.concatenate(parts, axis=1))
  return np.concatenate(rows).astype(np.float32)


def gradient_grams(featurizer: Featurizer, params, train_inputs: Mapping[str, np.ndarray],
                   query_inputs: Sequence[Mapping[str, np.ndarray]], mask: np.ndarray | None = None
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
  """The training Gram ``[N, N]`` and one cross Gram ``[Q_i, N]`` per query set, at one checkpoint.

  Args:
    featurizer: as for :func:`flat_gradients`.
    params: the checkpoint's parameters.
    train_inputs: the training examples; ``mask`` ``[N, G]`` their depth masks (queries are unmasked).
    query_inputs: query sets (e.g. held-out windows, generated outputs).
    mask: training masks (default all groups).

  Returns:
    ``(G G^T float64 [N, N], [G_q G^T float64 [Q_i, N] per query set])``.
  """
  train = flat_gradients(featurizer, params, train_inputs, mask).astype(np.float64)
  crosses = [flat_gradients(featurizer, params, q).astype(np.float64) @ train.T for q in query_inputs]
  return train @ train.T, crosses


def ensemble(scores: Sequence[np.ndarray]) -> np.ndarray:
  """Mean of score matrices of independently trained models (TRAK's ensemble)."""
  if not len(scores):
    raise ValueError("ensemble: no score matrices")
  shapes = {np.shape(s) for s in scores}
  if len(shapes) != 1:
    raise ValueError(f"ensemble: score matrices of different shapes {sorted(shapes)}")
  return np.mean(np.stack([np.asarray(s, np.float64) for s in scores]), axis=0)


def checkpoint_features(featurizer: Featurizer, checkpoint: CheckpointParams, inputs: Mapping[str, np.ndarray],
                        mask: np.ndarray | None = None, *, adam: bool = False) -> np.ndarray:
  """Raw (or, with ``adam``, Adam-update) projected gradients ``[N, k]`` of examples at one checkpoint.

  Args:
    featurizer: a featurizer without normalisation or preconditioning in its config.
    checkpoint: the checkpoint (with ``adam_nu`` / ``adam_count`` when ``adam``).
    inputs: the examples (``{"tokens": [N, L]}``).
    mask: ``[N, G]`` depth-group masks (default all groups).
    adam: divide the gradients by ``sqrt(nu_hat) + eps`` before projecting.

  Returns:
    float32 ``[N, k]``.
  """
  config = featurizer.config
  if config.normalize or config.precondition:
    raise ValueError("checkpoint_features: pass a featurizer whose FeatureConfig has normalize=False and "
                     "precondition=False (the scorer decides the metric)")
  if not adam:
    return featurizer(checkpoint.params, inputs, mask)
  if checkpoint.adam_nu is None:
    raise ValueError(f"checkpoint {checkpoint.step}: TracIn-Adam needs the Adam second moment, which this "
                     "checkpoint's optimizer state does not hold")
  adam_featurizer = featurizer.with_config(precondition=True)
  pre = adam_preconditioner(checkpoint.adam_nu, count=checkpoint.adam_count, config=adam_featurizer.config)
  return adam_featurizer(checkpoint.params, inputs, mask, preconditioner=pre)
