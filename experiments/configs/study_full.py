"""The full study: vanilla, exclusion, depth routing, a DP-SGD sweep, goldfish loss, deduplication, the probe and
the sink region, three seeds each, with intervals.

Command:
  govjax study --config experiments/configs/study_full.py --out runs/study_full
  # then: cp runs/study_full/study.json experiments/results/study_full.json

Runtime: 33 runs (11 method settings x 3 seeds) of 240 steps of batch 16 x 160 tokens, each audited on the same panel of
windows; 90.0 minutes of summed run time (training plus audit, `compute_s`) on 2 shared CPU cores, no GPU. Measured
in two batches into the same --out (runs are cached per method, knob and seed, so adding methods reuses the finished
runs): the first 18 (vanilla, exclude, depth, DP-SGD x3) in 21.7 minutes of wall time as three processes, one per
seed (GOVJAX_STUDY_SEEDS=0 / 1 / 2), then a last all-seeds pass for the intervals (about 4 minutes); the other 12
(goldfish, dedup, depth_probe, sink) as one all-seeds process: 21 minutes of summed run time, 24 minutes of wall
time for the runs (03:12 to 03:36 UTC, one restart included) and 13 minutes for the intervals of all 30 runs (2000
resamples each; the machine's load average was about 6); then 3 DP-SGD runs with clipping only (noise 0), added
the same way: 19.9 minutes of wall time for the 3 runs and the intervals of all 33. Wall-clock details: `wall_clock` in
experiments/results/study_full.json.
Setting: 64 works of the chorale training split (chosen by the sha256 of the work id), the 41 validation works as
non-members (every window), 32 random and 32 chorale canaries at each of 1, 4 and 16 copies. Audits: extraction
of m = 128 tokens (two bars) after k = 32, edit similarity, counterfactual extraction against the exclusion run of
the same seed, per-work and per-window membership inference, reference-calibrated (LiRA-style) membership,
extrapolated canary exposure. The sink's validation NLL is that of the deployed model (region dropped), the
model its audit measures.
Expected result: the numbers in experiments/RESULTS.md and experiments/results/study_full.json.
"""

import os

from govjax.core.config import CanarySpec, GovernanceSpec, ModelSpec, TrainConfig
from govjax.study.methods import RunSpec, StudyConfig

# GOVJAX_STUDY_SEEDS=1 runs only seed 1 (into the same --out), to split the study over processes; a last run
# with all seeds then only reads the cached runs and writes results.json / study.json for all of them.
SEEDS = tuple(int(s) for s in os.environ.get("GOVJAX_STUDY_SEEDS", "0,1,2").split(","))
DP_NOISE = (0.0, 0.1, 0.5, 2.0)  # 0.0: clipping only, the utility end of the curve (no guarantee)


def base_config(name: str = "study-full", **overrides) -> TrainConfig:
  """The shared training config of the full study (and of the memorization-regime study)."""
  values = dict(
      name=name,
      model=ModelSpec(num_layers=2, width=64, num_heads=4, context=160),
      governance=GovernanceSpec(scenario="default", policy="default"),
      canaries=CanarySpec(count=32, chorale_count=32, repeats=(1, 4, 16), frames=32),
      batch_size=16,
      num_steps=240,
      learning_rate=3e-3,
      warmup_steps=20,
      window_stride=64,
      eval_every=240,
      eval_max_batches=8,
      checkpoint_every=80,
      max_to_keep=1,
      seed=0,
  )
  values.update(overrides)
  return TrainConfig(**values)


def get_study() -> StudyConfig:
  # The run named plainly "dpsgd" uses the default noise multiplier (GovernanceSpec.dp_noise = 0.5); the others
  # are named by their knob ("dpsgd-dp_noise0.1").
  dpsgd = tuple(RunSpec("dpsgd") if sigma == 0.5 else RunSpec("dpsgd", knob=(f"governance.dp_noise={sigma}",))
                for sigma in DP_NOISE)
  return StudyConfig(
      name="full",
      base=base_config(),
      runs=(RunSpec("vanilla"), RunSpec("exclude"), RunSpec("depth"), *dpsgd, RunSpec("goldfish"),
            RunSpec("dedup"), RunSpec("depth_probe"), RunSpec("sink")),
      seeds=SEEDS,
      max_train_works=64,
      audit_k=32,
      audit_m=128,
      audit_max_windows_per_work=2,
      canary_m=96,
      curve_steps=(),
      trace_methods=(),
      trace_outputs=0,
      num_samples=0,
      lookup_works=0,
  )
