"""The premise experiment (issue #18): can a model learn a rule from restricted works without memorizing them?

Command (resumable: one JSON per run under runs/premise/<run key of the sizes>/, skipped when present)::

  nice -n 10 .venv/bin/python -m experiments.premise            # the sweep, then experiments/results/premise.json
  nice -n 10 .venv/bin/python -m experiments.premise --only depth_1 --seeds 0   # one treatment, one seed

Writes ``premise.json`` and its figures ``premise.png`` (rule learning against secret exposure) and
``premise_shares.png`` (the restricted-share curves) beside it; ``govjax report --workdir STUDY --premise
experiments/results/premise.json`` adds them to a study report.

Runtime: about 30-60 s per run, about 1 hour for the 63 runs, on 2 shared CPU cores (tiny model: 2 layers,
width 32, context 64; 600 steps of 32 windows, about 25 epochs of the 384 training windows).
Expected (measured, 63 runs, 3,512 s) result: ``full`` learns the rule (specific gain 1.80 [0.15, 3.65]) and
memorizes the secrets (59.5 bits, MIA 0.96); no routed treatment resolves the rule at 50% restricted (depth_1 0.67
[-0.54, 2.05], exposure 3.0 bits); trunk leakage finds nothing kept by any routed treatment (experiments/RESULTS.md,
"The premise").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

from govjax.study.premise import PremiseSpec, run_sweep, summarise, treatments
from govjax.study.premise_figures import premise_figures

ORDER = ("exclude", "full", "depth_1", "exclude_trunk", "depth_2", "input_1", "depth_3", "depth_1_groupclip",
         "region", "depth_1_batch", "input_2", "input_3", "full_groupclip")


def get_spec() -> PremiseSpec:
  """The sizes the committed results were produced with."""
  return PremiseSpec(width=32, num_heads=2, region_width=32, steps=600, leak_steps=200, num_train=48,
                     num_heldout=12, num_references=63, seeds=(0, 1, 2))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache", default=None, help="per-run cache (default runs/premise/<run key>)")
  parser.add_argument("--out", default="experiments/results/premise.json")
  parser.add_argument("--only", nargs="*", default=None, help="treatments to run (default: all, in ORDER)")
  parser.add_argument("--seeds", nargs="*", type=int, default=None)
  parser.add_argument("--shares", nargs="*", type=float, default=None, help="restricted shares (default 0.2 0.5 0.8)")
  parser.add_argument("--summarise-only", action="store_true")
  args = parser.parse_args(argv)
  spec = get_spec()
  if args.seeds:
    spec = PremiseSpec(**{**spec.__dict__, "seeds": tuple(args.seeds)})
  if args.shares is not None:
    spec = PremiseSpec(**{**spec.__dict__, "shares": tuple(args.shares)})
  cache = args.cache or f"runs/premise/{spec.run_key}"
  names = args.only or [n for n in ORDER if n in treatments(spec)]
  start = time.time()
  if not args.summarise_only:
    run_sweep(spec, cache, names=names)
  records = [json.loads(p.read_text()) for p in sorted(pathlib.Path(cache).glob("*.json"))]
  meta = {"machine": f"{platform.machine()} {platform.system()}, 2 shared CPU cores, jax CPU",
          "command": "python -m experiments.premise", "sweep_wall_s": round(time.time() - start, 1)}
  summary = summarise(records, spec, meta=meta)
  out = pathlib.Path(args.out)
  out.write_text(json.dumps(summary, indent=1) + "\n")
  drawn = premise_figures(summary, out.parent, stem=out.stem)
  print(f"wrote {out}: {len(records)} runs; figures {', '.join(str(p) for p in drawn)}")


if __name__ == "__main__":
  main()
