"""The memorization regime at its smallest: vanilla training on 8 works for as many steps as study_memorize.py.

Command:
  govjax study --config experiments/configs/study_memorize_small.py --out runs/study_memorize_small
  # then: cp runs/study_memorize_small/study.json experiments/results/study_memorize_small.json

Runtime: 3.3 minutes measured on 2 shared CPU cores (3 runs of 400 steps of batch 16 x 160 tokens).
Setting: experiments/configs/study_memorize.py with 8 training works (about 100 windows: about 60 epochs) and
vanilla training only (three seeds; 110 windows); the 41 validation works (every window) are the non-members.
Expected result: exact extraction of two-bar continuations of trained works clearly above that of never-seen
works (which is 0), on top of a per-work membership AUC near 1.
"""

import dataclasses
import pathlib

from govjax.study.methods import RunSpec, StudyConfig, load_study


def get_study() -> StudyConfig:
  memorize = load_study(pathlib.Path(__file__).with_name("study_memorize.py"))
  return dataclasses.replace(memorize, name="memorize-small", runs=(RunSpec("vanilla"),), max_train_works=8,
                             base=dataclasses.replace(memorize.base, name="study-memorize-small"))
