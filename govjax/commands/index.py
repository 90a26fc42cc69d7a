"""``govjax index --workdir DIR [--k 512]``: build the influence index of a training run.

Writes ``DIR/provenance/index/`` (features per checkpoint, self-influence, works, integrity hashes); see
:mod:`govjax.provenance.index`.
"""

from __future__ import annotations

import argparse

from govjax.provenance.featurize import FeatureConfig
from govjax.provenance.index import INDEX_DIR
from govjax.provenance.runs import index_run


def run(args: argparse.Namespace) -> int:

  config = FeatureConfig(k=args.k, seed=args.seed, projection=args.projection, normalize=args.normalize,
                         precondition=args.precondition != "none", query_precondition=args.precondition == "both",
                         microbatch=args.microbatch)
  index = index_run(args.workdir, config=config, steps=args.steps, aggregate=args.aggregate, progress=print)
  routing = index.metadata.get("routing", {})
  print(f"indexed {index.num_examples} examples of {index.num_works} works at {index.num_checkpoints} "
        f"checkpoints (steps {index.steps.tolist()}), k={config.k}, "
        f"{index.metadata['index_examples_per_s']:.1f} examples/s; never trained: "
        f"{routing.get('never_trained', 0)}; index: {args.workdir}/{INDEX_DIR}")
  return 0
