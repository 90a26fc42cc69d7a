"""The full study: every method and baseline, with knobs, on the 120-work chorale subset of the demo.

Command:
  govjax study --config experiments/configs/study_full.py --out runs/study_full

Runtime: about 30 minutes on 2 CPU cores (nine runs of 360 steps of batch 16 x 128 tokens; DP-SGD computes
per-example gradients and is the slowest; two influence indexes).
Expected result: the numbers in experiments/RESULTS.md. Vanilla memorizes planted canaries (exposure near the
maximum log2(1001) ~ 10 bits) and extracts restricted works a little more often than held-out works; depth
routing, exclusion, the sink region and DP-SGD cut canary exposure to near chance at different NLL costs;
goldfish loss and deduplication do little for single-copy random canaries.
"""

import dataclasses
import pathlib

from govjax.study.methods import RunSpec, StudyConfig, load_study


def get_study() -> StudyConfig:
  demo = load_study(pathlib.Path(__file__).with_name("study_demo.py"))
  base = dataclasses.replace(demo.base, name="study-full", num_steps=360, checkpoint_every=120, eval_every=120)
  runs = (
      RunSpec("vanilla"),
      RunSpec("exclude"),
      RunSpec("depth"),
      RunSpec("depth", knob=("governance.policy=default-restricted-depth-3",)),
      RunSpec("depth_probe"),
      RunSpec("sink"),
      RunSpec("dpsgd"),
      RunSpec("goldfish"),
      RunSpec("dedup"),
  )
  return dataclasses.replace(demo, name="full", base=base, runs=runs, trace_methods=("vanilla", "depth"),
                             trace_outputs=24)
