"""Depth-masked, randomly projected per-example loss gradients (the features of a TracIn/TRAK index).

For a checkpoint's parameters ``w`` and a training example ``z`` with group mask ``m`` (which depth groups its
gradient reached, see :mod:`govjax.provenance.record`), the feature is

    phi(z) = S( sum_g m_g * P(grad_g loss(w, z)) )   (optionally / ||P(grad loss(w, z))||, optionally Adam-
                                                       preconditioned)

where ``P`` is a seeded Johnson-Lindenstrauss projection to ``k`` dimensions, applied leaf by leaf so that the
projection of the concatenated gradient is the sum of per-leaf projections. Groups an example never reached
contribute nothing: an example trained only in the surface cannot be credited through the trunk. The optional
normalisation divides by the norm of the *unmasked* gradient, so that masking still lowers the feature's norm.

Projections (``FeatureConfig.projection``):

- ``"sparse"`` (default): a sparse Rademacher / CountSketch projection (Charikar et al. 2002; Kane and Nelson
  2014): every coordinate goes to ``sparsity`` random buckets of ``k`` with a random sign. Unbiased for inner
  products with the variance of a dense JL projection (up to heavy single coordinates), O(P) per example, so
  indexing costs little more than the per-example gradients themselves.
- ``"rademacher"`` / ``"gaussian"``: dense ``[P, k]`` matrices (TRAK), generated chunk by chunk (never the whole
  ``[P, k]`` matrix at once). O(P k) per example: a reference and for small models.

The sparse projection's buckets and signs of a leaf come from NumPy's generator seeded with
``(seed, crc32(path))`` (drawn once, passed into the jitted function); the dense ones from
``fold_in(PRNGKey(seed), crc32(path))`` and the chunk index. Train and query features so share one projection
and the index is reproducible from its seed. Per-example gradients are computed with ``vmap(grad)`` over
microbatches of ``FeatureConfig.microbatch`` examples only, so the full per-example gradient exists for at most
that many examples at a time.

Example:
  >>> import jax.numpy as jnp, numpy as np
  >>> from flax import nnx
  >>> from govjax.models.transformer import Transformer, TransformerConfig
  >>> model = Transformer(TransformerConfig(vocab_size=9, num_layers=1, width=16, num_heads=2, context=8),
  ...                     rngs=nnx.Rngs(0))
  >>> graphdef, params = nnx.split(model, nnx.Param)
  >>> feat = transformer_featurizer(graphdef, num_layers=1, config=FeatureConfig(k=32))
  >>> tokens = np.arange(24, dtype=np.int32).reshape(3, 8) % 9
  >>> mask = np.array([[1, 1, 1], [0, 0, 1], [0, 0, 0]], np.float32)
  >>> phi = feat(params, {"tokens": tokens}, mask)
  >>> phi.shape, bool(np.all(phi[2] == 0))
  ((3, 32), True)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from govjax.core.checkpoint import CheckpointParams
from govjax.core.losses import per_example_next_token_loss
from govjax.core.trees import path_key

PROJECTIONS = ("sparse", "rademacher", "gaussian")
ExampleLoss = Callable[[nnx.Module, Mapping[str, jax.Array]], jax.Array]


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """How gradients become index features.

  Attributes:
    k: projected dimension.
    seed: projection seed.
    projection: ``"sparse"``, ``"rademacher"`` or ``"gaussian"`` (see the module docstring).
    sparsity: buckets per coordinate for the sparse projection.
    normalize: divide every feature by the norm of the example's *unmasked* projected gradient (TrackStar's
      unit normalisation when all groups are on; with a depth mask the masked groups' share of the norm is
      kept, so an example trained only in the head cannot outweigh one trained at full depth).
    precondition: divide training gradients by ``sqrt(nu_hat) + eps`` with the checkpoint's Adam second moment,
      i.e. index the Adam step each example contributed; needs the checkpoint's optimizer state.
    query_precondition: with ``precondition``, precondition the query gradients too (TrackStar's symmetric
      metric). False (``govjax index --precondition update``): queries stay raw, so a score is the first-order
      change of the query's loss under the Adam steps of the example (TracIn-Adam).
    eps: preconditioner epsilon.
    adam_b2: Adam's beta2, for the bias correction of ``nu``.
    microbatch: examples per ``vmap(grad)`` call.
    chunk_elements: dense projections generate at most this many matrix entries at once.
  """

  k: int = 512
  seed: int = 0
  projection: str = "sparse"
  sparsity: int = 1
  normalize: bool = False
  precondition: bool = False
  query_precondition: bool = True
  eps: float = 1e-8
  adam_b2: float = 0.999
  microbatch: int = 16
  chunk_elements: int = 1 << 22

  def __post_init__(self):
    if self.projection not in PROJECTIONS:
      raise ValueError(f"FeatureConfig.projection must be one of {PROJECTIONS}, got {self.projection!r}")
    for name in ("k", "sparsity", "microbatch", "chunk_elements"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"FeatureConfig.{name} must be positive, got {getattr(self, name)!r}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
      raise ValueError(f"unknown FeatureConfig fields: {sorted(unknown)}")
    return cls(**data)


# ------------------------------------------------------------------------------------------ projection


def leaf_key(seed: int, path: str) -> jax.Array:
  """PRNG key of one parameter leaf for the dense projections: ``fold_in(PRNGKey(seed), crc32(path))``."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(path.encode()) & 0x7FFFFFFF)


