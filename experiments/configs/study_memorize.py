"""The memorization regime: few works, many epochs, where vanilla training measurably memorizes real chorales.

Command:
  govjax study --config experiments/configs/study_memorize.py --out runs/study_memorize
  # then: cp runs/study_memorize/study.json experiments/results/study_memorize.json

Runtime: 24 minutes measured on 2 shared CPU cores (6 runs of 400 steps of batch 16 x 160 tokens).
Setting: the model of the full study (experiments/configs/study_full.py) trained on 16 works of the training split
(about 200 windows, so 400 steps are about 30 epochs), no canaries; the 41 validation works (every window) are
the non-members. Vanilla and exclusion (the reference model of each seed), three seeds.
Expected result (experiments/RESULTS.md): vanilla's per-work membership AUC near 1 (interval above 0.5); exact
two-bar extraction of trained works only 0.015 [0, 0.037] at 16 works (not resolved against never-seen works, 0);
the exclusion run (6 works) extracts 0.47. experiments/configs/study_memorize_small.py (8 works) resolves it.
"""

import dataclasses
import pathlib

from govjax.core.config import CanarySpec
from govjax.study.methods import RunSpec, StudyConfig, load_study


def get_study() -> StudyConfig:
  full = load_study(pathlib.Path(__file__).with_name("study_full.py"))
  base = dataclasses.replace(full.base, name="study-memorize", num_steps=400, eval_every=400,
                             canaries=CanarySpec(count=0))
  return StudyConfig(
      name="memorize",
      base=base,
      runs=(RunSpec("vanilla"), RunSpec("exclude")),
      seeds=full.seeds,
      max_train_works=16,
      audit_k=32,
      audit_m=128,
      audit_max_windows_per_work=None,
      curve_steps=(),
      trace_methods=(),
      trace_outputs=0,
      num_samples=0,
      lookup_works=0,
  )
