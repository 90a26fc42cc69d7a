"""``govjax trace --workdir DIR --input generated.mid|tokens.npy [--top 10] [--json]``: which training works
influenced an output, at what depth they were learned, and which attribution duties follow.

Prints the lineage and writes it as ``<input>.lineage.json`` and ``DIR/provenance/lineage/<input stem>.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from govjax.data.tokenizer import encode_score
from govjax.provenance.index import sha256_file
from govjax.provenance.lineage import build_lineage, write_lineage
from govjax.provenance.query import windows
from govjax.provenance.runs import load_tracer


def read_output_tokens(path: str | pathlib.Path, *, steps_per_quarter: int = 4) -> np.ndarray:
  """Tokens of a generated output: a ``.npy`` token array, or a MIDI/MusicXML file encoded with the tokenizer.

  Raises:
    FileNotFoundError: no such file.
    ValueError: an empty or non-integer token array.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"output file not found: {path}")
  if path.suffix == ".npy":
    tokens = np.load(path, allow_pickle=False)
    if not np.issubdtype(tokens.dtype, np.integer) or tokens.size == 0:
      raise ValueError(f"{path}: expected a non-empty integer token array, got {tokens.dtype} {tokens.shape}")
    return tokens.reshape(-1).astype(np.int32)
  import music21


  return np.asarray(encode_score(music21.converter.parse(path), steps_per_quarter=steps_per_quarter).tokens,
                    np.int32)


def register(subparsers) -> None:
  parser = subparsers.add_parser("trace", help="trace a generated output to its influential training works")
  parser.add_argument("--workdir", required=True, help="run directory with an index (`govjax index`)")
  parser.add_argument("--input", required=True, help="generated .mid / .musicxml file or .npy token array")
  parser.add_argument("--top", type=int, default=10, help="number of works listed")
  parser.add_argument("--aggregate", default="sum", choices=("sum", "mean", "max"),
                      help="per-work aggregation of example scores")
  parser.add_argument("--json", action="store_true", help="print the lineage JSON")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

  tracer = load_tracer(args.workdir)
  steps_per_quarter = tracer.index.metadata.get("steps_per_quarter", 4)
  tokens = read_output_tokens(args.input, steps_per_quarter=steps_per_quarter)
  attribution = tracer.attribute({"tokens": windows(tokens, tracer.context)}, top=args.top,
                                 aggregation=args.aggregate)
  index_dir = pathlib.Path(args.workdir) / "provenance" / "index"
  config = tracer.index.feature_config
  lineage = build_lineage(
      attribution, tracer.index.works, top=args.top,
      output={"file": pathlib.Path(args.input).name, "sha256": sha256_file(args.input),
              "num_tokens": int(tokens.size)},
      method={"checkpoints": tracer.index.steps.tolist(), "learning_rates": tracer.index.learning_rates.tolist(),
              "k": config.k, "projection": config.projection, "projection_seed": config.seed,
              "normalize": config.normalize, "precondition": config.precondition,
              "depth_masked": True, "index_sha256": json.loads((index_dir / "index.json").read_text())["sha256"],
              "dataset_fingerprint": tracer.index.metadata.get("dataset_fingerprint")})
  paths = write_lineage(lineage, output_file=args.input, workdir=args.workdir, name=pathlib.Path(args.input).stem)
  if args.json:
    print(json.dumps(lineage, indent=1))
  else:
    print(f"lineage of {args.input} ({tokens.size} tokens; TracIn over checkpoints {tracer.index.steps.tolist()}):")
    for work in lineage["works"]:
      print(f"  {work['rank']:>3}. {work['work_id']:<28} score {work['score']:+.4g}  share {work['share']:.1%}  "
            f"depth {work['depth']}  {work['licence']}")
    print(f"attribution: {lineage['duties']['attribution_text'] or '(none required)'}")
    print("written: " + ", ".join(str(p) for p in paths))
  return 0
