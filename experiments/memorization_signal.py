"""The memorization-signal study: counterfactual labels from half-subset retrains, 5 model sizes, 2 data kinds.

Command (data seed 0 is the main run; seeds 1 and 2 are replications summarised under ``replications``):
  export GOVJAX_DATA_DIR=runs/data
  for seed in 1 2; do nice -n 15 python -m govjax.study.memorization_signal \
      --config experiments/memorization_signal.py --seed $seed --out runs/memorization_signal/seed$seed \
      --results runs/memorization_signal/seed$seed.json; done
  nice -n 15 python -m govjax.study.memorization_signal --config experiments/memorization_signal.py \
      --out runs/memorization_signal/seed0 --results experiments/results/memorization_signal.json \
      --figure experiments/results/memorization_signal.png \
      --replications runs/memorization_signal/seed1.json runs/memorization_signal/seed2.json

Runtime on 2 CPU cores: about 23 minutes per data seed (training and measuring about 20 min: xs 1 min, s 2 min,
m 3 min, l 5 min, xl 7 min over both data kinds; then about 3 minutes of analysis), so about 70 minutes for the
three; per-model records are cached under ``--out``, so a rerun resumes and redoes only the analysis.
Setting: windows of 64 tokens; 64 pool works (2 windows each), 4 verbatim works (4 copies per epoch), 4 varied
works (4 variations, each once per epoch), 32 never-trained calibration works; per (data kind, size) K half-subset
models (complementary pairs), batch 16, 6 steps per epoch; every model carries the observing probe with the
memorization gap, calibrated every epoch on the calibration works. Sizes (small for CPU time): xs = 2 blocks of
width 64 (0.11M parameters, 240 steps = 40 epochs, K = 8), s = 3 x 96 (0.36M, 240 steps, K = 6), m = 4 x 128
(0.82M, 120 steps = 20 epochs, K = 6), l = 4 x 256 (3.2M, 120 steps, K = 6), xl = 4 x 320 (5.0M, 120 steps, K = 6).
Data kinds: Bach chorales (the prepared TFDS train split: run `govjax prepare chorales` first) and Essen folk
melodies (music21's corpus, ABC text by character).
Expected result (experiments/RESULTS.md): against the counterfactual labels at equal frequency, the memorization
gap scores 0.79-0.94 over every unit and data seed (highest AUC in 29 of 30 unit-seeds); uncentred
representation entropy 0.50-0.93 with *higher* entropy = memorized (against the seed's hypothesis), the
model-free zlib size 0.54-0.91, the final loss 0.37-0.71.
"""

from govjax.study.memorization_signal import SignalStudyConfig, SizeSpec


def get_config() -> SignalStudyConfig:
  return SignalStudyConfig(sizes=(
      SizeSpec("xs", num_layers=2, width=64, num_heads=4, num_steps=240, num_models=8),
      SizeSpec("s", num_layers=3, width=96, num_heads=4, num_steps=240, num_models=6),
      SizeSpec("m", num_layers=4, width=128, num_heads=4, num_steps=120, num_models=6),
      SizeSpec("l", num_layers=4, width=256, num_heads=4, num_steps=120, num_models=6),
      SizeSpec("xl", num_layers=4, width=320, num_heads=4, num_steps=120, num_models=6),
  ), set_works=4)
