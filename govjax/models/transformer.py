"""A decoder-only transformer in Flax NNX whose residual stream can be acted on between depth groups.

The model is split into *depth groups*, the unit of depth-selective gradient routing:

- group 0: token and position embeddings (nearest the input);
- group i, 1 <= i <= num_layers: ``blocks[i - 1]``;
- group ``num_layers + 1``: the final norm and the unembedding (nearest the output).

``Transformer.__call__`` accepts a ``gate(group_index, h) -> h`` callable that is applied to the residual stream
after group 0 and after every block. Gradient routing uses it to stop an example's gradient at its allowed depth;
the memorization probe reads the hidden states returned with ``return_hidden=True``. The transformer follows
:class:`govjax.routing.protocol.RoutableModel` (``num_groups``, ``group_rules()``, ``apply_group(group, h)``), the
interface the routed paths use for any model.

Example:
  >>> from flax import nnx
  >>> import jax.numpy as jnp
  >>> cfg = TransformerConfig(vocab_size=72, num_layers=2, width=32, num_heads=2, context=16)
  >>> model = Transformer(cfg, rngs=nnx.Rngs(0))
  >>> model(jnp.zeros((3, 16), jnp.int32)).shape
  (3, 16, 72)
  >>> cfg.num_groups, model.num_groups, model.group_rules()[-1]
  (4, 4, ('(final_norm|unembed)/.*', 3))
  >>> model.apply_group(1, model.apply_group(0, jnp.zeros((3, 16), jnp.int32))).shape
  (3, 16, 32)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from govjax.routing.groups import transformer_group_rules

__all__ = ["Block", "MLP", "RegionMLP", "Transformer", "TransformerConfig", "count_params", "drop_region"]

Gate = Callable[[int, jax.Array], jax.Array]
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Shape of a :class:`Transformer`.

  Attributes:
    vocab_size: number of token ids.
    num_layers: number of transformer blocks.
    width: residual stream width.
    num_heads: attention heads per block (``width`` must be divisible by it).
    context: maximum sequence length (size of the learned position table).
    mlp_ratio: hidden width of each MLP as a multiple of ``width``.
    region_width: extra MLP hidden units per block forming a removable *region* (0 = none). The region's
      output is added to the MLP output, scaled per example by the ``region`` argument of
      :meth:`Transformer.__call__`, and can be dropped at generation time (:func:`drop_region`).
    dtype: compute dtype, ``"float32"`` or ``"bfloat16"``. Parameters are float32 either way (master weights:
      gradients and optimizer state stay float32); with bf16 the matmuls and the residual stream run in bf16,
      layer-norm statistics in float32, and the logits are returned in float32.
    remat: recompute each block's activations in the backward pass (``nnx.remat``) instead of storing them.
  """

  vocab_size: int
  num_layers: int
  width: int
  num_heads: int
  context: int
  mlp_ratio: int = 4
  region_width: int = 0
  dtype: str = "float32"
  remat: bool = False

  def __post_init__(self):
    for name in ("vocab_size", "num_layers", "width", "num_heads", "context", "mlp_ratio"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
    if self.width % self.num_heads:
      raise ValueError(f"TransformerConfig.width={self.width} is not divisible by num_heads={self.num_heads}")
    if not isinstance(self.region_width, int) or isinstance(self.region_width, bool) or self.region_width < 0:
      raise ValueError(f"TransformerConfig.region_width must be an int >= 0, got {self.region_width!r}")
    if self.dtype not in DTYPES:
      raise ValueError(f"TransformerConfig.dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")

  @property
  def compute_dtype(self):
    """The ``jnp`` compute dtype."""
    return DTYPES[self.dtype]

  @property
  def num_groups(self) -> int:
    """Number of depth groups: embeddings, one per block, and the output head."""
    return self.num_layers + 2


class MLP(nnx.Module):
  """Two-layer GELU MLP."""

  def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.up = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(jax.nn.gelu(self.up(x)))


class RegionMLP(nnx.Module):
  """Extra MLP hidden units of a block (the removable region): ``down(gelu(up(x)))``, no output bias.

  Together with the block's :class:`MLP` it is one MLP of ``hidden + region_width`` units whose region units can
  be switched off per example.
  """

  def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.up = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(hidden, width, use_bias=False, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(jax.nn.gelu(self.up(x)))


def _region_scale(region: jax.Array | float | None, like: jax.Array) -> jax.Array | float:
  """``region`` (scalar or ``[B]``) shaped to broadcast against ``like`` ``[B, L, D]``."""
  if region is None:
    return 1.0
  region = jnp.asarray(region, like.dtype)
  if region.ndim == 0:
    return region
  if region.shape != like.shape[:1]:
    raise ValueError(f"region must be a scalar or [B] = [{like.shape[0]}], got shape {region.shape}")
  return region[:, None, None]


class Block(nnx.Module):
  """Pre-norm transformer block: causal self-attention then MLP, each with a residual connection.

  With ``config.region_width > 0`` the block also holds ``region`` (:class:`RegionMLP`), whose output is added to
  the MLP's, scaled by ``region``.
  """

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    dtype = config.compute_dtype
    self.remat = config.remat
    self.attn_norm = nnx.LayerNorm(config.width, dtype=dtype, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        num_heads=config.num_heads,
        in_features=config.width,
        qkv_features=config.width,
        out_features=config.width,
        decode=False,
        dtype=dtype,
        rngs=rngs,
    )
    self.mlp_norm = nnx.LayerNorm(config.width, dtype=dtype, rngs=rngs)
    self.mlp = MLP(config.width, config.mlp_ratio * config.width, dtype=dtype, rngs=rngs)
    if config.region_width:
      self.region = RegionMLP(config.width, config.region_width, dtype=dtype, rngs=rngs)

  def __call__(self, h: jax.Array, region: jax.Array | float | None = None) -> jax.Array:
    if self.remat:  # the backward pass recomputes the block's activations from its input
      return nnx.remat(Block.forward)(self, h, region)
    return self.forward(h, region)

  def forward(self, h: jax.Array, region: jax.Array | float | None = None) -> jax.Array:
    """The block without rematerialisation (what ``__call__`` runs, under ``nnx.remat`` when configured)."""
    causal = nnx.make_causal_mask(jnp.ones(h.shape[:-1], dtype=jnp.int32))
    x = self.attn_norm(h)
    h = h + self.attn(x, x, x, mask=causal, deterministic=True)
    x = self.mlp_norm(h)
    out = self.mlp(x)
    if hasattr(self, "region"):
      out = out + _region_scale(region, out) * self.region(x)
    return h + out


class Transformer(nnx.Module):
  """Decoder-only transformer with per-group access to the residual stream.

  Attributes:
    config: the :class:`TransformerConfig`.
    embed: token embedding (group 0).
    pos_embed: learned position embedding (group 0).
    blocks: ``nnx.List`` of :class:`Block` (groups 1..num_layers).
    final_norm, unembed: the output head (group num_layers + 1).
  """

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    self.config = config
    dtype = config.compute_dtype
    self.embed = nnx.Embed(config.vocab_size, config.width, dtype=dtype, rngs=rngs)
    self.pos_embed = nnx.Embed(config.context, config.width, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.num_layers)])
    self.final_norm = nnx.LayerNorm(config.width, dtype=dtype, rngs=rngs)
    self.unembed = nnx.Linear(config.width, config.vocab_size, dtype=dtype, rngs=rngs)

  def embed_tokens(self, tokens: jax.Array) -> jax.Array:
    """Group 0: token plus position embeddings, ``[B, L] int -> [B, L, D]``."""
    length = tokens.shape[-1]
    if length > self.config.context:
      raise ValueError(f"sequence length {length} exceeds the model context {self.config.context}")
    return self.embed(tokens) + self.pos_embed(jnp.arange(length))

  def head(self, h: jax.Array) -> jax.Array:
    """Last group: final norm and unembedding, ``[B, L, D] -> [B, L, V]`` logits (float32)."""
    return self.unembed(self.final_norm(h)).astype(jnp.float32)

  @property
  def num_groups(self) -> int:
    """Number of depth groups, ``num_layers + 2`` (routing protocol)."""
    return self.config.num_groups

  def group_rules(self) -> list[tuple[str, int]]:
    """The depth-group rules of this transformer (routing protocol)."""
    return transformer_group_rules(self.config.num_layers)

  def apply_group(self, group: int, h: jax.Array, *, region: jax.Array | float | None = None) -> jax.Array:
    """Runs one depth group (routing protocol): 0 embeds tokens, ``1..num_layers`` are blocks, the last the head.

    Args:
      group: the group index.
      h: int tokens ``[B, L]`` for group 0, else the residual stream ``[B, L, D]``.
      region: the removable region's output scale (see :meth:`__call__`).

    Returns:
      The group's output (logits ``[B, L, V]`` for the last group).
    """
    layers = self.config.num_layers
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= layers + 1:
      raise ValueError(f"group must be an int in [0, {layers + 1}], got {group!r}")
    if group == 0:
      return self.embed_tokens(h)
    if group <= layers:
      return self.blocks[group - 1](h, region)
    return self.head(h)

  def __call__(
      self,
      tokens: jax.Array,
      *,
      gate: Gate | None = None,
      return_hidden: bool = False,
      region: jax.Array | float | None = None,
  ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """Runs the model.

    Args:
      tokens: int token ids ``[B, L]``.
      gate: optional ``gate(group_index, h) -> h`` applied to the residual stream after group 0 and after every
        block (group indices 0..num_layers). Must preserve the shape.
      return_hidden: also return the residual stream after each of those groups (after gating).
      region: scale of the removable region's output, a scalar or per example ``[B]`` (None = 1, fully on;
        0 = dropped). Ignored when ``config.region_width == 0``.

    Returns:
      logits ``[B, L, V]``, or ``(logits, hidden)`` where ``hidden`` is a list of ``num_layers + 1`` arrays
      ``[B, L, D]``.
    """
    hidden = []
    h = self.embed_tokens(tokens)
    if gate is not None:
      h = gate(0, h)
    hidden.append(h)
    for index, block in enumerate(self.blocks):
      h = block(h, region)
      if gate is not None:
        h = gate(index + 1, h)
      hidden.append(h)
    logits = self.head(h)
    if return_hidden:
      return logits, hidden
    return logits


def drop_region(model: Transformer) -> Transformer:
  """The model without its removable region: a ``region_width=0`` :class:`Transformer` sharing the base weights.

  Its outputs equal ``model(tokens, region=0.0)``; use it for generation without the region.

  Args:
    model: a transformer (with or without a region).

  Returns:
    A new transformer whose parameters are (references to) the base parameters of ``model``.
  """
  config = dataclasses.replace(model.config, region_width=0)
  base = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
  graphdef, like = nnx.split(base)
  flat = dict(nnx.to_flat_state(nnx.state(model)))
  values = {path: flat[path] for path, _ in nnx.to_flat_state(like)}
  return nnx.merge(graphdef, nnx.from_flat_state(values))


def count_params(model: nnx.Module) -> int:
  """Number of scalar parameters in ``model``."""
  state = nnx.state(model, nnx.Param)
  return int(sum(x.size for x in jax.tree.leaves(state)))
