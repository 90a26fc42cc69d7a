"""Training data for a run: works -> rights records -> policy -> exclusion -> windows -> batches.

:func:`build_training_data` reads the prepared chorale dataset (``govjax prepare chorales``), adds the generated
structural material when the config asks for it, resolves a rights record for every work from the configured
scenario, applies the policy (excluded works are removed *before* windows are cut, so training with them present
is identical to training on a dataset without them), and serves the batch for step ``s`` as ``train[s]``.

Per-work treatment arrays are aligned with ``works`` (the batches' ``work_index``), so the loop turns a batch into
its ``[B, G]`` group mask with :meth:`TrainBatches.group_mask` (a gather, no Python per row).

Example (needs ``govjax prepare chorales --max-works 12``)::

    from govjax.core.config import load_config
    data = build_training_data(load_config("experiments/configs/tiny.py"))
    batches = data.batches
    batches.train[0]["tokens"].shape, batches.group_mask(batches.train[0]).shape
    # -> ((8, 64), (8, 4))
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from govjax.baselines.dedup import deduplicate_works
from govjax.core.ids import work_kind
from govjax.data import chorales
from govjax.data.canaries import canary_records, canary_table, canary_works, reference_tokens, split_canary_sources
from govjax.data.loader import as_work, build_window_table, iterate_eval_batches, make_train_dataset
from govjax.data.scenario import resolve_records
from govjax.data.structural import structural_works
from govjax.data.tokenizer import VOCAB_SIZE
from govjax.rights.decisions import govern_works
from govjax.rights.policy import load_policy
from govjax.routing.masks import depth_rows_to_mask

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class TrainBatches:
  """What the train loop needs: batches by step, evaluation streams and the per-batch group mask.

  Attributes:
    train: random access by step: ``train[s]`` is the batch dict for step ``s`` (``tokens`` int32 ``[B, T]``,
      ``example_id`` and ``work_index`` int32 ``[B]``, ``region`` float32 ``[B]``), infinite, reshuffled every
      epoch.
    validation: ``validation(max_batches)`` yields eval batches (``tokens``, ``weight``, ...), or None.
    vocab_size: tokenizer vocabulary size.
    num_examples: number of training windows (``example_id`` in ``[0, num_examples)``).
    per_work_depth: int32 ``[W]`` allowed depth of each training work (``num_groups`` = full depth), in
      ``work_index`` order.
    num_groups: the model's depth groups.
    calibration: like ``validation``, on test-split works that give no canary: the probe's calibration, disjoint
      from the validation NLL's works and from the audit's non-members.
    surface: which end a work's depth counts from (``governance.surface``): "output" or "input".
  """

  train: Any
  validation: Callable[[int], Iterable[dict]] | None
  vocab_size: int
  num_examples: int
  per_work_depth: np.ndarray
  num_groups: int
  calibration: Callable[[int], Iterable[dict]] | None = None
  surface: str = "output"

  def group_mask(self, batch: dict) -> np.ndarray:
    """``[B, num_groups]`` float32 mask: row b may reach group g iff ``g >= num_groups - depth[b]`` (output
    surface) or ``g < depth[b]`` (input surface)."""
    depth = self.per_work_depth[np.asarray(batch["work_index"])]
    return depth_rows_to_mask(depth, self.num_groups, self.surface, xp=np)


@dataclasses.dataclass
class WorkCatalogue:
  """What the audit, documentation and provenance need: which works were trained, how, and their windows.

  Attributes:
    works: the training works after exclusion, in ``work_index`` order.
    per_work_depth: int32 ``[len(works)]`` allowed depth of each training work.
    num_groups: the model's depth groups.
    report: JSON-able report (counts of kept, excluded and skipped works, with reasons).
    per_work_region: int32 ``[len(works)]``: 1 where the work is routed to the removable region, else 0.
    heldout_works: validation-split works (never trained on): the baseline of the audits.
    records: ``work_id -> RightsRecord`` for every work considered (excluded ones included).
    treatments: ``work_id -> {"action", "depth", "region", "rule", "reason"}`` for every work considered.
    window_table: ``govjax.data.loader.WindowTable`` of the training windows (row = ``example_id``), or None.
    context: window length in tokens.
  """

  works: list
  per_work_depth: np.ndarray
  num_groups: int
  report: dict = dataclasses.field(default_factory=dict)
  per_work_region: np.ndarray | None = None
  heldout_works: list = dataclasses.field(default_factory=list)
  records: dict = dataclasses.field(default_factory=dict)
  treatments: dict = dataclasses.field(default_factory=dict)
  window_table: Any = None
  context: int | None = None

  def window_tokens(self, example_id: int) -> np.ndarray:
    """The tokens of training window ``example_id`` (PAD-filled past the end of its work)."""
    table = self.window_table
    work = self.works[int(table.work_index[example_id])]
    start = int(table.start[example_id])
    out = np.zeros((table.context,), np.int32)
    piece = np.asarray(work.tokens)[start:start + table.context]
    out[:piece.size] = piece
    return out

  def all_window_tokens(self) -> np.ndarray:
    """int32 ``[num_windows, context]`` every training window's tokens (row = ``example_id``)."""
    return np.stack([self.window_tokens(i) for i in range(len(self.window_table))]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class PlantedCanaries:
  """The distinct canaries planted in a run, for the exposure and extraction audits.

  Attributes:
    tokens: int32 ``[C, T]`` the distinct planted canaries.
    repetitions: int ``[C]`` copies of each canary planted.
    references: int32 ``[R, T]`` never-planted sequences of the canaries' distribution (exposure).
    kinds: str ``[C]``, ``"random"`` or ``"chorale"`` (in-distribution: held-out chorale windows).
  """

  tokens: np.ndarray
  repetitions: np.ndarray
  references: np.ndarray | None = None
  kinds: np.ndarray | None = None


@dataclasses.dataclass
class TrainingData:
  """A run's data side, in the three parts its users need.

  Attributes:
    batches: :class:`TrainBatches` (the train loop).
    catalogue: :class:`WorkCatalogue` (audit, documentation, provenance, sampling).
    canaries: :class:`PlantedCanaries`, or None when the run plants none.
  """

  batches: TrainBatches
  catalogue: WorkCatalogue
  canaries: PlantedCanaries | None = None


class RegionBatches:
  """Wraps a random-access batch source and adds the ``region`` column from per-work region flags."""

  def __init__(self, batches: Any, per_work_region: np.ndarray):
    self._batches = batches
    self._region = np.asarray(per_work_region, np.float32)

  def __getitem__(self, step: int) -> dict:
    batch = dict(self._batches[step])
    batch["region"] = self._region[np.asarray(batch["work_index"])]
    return batch


def _treatments(decisions) -> dict:
  """``work_id -> {"action", "depth", "region", "rule", "reason", "licence"}`` from the policy's decisions."""
  out = {}
  for row in decisions.rows():
    action = "exclude" if not row["include"] else ("region" if row["region"] is not None else "depth")
    out[row.pop("work_id")] = {"action": action, **row}
  return out


def load_works(config) -> dict[str, list]:
  """The chorale works of each split for ``config`` (structural material added to ``train`` when asked).

  Raises:
    govjax.data.chorales.DataNotPreparedError: the data are not prepared; the message says how to.
  """

  name = chorales.config_name(config.steps_per_quarter, config.max_works)
  works = {split: chorales.load_chorale_works(config.data_dir, split, config_name=name) for split in SPLITS}
  if config.governance.include_structural:

    works["train"] = works["train"] + [as_work(w) for w in structural_works()]
  return works


def build_training_data(config, *, works: dict[str, list] | None = None) -> TrainingData:
  """Builds the :class:`TrainingData` a config describes.

  Args:
    config: a ``govjax.core.config.TrainConfig``.
    works: optional works per split (``{"train": [...], "validation": [...], "test": [...]}``) instead of the
      prepared chorale dataset (tests, planted canaries).

  Returns:
    The training data; ``report`` lists excluded works with the rule and reason.
  """

  num_groups = config.model.num_layers + 2
  context = config.model.context
  works = load_works(config) if works is None else {s: [as_work(w) for w in works.get(s, [])] for s in SPLITS}
  if not works["train"]:
    raise ValueError("no training works: the train split is empty")
  every = [w for split in SPLITS for w in works[split]]
  records = resolve_records(config.governance.scenario, every, seed=config.seed)
  spec = config.canaries
  # Test-split works either give chorale canaries or calibrate the probe, never both (by work id).
  canary_sources, calibration_works = (split_canary_sources(works["test"]) if spec.chorale_count
                                       else ([], list(works["test"])))
  canaries = canary_works(spec, canary_sources) if spec.count or spec.chorale_count else []
  if canaries:
    works = dict(works, train=works["train"] + canaries)
    records = records + canary_records(canaries, config.canaries)
  by_id = {r.work_id: r for r in records}
  train_ids = [w.work_id for w in works["train"]]
  policy = load_policy(config.governance.policy)
  dedup_report = None
  if config.governance.deduplicate:

    deduplicated, dedup_report = deduplicate_works(works["train"])
    works = dict(works, train=deduplicated)
  # Works without a record take the policy's missing-record rule (an error listing them, by default).
  governed = govern_works(works["train"], records, policy, num_groups)
  kept = governed.works
  if not kept:
    raise ValueError(f"policy {policy.name!r} excluded every training work ({len(train_ids)})")
  depth = np.asarray(governed.per_work_depth, np.int32)
  region = (np.asarray(governed.per_work_region) >= 0).astype(np.int32)
  if config.governance.routing == "none":
    depth = np.full_like(depth, num_groups)  # vanilla: every included work trains the full depth
  table = build_window_table(kept, context=context, stride=config.window_stride)
  batches = make_train_dataset(kept, context=context, batch_size=config.batch_size, seed=config.seed,
                               stride=config.window_stride)
  heldout = works["validation"]

  def eval_batches(held: list):
    def batches(max_batches: int):
      for index, batch in enumerate(iterate_eval_batches(held, context=context, batch_size=config.batch_size,
                                                         stride=context - context % 4)):
        if index >= max_batches:
          return
        yield batch
    return batches

  validation = eval_batches(heldout)

  treatments = _treatments(governed.decisions)
  exclusion = governed.report.to_dict()
  report = {
      "works": {split: len(works[split]) for split in SPLITS},
      "train_works_kept": len(kept),
      "train_works_excluded": len(train_ids) - len(kept),
      "structural_works": sum(work_kind(w.work_id) == "structural" for w in kept),
      "canary_works": len(canaries),
      "train_windows": len(table),
      "padded_windows": table.num_padded_windows,
      "depth_histogram": {str(d): int(c) for d, c in sorted(collections.Counter(depth.tolist()).items())},
      "region_works": int(region.sum()),
      "rules": dict(collections.Counter(t["rule"] for t in treatments.values())),
      "scenario": config.governance.scenario,
      "policy": policy.name,
      "exclusion": exclusion,
      "deduplication": None if dedup_report is None else dedup_report.to_dict(),
  }
  planted = None
  if canaries:
    table_of = canary_table(spec, canary_sources)
    planted = PlantedCanaries(tokens=table_of.tokens, repetitions=table_of.repetitions,
                              references=reference_tokens(spec, 1000), kinds=table_of.kinds)
  batches_part = TrainBatches(
      train=RegionBatches(batches, region),
      validation=validation if heldout else None,
      calibration=eval_batches(calibration_works) if calibration_works else None,
      vocab_size=VOCAB_SIZE,
      num_examples=len(table),
      per_work_depth=depth,
      num_groups=num_groups,
      surface=config.governance.surface,
  )
  catalogue = WorkCatalogue(works=list(kept), per_work_depth=depth, num_groups=num_groups, report=report,
                            per_work_region=region, heldout_works=list(heldout), records=by_id,
                            treatments=treatments, window_table=table, context=context)
  return TrainingData(batches=batches_part, catalogue=catalogue, canaries=planted)
