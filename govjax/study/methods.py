"""The methods the governance study compares, and the study config.

Every method is a list of config overrides (``--set`` syntax) applied to the study's base ``TrainConfig``, so a
method is exactly reproducible with ``govjax train --config BASE --set ...``. Knobs (the x-axis of the
utility-vs-memorization plot) are further overrides per variant.

Methods:

- ``vanilla``: no governance: every work, opted-out ones included, trains the full depth.
- ``exclude``: the baseline of simply excluding opted-out and restricted works.
- ``depth``: the default policy with depth routing (restricted works train the surface only).
- ``depth_probe``: ``depth`` plus the in-training memorization probe lowering depth adaptively, on the loss EMA
  (signal ``loss``, side ``low``: the probe the committed study measured; the probe's default is now the
  memorization gap).
- ``sink``: restricted works routed into a removable region (extra MLP units), dropped at generation.
- ``dpsgd``: per-example clipping and Gaussian noise (all works, full depth).
- ``goldfish``: goldfish loss, dropping 1/k of the tokens by a hash of their context (all works).
- ``dedup``: near-duplicate works removed before training (all works otherwise).

Every run of a study is repeated for each of ``StudyConfig.seeds`` (:func:`study_runs`, seed-major, so an
interrupted study has whole seeds first).

Example:
  >>> from govjax.core.config import TrainConfig
  >>> config = method_config(TrainConfig(), "depth", seed=1)
  >>> config.governance.routing, config.seed
  ('depth', 1)
  >>> study = StudyConfig("s", TrainConfig(), runs=(RunSpec("vanilla"), RunSpec("exclude")), seeds=(0, 1))
  >>> [r.name for r in study_runs(study)]
  ['vanilla-s0', 'exclude-s0', 'vanilla-s1', 'exclude-s1']
  >>> RunSpec("dpsgd", 2, ("governance.dp_noise=0.5",)).name
  'dpsgd-dp_noise0.5-s2'
"""

from __future__ import annotations

import dataclasses
import pathlib

from govjax.core.config import TrainConfig, apply_overrides, load_python_config

__all__ = ["METHODS", "Method", "RunSpec", "StudyConfig", "load_study", "method_config", "study_runs"]


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method: a label and the config overrides that make it."""

  name: str
  label: str
  overrides: tuple[str, ...]


METHODS = {m.name: m for m in (
    Method("vanilla", "vanilla (no governance)", ("governance.routing=none", "governance.policy=include-all")),
    Method("exclude", "exclude restricted works",
           ("governance.routing=none", "governance.policy=exclude-restricted")),
    Method("depth", "depth routing (policy)", ("governance.routing=depth", "governance.policy=default")),
    Method("depth_probe", "depth routing + probe",
           ("governance.routing=depth", "governance.policy=default", "probe.enabled=true", "probe.signal=loss",
            "probe.direction=low")),
    Method("sink", "removable region (sink)",
           ("governance.routing=region", "governance.policy=sink", "model.region_width=64")),
    Method("dpsgd", "DP-SGD", ("governance.routing=none", "governance.policy=include-all",
                               "governance.baseline=dpsgd")),
    Method("goldfish", "goldfish loss", ("governance.routing=none", "governance.policy=include-all",
                                         "governance.baseline=goldfish")),
    Method("dedup", "deduplication", ("governance.routing=none", "governance.policy=include-all",
                                      "governance.deduplicate=true")),
)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One training run of the study: a method, a seed and optional knob overrides."""

  method: str
  seed: int = 0
  knob: tuple[str, ...] = ()

  @property
  def name(self) -> str:
    knob = "".join(f"-{k.partition('=')[0].split('.')[-1]}{k.partition('=')[2]}" for k in self.knob)
    return f"{self.method}{knob}-s{self.seed}"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """What the study runs and measures.

  Attributes:
    name: the study's name (report title).
    base: the base training config (data, model, budget, scenario, canaries).
    runs: the runs (each is repeated for every seed of ``seeds``; a run's own seed is ignored then).
    seeds: training seeds; every run is trained once per seed (empty: each run's own seed).
    max_train_works: train on at most this many works of the training split (chosen by the sha256 of the work
      id; the rest of the split is not used at all); None: all.
    audit_k, audit_m: extraction prompt and continuation lengths.
    audit_max_windows_per_work: audit at most this many windows per training-split work (None: all); held-out
      works are audited on every window.
    canary_m: continuation length of canary extraction (default: ``min(audit_m, canary length // 2)``).
    decode_per_split: windows per split (training split, held out) greedy-decoded for token match and edit
      similarity (exact match is measured on every window); None: all.
    dp_delta: the delta of DP-SGD's epsilon.
    curve_steps: audit these checkpoint steps too, for the extraction-over-training figure (None: every kept
      checkpoint; empty: none).
    trace_methods: methods whose runs get an influence index and traced outputs.
    trace_outputs: number of training windows traced as "reproducing outputs" (provenance recall).
    trace_k: projection dimension of the influence index.
    num_samples: chorales sampled from each run (MIDI in the run's samples/ folder).
    lookup_works: works checked by the transformed-copy lookup figure (0: skip).
  """

  name: str
  base: TrainConfig
  runs: tuple[RunSpec, ...]
  seeds: tuple[int, ...] = ()
  max_train_works: int | None = None
  audit_k: int = 32
  audit_m: int = 128
  audit_max_windows_per_work: int | None = 2
  canary_m: int | None = None
  decode_per_split: int | None = 16
  dp_delta: float = 1e-5
  curve_steps: tuple[int, ...] | None = None
  trace_methods: tuple[str, ...] = ("vanilla", "depth")
  trace_outputs: int = 24
  trace_k: int = 256
  num_samples: int = 2
  lookup_works: int = 16


def method_config(base: TrainConfig, method: str, *, seed: int = 0, knob: tuple[str, ...] = ()) -> TrainConfig:
  """The training config of ``method`` (with ``seed`` and knob overrides) on top of ``base``.

  Raises:
    ValueError: unknown method (the message lists the known ones).
  """
  if method not in METHODS:
    raise ValueError(f"unknown study method {method!r}; known: {sorted(METHODS)}")
  overrides = list(METHODS[method].overrides) + list(knob) + [f"seed={seed}"]
  config = apply_overrides(base, overrides)
  return dataclasses.replace(config, name=f"{base.name}-{method}")


def study_runs(study: StudyConfig) -> list[RunSpec]:
  """Every run of ``study``: its runs for each seed, seed-major (all of seed 0 first)."""
  if not study.seeds:
    return list(study.runs)
  return [dataclasses.replace(run, seed=seed) for seed in study.seeds for run in study.runs]


def load_study(path: str | pathlib.Path) -> StudyConfig:
  """Loads ``get_study() -> StudyConfig`` from a Python config file (each run's config validated early)."""
  study = load_python_config(path, "get_study", StudyConfig)
  for run in study_runs(study):
    method_config(study.base, run.method, seed=run.seed, knob=run.knob)  # validates early
  return study
