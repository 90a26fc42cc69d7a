"""The premise experiment (issue #18): can a model learn a rule from restricted works without memorizing them?

Command (resumable: one JSON per run under runs/premise/<run key of the sizes>/, skipped when present)::

  nice -n 10 .venv/bin/python -m experiments.premise     # the sweep (seeds 0-5) -> experiments/results/premise.json
  nice -n 10 .venv/bin/python -m experiments.premise --only exclude depth_1 --seeds 0 --shares 0.5 \
      --out runs/premise_check.json            # one treatment and its reference, one seed (not the committed file)
  # a replication of the restricted-share runs on fresh seeds, added to premise.json under "replications":
  nice -n 10 .venv/bin/python -m experiments.premise --shares-only --shares 0.2 --seeds 3 4 5 \
      --cache runs/premise_replication --replication-into experiments/results/premise.json

Writes ``premise.json`` and its figures ``premise.png`` (rule learning against secret exposure) and
``premise_shares.png`` (the restricted-share curves) beside it; ``govjax report --workdir STUDY --premise
experiments/results/premise.json`` adds them to a study report.

Runtime: about 15-60 s per run (15-25 s on 2 idle CPU cores), 38 minutes for the 126 runs of 6 seeds (tiny
model: 2 layers, width 32, context 64; 600 steps of 32 windows, about 25 epochs of the 384 training windows).
Expected (measured, 126 runs of seeds 0-5, 2,422 s) result: ``full`` learns the rule (specific gain 1.75 [0.53,
2.95]) and memorizes the secrets (62 bits, MIA 0.97); at 50% restricted every treatment that resolves the rule
memorizes (depth_3 17.8 bits, input_2 16.1) and the surface ones do not resolve it (depth_1 0.66 [-0.24, 1.56],
exposure 3.0 bits); trunk leakage finds nothing kept by any routed treatment; the dropped region at 20% (0.21
[0.003, 0.40] pooled) does not replicate on the fresh seeds 3-5 alone (0.14 [-0.16, 0.37]) (experiments/RESULTS.md,
"The premise").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

from govjax.study.premise import PremiseSpec, run_sweep, summarise, treatments
from govjax.study.premise_figures import premise_figures

ORDER = ("exclude", "full", "depth_1", "exclude_trunk", "depth_2", "input_1", "depth_3", "depth_1_groupclip",
         "region", "depth_1_batch", "input_2", "input_3", "full_groupclip")


def get_spec() -> PremiseSpec:
  """The sizes the committed results were produced with."""
  return PremiseSpec(width=32, num_heads=2, region_width=32, steps=600, leak_steps=200, num_train=48,
                     num_heldout=12, num_references=63, seeds=(0, 1, 2, 3, 4, 5))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache", default=None, help="per-run cache (default runs/premise/<run key>)")
  parser.add_argument("--out", default="experiments/results/premise.json")
  parser.add_argument("--only", nargs="*", default=None, help="treatments to run (default: all, in ORDER)")
  parser.add_argument("--seeds", nargs="*", type=int, default=None)
  parser.add_argument("--shares", nargs="*", type=float, default=None, help="restricted shares (default 0.2 0.5 0.8)")
  parser.add_argument("--summarise-only", action="store_true")
  parser.add_argument("--shares-only", action="store_true",
                      help="run only the restricted-share runs (no main-share treatments)")
  parser.add_argument("--replication-into", default=None,
                      help="add the restricted-share results of these seeds to this premise.json under "
                           "'replications' (instead of writing --out)")
  args = parser.parse_args(argv)
  spec = get_spec()
  if args.seeds:
    spec = PremiseSpec(**{**spec.__dict__, "seeds": tuple(args.seeds)})
  if args.shares is not None:
    spec = PremiseSpec(**{**spec.__dict__, "shares": tuple(args.shares)})
  cache = args.cache or f"runs/premise/{spec.run_key}"
  names = [] if args.shares_only else args.only or [n for n in ORDER if n in treatments(spec)]
  start = time.time()
  if not args.summarise_only:
    run_sweep(spec, cache, names=names)
  records = [json.loads(p.read_text()) for p in sorted(pathlib.Path(cache).glob("*.json"))]
  meta = {"machine": f"{platform.machine()} {platform.system()}, 2 shared CPU cores, jax CPU",
          "command": "python -m experiments.premise", "sweep_wall_s": round(time.time() - start, 1)}
  summary = summarise(records, spec, meta=meta)
  if args.replication_into:
    add_replication(pathlib.Path(args.replication_into), summary, sys.argv[1:] if argv is None else argv)
    return
  out = pathlib.Path(args.out)
  out.write_text(json.dumps(summary, indent=1) + "\n")
  drawn = premise_figures(summary, out.parent, stem=out.stem)
  print(f"wrote {out}: {len(records)} runs; figures {', '.join(str(p) for p in drawn)}")


def add_replication(path: pathlib.Path, summary: dict, argv) -> None:
  """Adds ``summary``'s restricted-share results to the ``replications`` of the premise.json at ``path``
  (replacing an entry of the same seeds); the main results are left as they are."""
  document = json.loads(path.read_text())
  entry = {"seeds": summary["seeds"], "restricted_fraction": summary["restricted_fraction"],
           "run_wall_s": summary["run_wall_s"], "machine": summary["machine"],
           "command": "python -m experiments.premise " + " ".join(argv or [])}
  kept = [r for r in document.get("replications", []) if r["seeds"] != entry["seeds"]]
  document["replications"] = [*kept, entry]
  path.write_text(json.dumps(document, indent=1) + "\n")
  print(f"added the replication of seeds {entry['seeds']} to {path}")


if __name__ == "__main__":
  main()
