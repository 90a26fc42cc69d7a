"""Settings, windows and training of the memorization-signal study (:mod:`govjax.study.memorization_signal`).

A (data kind, model size) *unit* is ``K`` half-subset models trained by epochs on one kind's windows, each with
the observing probe that records the memorization gap; every model's record is cached as an ``.npz``.

Example:
  >>> size = SizeSpec("t", num_layers=1, width=16, num_heads=2, num_steps=8, num_models=4)
  >>> measure_steps(size)
  (2, 4, 8)
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import numpy as np

from govjax.core.config import ModelSpec, ProbeSpec, TrainConfig
from govjax.data.chorales import load_chorale_works
from govjax.data.folk import FOLK_VOCAB_SIZE, folk_works, transpose_diatonic
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.probe.monitor import make_probe_plugin
from govjax.train.counterfactual import (
  Trainer,
  complementary_subsets,
  train_and_measure,
)

__all__ = ["SignalStudyConfig", "SizeSpec", "build_windows", "epoch_rows", "gap_probe", "measure_steps", "run_unit",
           "unit_train_config"]


@dataclasses.dataclass(frozen=True)
class SizeSpec:
  """One model size: ``name``, ``num_layers``, ``width``, ``num_heads``, ``num_steps``, ``num_models`` (K)."""

  name: str
  num_layers: int
  width: int
  num_heads: int
  num_steps: int
  num_models: int


@dataclasses.dataclass(frozen=True)
class SignalStudyConfig:
  """The study's numbers (see :mod:`govjax.study.memorization_signal`).

  Attributes:
    sizes: model sizes.
    kinds: data kinds (``chorales``, ``folk``).
    context: window length in tokens.
    batch_size: rows per step (divides the rows of an epoch).
    pool_works, windows_per_work: the counterfactual pool.
    set_works: works in each of the verbatim and varied sets.
    copies: exposures per epoch of a verbatim window (and variations of a varied one).
    calib_works: never-trained calibration works (one window each).
    learning_rate, warmup_steps: the optimizer.
    label_quantile: the top share of counterfactual scores labelled memorized.
    sensitivity_quantiles: other shares reported for the probe's signal and representation entropy.
    seed: roles of the works, subsets, inits.
    resamples: bootstrap resamples per interval.
    gap_calibrate_every: steps between the observing probe's calibrations on the ``calib`` windows (the
      memorization gap's reference point, :mod:`govjax.probe.gap`).
  """

  sizes: tuple[SizeSpec, ...]
  kinds: tuple[str, ...] = ("chorales", "folk")
  context: int = 64
  batch_size: int = 16
  pool_works: int = 64
  windows_per_work: int = 2
  set_works: int = 8
  copies: int = 4
  calib_works: int = 32
  learning_rate: float = 3e-3
  warmup_steps: int = 20
  label_quantile: float = 0.25
  sensitivity_quantiles: tuple[float, ...] = (0.1, 0.5)
  seed: int = 0
  resamples: int = 1000
  gap_calibrate_every: int = 6


# ------------------------------------------------------------------------------------------------ data


def _order(ids: list[str]) -> list[int]:
  return sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())


def _kind_works(kind: str, context: int) -> tuple[list[str], list[np.ndarray], int]:
  """``(work ids, token arrays, vocabulary size)`` of the works long enough for two windows."""
  if kind == "chorales":
    works = [w for w in load_chorale_works(None, "train") if w.length >= 3 * context]
    return [w.work_id for w in works], [np.asarray(w.tokens) for w in works], VOCAB_SIZE
  if kind == "folk":
    songs = folk_works(min_length=2 * context)
    return [s.work_id for s in songs], [s.tokens for s in songs], FOLK_VOCAB_SIZE
  raise ValueError(f"unknown data kind {kind!r}; expected 'chorales' or 'folk'")


def _vary(kind: str, window: np.ndarray, shift: int, vocab_size: int) -> np.ndarray:
  if kind == "chorales":
    return np.where(window >= 3, np.clip(window + shift, 3, vocab_size - 1), window).astype(np.int32)

  return transpose_diatonic(window, shift)


def _cut(tokens: np.ndarray, context: int, count: int, kind: str) -> list[np.ndarray]:
  align = 4 if kind == "chorales" else 1
  start = ((tokens.size - count * context) // 2) // align * align if kind == "chorales" else 0
  return [np.asarray(tokens[start + i * context:start + (i + 1) * context], np.int32) for i in range(count)]


def build_windows(kind: str, config: SignalStudyConfig) -> dict:
  """The windows of one data kind and their roles.

  Returns:
    ``{"windows": int32 [N, T], "work": [N] work ids, "role": [N] ("pool", "verbatim", "varied", "calib"),
    "pool_work": [N] index among the pool works (-1 elsewhere), "vocab_size", "pool_work_ids"}``.
  """
  ids, tokens, vocab = _kind_works(kind, config.context)
  order = _order(ids)
  need = config.pool_works + 2 * config.set_works + config.calib_works
  if len(order) < need:
    raise ValueError(f"{kind}: {len(order)} works are long enough, the study needs {need}")
  picked = [order[i] for i in np.random.default_rng(config.seed).permutation(len(order))[:need]]
  windows, work, role, pool_work = [], [], [], []
  shifts = [s for s in (-2, -1, 1, 2, -3, 3, -4, 4)][:config.copies]
  for rank, index in enumerate(picked):
    if rank < config.pool_works:
      for window in _cut(tokens[index], config.context, config.windows_per_work, kind):
        windows.append(window), work.append(ids[index]), role.append("pool"), pool_work.append(rank)
      continue
    window = _cut(tokens[index], config.context, 1, kind)[0]
    if rank < config.pool_works + config.set_works:
      rows, name = [window], "verbatim"
    elif rank < config.pool_works + 2 * config.set_works:
      rows, name = [_vary(kind, window, s, vocab) for s in shifts], "varied"
    else:
      rows, name = [window], "calib"
    for row in rows:
      windows.append(row), work.append(ids[index]), role.append(name), pool_work.append(-1)
  return {"windows": np.stack(windows), "work": np.array(work), "role": np.array(role),
          "pool_work": np.array(pool_work), "vocab_size": vocab,
          "pool_work_ids": [ids[i] for i in picked[:config.pool_works]]}


def epoch_rows(data: dict, member_works: np.ndarray, copies: int) -> np.ndarray:
  """Rows of one epoch: the pool windows of ``member_works``, verbatim windows ``copies`` times, each variation."""
  role, pool_work = data["role"], data["pool_work"]
  pool = np.flatnonzero((role == "pool") & np.isin(pool_work, np.flatnonzero(member_works)))
  verbatim = np.repeat(np.flatnonzero(role == "verbatim"), copies)
  varied = np.flatnonzero(role == "varied")
  return np.concatenate([pool, verbatim, varied])


# ------------------------------------------------------------------------------------------------ training


def unit_train_config(config: SignalStudyConfig, size: SizeSpec, seed: int) -> TrainConfig:
  """The training config of one model of a unit (``seed`` = its init seed)."""
  return TrainConfig(model=ModelSpec(num_layers=size.num_layers, width=size.width, num_heads=size.num_heads,
                                     context=config.context), num_steps=size.num_steps,
                     batch_size=config.batch_size, learning_rate=config.learning_rate,
                     warmup_steps=config.warmup_steps, seed=seed)


def measure_steps(size: SizeSpec) -> tuple[int, ...]:
  """Steps at which the signals are measured: a quarter, half and all of training."""
  return tuple(sorted({max(size.num_steps // 4, 1), max(size.num_steps // 2, 1), size.num_steps}))


def gap_probe(config: SignalStudyConfig, size: SizeSpec):
  """The observing probe whose evidence is the memorization gap (calibrated on the ``calib`` windows)."""
  spec = ProbeSpec(enabled=True, signal="memorization_gap", direction="high", adaptive=False, ema=0.9,
                   calibrate_every=config.gap_calibrate_every)
  return make_probe_plugin(spec, size.num_layers + 2)


def run_unit(kind: str, size: SizeSpec, config: SignalStudyConfig, out: pathlib.Path, data: dict) -> list[dict]:
  """Trains (or loads from ``out``) the ``K`` half-subset models of one (kind, size); returns their records."""
  subsets = complementary_subsets(config.pool_works, size.num_models, seed=config.seed)
  trainer, records = None, []
  for k in range(size.num_models):
    path = out / f"{kind}-{size.name}-m{k}.npz"
    if path.exists():
      with np.load(path, allow_pickle=False) as f:
        records.append({key: f[key] for key in f.files})
      continue
    train_config = unit_train_config(config, size, seed=1000 * config.seed + k)
    if trainer is None:
      trainer = Trainer(train_config, data["vocab_size"], plugins=(gap_probe(config, size),))
    rows = epoch_rows(data, subsets[k], config.copies)
    result = train_and_measure(train_config, data["windows"], rows, vocab_size=data["vocab_size"],
                               measure_at=measure_steps(size), data_seed=1000 * config.seed + k, trainer=trainer,
                               heldout=data["windows"][data["role"] == "calib"])
    record = {"member_works": subsets[k], "first_loss": result["first_loss"], "last_loss": result["last_loss"],
              # the study's gap is in nats (as measured for the committed results); the probe ranks on the root loss
              "memorization_gap": np.asarray(trainer.plugins[0].gap_nats(result["extras"]["probe"]), np.float64),
              "memorization_gap_root": trainer.plugins[0].evidence(result["extras"]["probe"]),
              "step_ids": result["step_ids"], "step_loss": result["step_loss"],
              "train_s": np.float64(result["train_s"]), "measure_s": np.float64(result["measure_s"]),
              "steps": np.array(sorted(result["signals"]))}
    for step, values in result["signals"].items():
      for name, value in values.items():
        record[f"s{step}/{name}"] = value
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **record)
    tmp.rename(path)
    print(f"{kind} {size.name} model {k}: train {result['train_s']:.0f} s, measure {result['measure_s']:.0f} s",
          flush=True)
    records.append(record)
  return records
