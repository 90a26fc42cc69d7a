import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from govjax.models.transformer import Transformer, TransformerConfig
from govjax.routing.groups import (
    GroupCoverageError,
    depth_groups,
    group_sizes,
    is_region_path,
    leaf_paths,
    resolve_group_ids,
    transformer_group_rules,
)


def _params(region_width=0):
  cfg = TransformerConfig(vocab_size=7, num_layers=2, width=8, num_heads=2, context=4, region_width=region_width)
  return nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)


def test_transformer_defaults_cover_every_leaf_in_order():
  params = _params(region_width=4)
  ids = depth_groups(params, transformer_group_rules(2))
  by_path = dict(zip(leaf_paths(params), jax.tree.leaves(ids), strict=True))
  assert by_path["embed/embedding"] == 0 and by_path["pos_embed/embedding"] == 0
  assert by_path["blocks/0/attn/query/kernel"] == 1 and by_path["blocks/1/mlp/up/kernel"] == 2
  assert by_path["blocks/1/region/up/kernel"] == 2
  assert by_path["final_norm/scale"] == 3 and by_path["unembed/kernel"] == 3
  sizes = group_sizes(params, ids, num_groups=4)
  assert sum(sizes) == sum(x.size for x in jax.tree.leaves(params)) and all(sizes)
  assert resolve_group_ids(transformer_group_rules(2), params) == ids


def test_uncovered_paths_are_listed():
  params = _params()
  rules = [(r"embed/.*", 0), (r"blocks/0/.*", 1)]
  with pytest.raises(GroupCoverageError) as err:
    depth_groups(params, rules)
  message = str(err.value)
  for path in ("pos_embed/embedding", "blocks/1/mlp/up/kernel", "final_norm/scale", "unembed/bias"):
    assert path in message
  assert "blocks/0/mlp/up/kernel" not in message


def test_bad_rules_are_named():
  with pytest.raises(ValueError, match="rule #1"):
    depth_groups({"a": jnp.zeros(1)}, [(".*", 0), (".*", -1)])
  with pytest.raises(ValueError, match="invalid regex"):
    depth_groups({"a": jnp.zeros(1)}, [("(", 0)])


def test_region_paths():
  assert is_region_path("blocks/0/region/up/kernel")
  assert not is_region_path("blocks/0/mlp/up/kernel") and not is_region_path("regional/x")