def sparse_sketch(path: str, size: int, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
  """Buckets and signs of the sparse projection of one leaf of ``size`` coordinates.

  Drawn with NumPy from ``(seed, crc32(path))``, so they are reproducible and cost nothing to compile.

  Returns:
    ``(buckets, signs)``: int32 and float32 ``[sparsity, size]``.
  """
  rng = np.random.default_rng([int(config.seed), zlib.crc32(path.encode())])
  buckets = rng.integers(0, config.k, size=(config.sparsity, size), dtype=np.int32)
  signs = (rng.integers(0, 2, size=(config.sparsity, size), dtype=np.int8) * 2 - 1).astype(np.float32)
  return buckets, signs


def project_leaf(grad: jax.Array, path: str, config: FeatureConfig) -> jax.Array:
  """Projects per-example gradients of one leaf, ``[B, ...] -> [B, k]``.

  Summing this over all leaves gives the projection of the concatenated gradient.
  """
  batch = grad.shape[0]
  flat = grad.reshape(batch, -1).astype(jnp.float32)
  size = flat.shape[1]
  k = config.k
  if config.projection == "sparse":
    buckets, signs = sparse_sketch(path, size, config)
    out = jnp.zeros((k, batch), jnp.float32)
    for r in range(config.sparsity):
      out = out + jax.ops.segment_sum((flat * signs[r]).T, buckets[r], num_segments=k)
    return out.T / math.sqrt(config.sparsity)
  key = leaf_key(config.seed, path)
  rows = max(1, config.chunk_elements // k)
  out = jnp.zeros((batch, k), jnp.float32)
  for chunk, start in enumerate(range(0, size, rows)):
    stop = min(size, start + rows)
    chunk_key = jax.random.fold_in(key, chunk)
    if config.projection == "rademacher":
      matrix = jax.random.rademacher(chunk_key, (stop - start, k), jnp.float32)
    else:
      matrix = jax.random.normal(chunk_key, (stop - start, k), jnp.float32)
    out = out + flat[:, start:stop] @ matrix
  return out / math.sqrt(k)


def project(grads: Mapping[str, jax.Array], config: FeatureConfig) -> jax.Array:
  """Projects a per-example gradient given as ``{path: [B, ...]}`` to ``[B, k]`` (sum of leaf projections).

  Useful as a reference: :class:`Featurizer` computes exactly this for the masked gradient.
  """
  out = None
  for path in sorted(grads):
    part = project_leaf(jnp.asarray(grads[path]), path, config)
    out = part if out is None else out + part
  if out is None:
    raise ValueError("project: no gradient leaves")
  return out


def divide_rows(x: np.ndarray, norms: np.ndarray) -> np.ndarray:
  """``x / norms[:, None]``; rows with a zero norm stay zero (the masked-feature normalisation)."""
  norms = np.asarray(norms, np.float32)[:, None]
  return np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


def normalize_rows(x: np.ndarray) -> np.ndarray:
  """Unit-normalizes rows; all-zero rows stay zero."""
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0).astype(x.dtype)


def adam_preconditioner(nu: Mapping[str, np.ndarray], *, count: int | None, config: FeatureConfig
                        ) -> dict[str, np.ndarray]:
  """``1 / (sqrt(nu_hat) + eps)`` per leaf from Adam's second moment ``nu`` (bias-corrected with ``count``)."""
  correction = 1.0 - config.adam_b2 ** max(int(count), 1) if count is not None else 1.0
  return {path: (1.0 / (np.sqrt(np.asarray(v, np.float32) / correction) + config.eps)).astype(np.float32)
          for path, v in nu.items()}


# ---------------------------------------------------------------------------------------------- groups


@dataclasses.dataclass(frozen=True)
class TransformerGroups:
  """Depth group of a :class:`~govjax.models.transformer.Transformer` parameter path (hashable by value, so
  featurizers of the same model share compiled code).

  Group 0 = ``embed``/``pos_embed``, group i = ``blocks[i - 1]``, group ``num_layers + 1`` =
  ``final_norm``/``unembed``.
  """

  num_layers: int

  def __call__(self, path: Sequence[Any]) -> int:
    head = path[0]
    if head in ("embed", "pos_embed"):
      return 0
    if head == "blocks":
      index = int(path[1])
      if not 0 <= index < self.num_layers:
        raise ValueError(f"parameter {path_key(path)}: block {index} outside 0..{self.num_layers - 1}")
      return index + 1
    if head in ("final_norm", "unembed"):
      return self.num_layers + 1
    raise ValueError(f"parameter {path_key(path)} belongs to no depth group of the transformer")


def transformer_group_of_path(num_layers: int) -> Callable[[Sequence[Any]], int]:
  """The :class:`TransformerGroups` of a transformer with ``num_layers`` blocks."""
  return TransformerGroups(int(num_layers))


def next_token_example_loss(model: nnx.Module, inputs: Mapping[str, jax.Array]) -> jax.Array:
  """Mean next-token loss of one unbatched example ``inputs["tokens"]`` ``[L]`` (the training objective)."""
  tokens = inputs["tokens"][None]
  loss, _ = per_example_next_token_loss(model(tokens), tokens)
  return loss[0]


# -------------------------------------------------------------------------------------------- featurizer


class Featurizer:
  """Per-example masked, projected gradients of a model.

  Args:
    graphdef: the model's graphdef (``nnx.split(model, nnx.Param)[0]``).
    example_loss: ``example_loss(model, inputs) -> scalar`` for one unbatched example.
    group_of_path: maps a parameter path tuple to its depth group.
    num_groups: number of groups ``G`` (width of masks).
    config: a :class:`FeatureConfig`.
  """

  def __init__(self, graphdef: nnx.GraphDef, example_loss: ExampleLoss, *,
               group_of_path: Callable[[Sequence[Any]], int], num_groups: int, config: FeatureConfig):
    self.graphdef = graphdef
    self.example_loss = example_loss
    self.group_of_path = group_of_path
    self.num_groups = int(num_groups)
    self.config = config
    self._sketch_arrays = None

  def with_config(self, **changes: Any) -> Featurizer:
    """The same model, loss and groups with ``changes`` to the feature config (e.g. ``precondition=False``)."""
    return Featurizer(self.graphdef, self.example_loss, group_of_path=self.group_of_path,
                      num_groups=self.num_groups, config=dataclasses.replace(self.config, **changes))

  def _key(self) -> tuple:
    return (self.graphdef, self.example_loss, self.group_of_path, self.num_groups, self.config)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Featurizer) and self._key() == other._key()

  def __hash__(self) -> int:
    return hash(self._key())

  def _features(self, params, inputs, mask, preconditioner, sketch):
    return _jit_features(self, params, inputs, mask, preconditioner, sketch)

  def _grads(self, params, inputs):
    return _jit_grads(self, params, inputs)

  def _grads_impl(self, params, inputs):
    def loss(p, x):
      return self.example_loss(nnx.merge(self.graphdef, p), x)

    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, inputs)
    return {path_key(path): var[...] for path, var in nnx.to_flat_state(grads)}

  def _sketch(self, params) -> tuple[jax.Array, jax.Array]:
    """Group-offset buckets (``group * k + bucket``) and signs of all leaves, concatenated in path order."""
    if self._sketch_arrays is None:
      buckets, signs = [], []
      for path, var in sorted((path_key(p), v) for p, v in nnx.to_flat_state(params)):
        b, sg = sparse_sketch(path, int(np.prod(var.shape)), self.config)
        buckets.append(b + self.group_index(path) * self.config.k)
        signs.append(sg)
      self._sketch_arrays = (jnp.asarray(np.concatenate(buckets, axis=1)),
                             jnp.asarray(np.concatenate(signs, axis=1)))
    return self._sketch_arrays

  def _features_impl(self, params, inputs, mask, preconditioner, sketch):
    grads = self._grads_impl(params, inputs)
    if preconditioner is not None:
      grads = {path: grad * preconditioner[path][None] for path, grad in grads.items()}
    batch, k, num_groups = mask.shape[0], self.config.k, self.num_groups
    if sketch is not None:
      # One scatter-add over the concatenated gradient: coordinate j of leaf p goes to bucket
      # group(p) * k + h(j) with sign s(j), i.e. the sparse projection of every group at once.
      buckets, signs = sketch
      flat = jnp.concatenate([grads[path].reshape(batch, -1).astype(jnp.float32) for path in sorted(grads)],
                             axis=1)
      stacked = jnp.zeros((num_groups * k, batch), jnp.float32)
      for r in range(self.config.sparsity):
        stacked = stacked + jax.ops.segment_sum((flat * signs[r]).T, buckets[r], num_segments=num_groups * k)
      stacked = (stacked.T / math.sqrt(self.config.sparsity)).reshape(batch, num_groups, k)
    else:
      per_group: dict[int, jax.Array] = {}
      for path, grad in sorted(grads.items()):
        group = self.group_index(path)
        part = project_leaf(grad, path, self.config)
        per_group[group] = part if group not in per_group else per_group[group] + part
      zero = jnp.zeros((batch, k), jnp.float32)
      stacked = jnp.stack([per_group.get(g, zero) for g in range(num_groups)], axis=1)
    # A masked group contributes exactly zero (not 0 * grad, which could be NaN for an inf gradient).
    return jnp.where(mask[:, :, None] > 0, mask[:, :, None] * stacked, 0.0)

  def group_index(self, path: str) -> int:
    parts = tuple(int(p) if p.isdigit() else p for p in path.split("/"))
    group = int(self.group_of_path(parts))
    if not 0 <= group < self.num_groups:
      raise ValueError(f"parameter {path} maps to group {group}, outside 0..{self.num_groups - 1}")
    return group

  def leaf_groups(self, params) -> dict[str, int]:
    """``{path: group}`` for every parameter leaf."""
    return {path_key(path): self.group_index(path_key(path)) for path, _ in nnx.to_flat_state(params)}

  def _microbatches(self, inputs: Mapping[str, np.ndarray], extra: np.ndarray):
    n = len(extra)
    # Shapes are powers of two up to ``microbatch``: few compilations, little padding for small queries.
    size = min(self.config.microbatch, 1 << max(n - 1, 0).bit_length())
    for start in range(0, n, size):
      stop = min(n, start + size)
      pad = size - (stop - start)
      rows = np.concatenate([np.arange(start, stop), np.full(pad, start)])
      chunk = {name: np.asarray(value)[rows] for name, value in inputs.items()}
      mask = np.array(extra[rows])
      if pad:
        mask[stop - start:] = 0.0
      yield start, stop, chunk, mask

  def __call__(
      self,
      params: Any,
      inputs: Mapping[str, np.ndarray],
      mask: np.ndarray | None = None,
      *,
      preconditioner: Mapping[str, np.ndarray] | None = None,
      normalize: bool | None = None,
      per_group: bool = False,
  ) -> np.ndarray:
    """Features of ``N`` examples.

    Args:
      params: the checkpoint's ``nnx.State`` of parameters.
      inputs: arrays with a leading ``[N]`` axis (e.g. ``{"tokens": int32 [N, L]}``).
      mask: float ``[N, G]`` group masks (default: all groups).
      preconditioner: ``{path: multiplier}`` from :func:`adam_preconditioner` (used iff
        ``config.precondition``).
      normalize: override ``config.normalize`` (ignored with ``per_group``).
      per_group: return the projection of every group's masked gradient separately, ``[N, G, k]`` (their sum
        over ``G`` is the feature); groups outside an example's mask are exactly zero.

    Returns:
      float32 ``[N, k]`` (or ``[N, G, k]`` with ``per_group``).
    """
    n, mask, preconditioner = self._checked(params, inputs, mask, preconditioner)
    if not per_group and (self.config.normalize if normalize is None else normalize):
      features, norms = self._masked_and_full(params, inputs, mask, preconditioner)
      return divide_rows(features, norms)
    sketch = self._sketch(params) if self.config.projection == "sparse" else None
    out = np.zeros((n, self.num_groups, self.config.k) if per_group else (n, self.config.k), np.float32)
    for start, stop, chunk, chunk_mask in self._microbatches(inputs, mask):
      feats = self._features(params, chunk, jnp.asarray(chunk_mask), preconditioner, sketch)
      feats = feats if per_group else feats.sum(axis=1)
      out[start:stop] = np.asarray(feats)[: stop - start]
    return out

  def features_and_norms(
      self,
      params: Any,
      inputs: Mapping[str, np.ndarray],
      mask: np.ndarray | None = None,
      *,
      preconditioner: Mapping[str, np.ndarray] | None = None,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Masked features and the norm of each example's *unmasked* (full-depth) feature, in one pass.

    Normalising by the unmasked norm keeps the depth weighting: an example whose gradient reached only the head
    keeps the head's share of its norm instead of being blown up to unit length.

    Args:
      params, inputs, mask, preconditioner: as for :meth:`__call__`.

    Returns:
      ``(features float32 [N, k] (masked, not normalised), norms float32 [N])``.
    """
    _, mask, preconditioner = self._checked(params, inputs, mask, preconditioner)
    return self._masked_and_full(params, inputs, mask, preconditioner)

  def _checked(self, params, inputs, mask, preconditioner) -> tuple[int, np.ndarray, dict | None]:
    """``(N, the [N, G] float32 mask (all groups when None), the preconditioner as jnp arrays or None)``."""
    n = len(next(iter(inputs.values())))
    if mask is None:
      mask = np.ones((n, self.num_groups), np.float32)
    mask = np.asarray(mask, np.float32)
    if mask.shape != (n, self.num_groups):
      raise ValueError(f"mask has shape {mask.shape}, expected {(n, self.num_groups)}")
    if not self.config.precondition:
      return n, mask, None
    if preconditioner is None:
      raise ValueError("FeatureConfig.precondition is set but no preconditioner (Adam nu) was given")
    preconditioner = {p: jnp.asarray(v) for p, v in preconditioner.items()}
    missing = set(self.leaf_groups(params)) - set(preconditioner)
    if missing:
      raise ValueError(f"preconditioner lacks parameter(s) {sorted(missing)[:3]}")
    return n, mask, preconditioner

  def _masked_and_full(self, params, inputs, mask, preconditioner) -> tuple[np.ndarray, np.ndarray]:
    n = len(mask)
    sketch = self._sketch(params) if self.config.projection == "sparse" else None
    features = np.zeros((n, self.config.k), np.float32)
    norms = np.zeros(n, np.float32)
    for start, stop, chunk, chunk_mask in self._microbatches(inputs, mask):
      every = np.ones_like(chunk_mask)
      every[stop - start:] = 0.0
      groups = np.asarray(self._features(params, chunk, jnp.asarray(every), preconditioner, sketch))
      masked = np.where(chunk_mask[:, :, None] > 0, chunk_mask[:, :, None] * groups, 0.0).sum(axis=1)
      features[start:stop] = masked[: stop - start]
      norms[start:stop] = np.linalg.norm(groups.sum(axis=1), axis=1)[: stop - start]
    return features, norms

  def per_example_grads(self, params: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unprojected per-example gradients ``{path: [N, ...]}`` (small models only: a reference for tests)."""
    return {p: np.asarray(g) for p, g in self._grads(params, {k: jnp.asarray(v) for k, v in inputs.items()})
            .items()}


# Featurizers compare equal when they compute the same thing, so equal ones share one compilation.
@functools.partial(jax.jit, static_argnums=0)
def _jit_features(featurizer: Featurizer, params, inputs, mask, preconditioner, sketch):
  return featurizer._features_impl(params, inputs, mask, preconditioner, sketch)


@functools.partial(jax.jit, static_argnums=0)
def _jit_grads(featurizer: Featurizer, params, inputs):
  return featurizer._grads_impl(params, inputs)


def transformer_featurizer(graphdef: nnx.GraphDef, *, num_layers: int, config: FeatureConfig) -> Featurizer:
  """A :class:`Featurizer` for the govjax transformer and its next-token loss (``G = num_layers + 2``)."""
  return Featurizer(graphdef, next_token_example_loss, group_of_path=transformer_group_of_path(num_layers),
                    num_groups=num_layers + 2, config=config)


def checkpoint_preconditioner(checkpoint: CheckpointParams, config: FeatureConfig) -> dict[str, np.ndarray] | None:
  """``1 / (sqrt(nu_hat) + eps)`` per leaf of ``checkpoint`` when ``config.precondition`` (else None).

  Args:
    checkpoint: the checkpoint (its ``adam_nu`` / ``adam_count``).
    config: the feature config.

  Returns:
    ``{path: array}`` or None.
  """
  if not config.precondition:
    return None
  if checkpoint.adam_nu is None:
    raise ValueError(f"checkpoint {checkpoint.step}: FeatureConfig.precondition needs the Adam second moment, "
                     "which this checkpoint's optimizer state does not hold")
  return adam_preconditioner(checkpoint.adam_nu, count=checkpoint.adam_count, config=config)
