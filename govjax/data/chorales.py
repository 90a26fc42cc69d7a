"""The Bach chorales as a TFDS dataset (array_record, read without TensorFlow).

:class:`GovjaxChorales` is a ``tfds.core.GeneratorBasedBuilder`` built offline from music21's bundled Bach
corpus (see :mod:`govjax.data.corpus`). Each example is one work:

* ``tokens``: int32 ``[num_frames * 4]`` (see :mod:`govjax.data.tokenizer`);
* ``work_id``, ``title``, ``composer``, ``collection``, ``source_path`` (inside the music21 corpus),
  ``sha256`` (of the source file bytes), ``key``: text;
* ``length`` (number of tokens, as for every work) and ``num_frames`` (= length / 4): int32.

Splits train/validation/test are by work (:func:`govjax.data.corpus.split_for_work`). The builder config
encodes the settings (``spq4`` = 4 steps per quarter, whole corpus; ``spq4_max12`` = at most 12 works), so
different settings never collide. The skip report of a build is stored as ``skipped.json`` inside the
dataset folder ``<data_dir>/govjax_chorales/<config>/<version>/``.

Example:
  >>> import tempfile
  >>> data_dir = tempfile.mkdtemp()
  >>> report = prepare_chorales(data_dir, max_works=3, progress=False)
  >>> report.kept, report.split_counts
  (3, {'train': 1, 'validation': 1, 'test': 1})
  >>> prepare_chorales(data_dir, max_works=3, progress=False).already_prepared  # a second call is a no-op
  True
  >>> sorted(load_chorales(data_dir, "train")[0])  # random access, dict examples
  ['collection', 'composer', 'key', 'length', 'num_frames', 'sha256', 'source_path', 'title', 'tokens', 'work_id']
  >>> [work.work_id for work in load_chorale_works(data_dir, "train")]  # list[Work] for the loader
  ['bach/bwv1.6']
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import pathlib
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from govjax.data import corpus, tokenizer
from govjax.data.loader import Work, works_from_data_source

BUILDER_NAME = "govjax_chorales"
DATA_DIR_ENV = "GOVJAX_DATA_DIR"
SKIP_REPORT_FILENAME = "skipped.json"
DEFAULT_CONFIG_NAME = "spq4"
_CONFIG_NAME_RE = re.compile(r"^spq(\d+)(?:_max(\d+))?$")


class DataNotPreparedError(FileNotFoundError):
  """The chorale dataset has not been prepared in the requested data dir."""


def default_data_dir() -> pathlib.Path:
  """``$GOVJAX_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/govjax/data`` (default ``~/.cache/govjax/data``)."""
  if os.environ.get(DATA_DIR_ENV):
    return pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser()
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(cache) / "govjax" / "data"


def _resolve(data_dir: str | os.PathLike | None) -> pathlib.Path:
  return default_data_dir() if data_dir is None else pathlib.Path(data_dir).expanduser()


def config_name(
    steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER, max_works: int | None = None
) -> str:
  """Builder config name for the settings: ``"spq4"``, ``"spq4_max12"``."""
  name = f"spq{int(steps_per_quarter)}"
  return name if max_works is None else f"{name}_max{int(max_works)}"


@dataclasses.dataclass(eq=False)
class ChoralesConfig(tfds.core.BuilderConfig):
  """Builder config: tokenizer grid resolution and optional limit on the number of works."""

  steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER
  max_works: int | None = None


_DEFAULT_CONFIG = ChoralesConfig(
    name=DEFAULT_CONFIG_NAME,
    description="All four-voice chorales, 4 steps per quarter note (16th-note grid).",
)


def make_config(
    steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER, max_works: int | None = None
) -> ChoralesConfig:
  """The builder config for these settings (the predefined default one for ``spq4``, whole corpus)."""
  if steps_per_quarter < 1:
    raise ValueError(f"steps_per_quarter must be positive, got {steps_per_quarter}")
  if max_works is not None and max_works < len(corpus.SPLITS):
    raise ValueError(f"max_works must be at least {len(corpus.SPLITS)} (one work per split), got {max_works}")
  name = config_name(steps_per_quarter, max_works)
  if name == DEFAULT_CONFIG_NAME:
    return _DEFAULT_CONFIG
  limit = "all works" if max_works is None else f"at most {max_works} works"
  return ChoralesConfig(
      name=name,
      description=f"Four-voice chorales, {steps_per_quarter} steps per quarter note, {limit}.",
      steps_per_quarter=int(steps_per_quarter),
      max_works=max_works,
  )


def config_from_name(name: str) -> ChoralesConfig:
  """Inverse of :func:`config_name`."""
  match = _CONFIG_NAME_RE.match(name)
  if not match:
    raise ValueError(f"not a chorale config name: {name!r} (expected e.g. 'spq4' or 'spq4_max12')")
  return make_config(int(match.group(1)), int(match.group(2)) if match.group(2) else None)


class GovjaxChorales(tfds.core.GeneratorBasedBuilder):
  """Four-voice Bach chorales from music21's bundled corpus, tokenized on a fixed grid."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: SATB chorales, frame-major tokens, split by work."}
  BUILDER_CONFIGS = [_DEFAULT_CONFIG]

  def __init__(self, *, num_workers: int = 1, progress: bool = True, **kwargs):
    self._num_workers = num_workers
    self._progress = progress
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Bach chorales from the music21 corpus as four-voice (SATB) token sequences; one example per "
            "work, with provenance (source path, sha256 of the source file) and a split by work."
        ),
        features=tfds.features.FeaturesDict(
            {
                "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                "work_id": text(),
                "title": text(),
                "composer": text(),
                "collection": text(),
                "source_path": text(),
                "sha256": text(),
                "key": text(),
                "length": tfds.features.Scalar(dtype=np.int32),
                "num_frames": tfds.features.Scalar(dtype=np.int32),
            }
        ),
        homepage="https://web.mit.edu/music21/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    config = self.builder_config
    works, report = corpus.collect_works(
        steps_per_quarter=config.steps_per_quarter,
        max_works=config.max_works,
        num_workers=self._num_workers,
        progress=self._progress,
    )
    # During download_and_prepare, data_path is the temporary folder renamed into place on success, so
    # the report appears atomically with the data.
    report.save(self.data_path / SKIP_REPORT_FILENAME)
    by_split = {split: [w for w in works if w.split == split] for split in corpus.SPLITS}
    empty = [split for split, items in by_split.items() if not items]
    if empty:
      raise RuntimeError(f"no works in split(s) {empty}; kept {len(works)} works")
    return {split: self._generate_examples(items) for split, items in by_split.items()}

  def _generate_examples(self, works: Sequence[corpus.ParsedWork]):
    for parsed in works:
      work = parsed.work
      yield work.work_id, {
          "tokens": work.tokens,
          "work_id": work.work_id,
          "title": work.title,
          "composer": work.composer,
          "collection": work.collection,
          "source_path": work.source_path,
          "sha256": work.sha256,
          "key": work.key,
          "length": work.length,
          "num_frames": parsed.num_frames,
      }


@dataclasses.dataclass(frozen=True)
class PrepareReport:
  """Outcome of :func:`prepare_chorales`.

  Attributes:
    data_dir: the root data dir.
    dataset_dir: ``<data_dir>/govjax_chorales/<config>/<version>``.
    config_name: builder config name.
    already_prepared: True when nothing was done because the dataset existed.
    files_seen, kept: files considered and works kept.
    skipped_by_reason: skipped file counts by reason.
    adjustment_totals: encoder adjustments summed over the kept works.
    split_counts: works per split.
    tokens_per_work: summary statistics of tokens per work (all splits).
    wall_time_s: time spent preparing (0 when already prepared).
    skip_report_path: where the full skip report is.
  """

  data_dir: str
  dataset_dir: str
  config_name: str
  already_prepared: bool
  files_seen: int
  kept: int
  skipped_by_reason: dict[str, int]
  adjustment_totals: dict[str, int]
  split_counts: dict[str, int]
  tokens_per_work: dict[str, float]
  wall_time_s: float
  skip_report_path: str

  def format(self) -> str:
    """Human-readable summary (what ``govjax prepare chorales`` prints)."""
    status = "already prepared, nothing to do" if self.already_prepared else (
        f"prepared in {self.wall_time_s:.1f} s")
    skipped = sum(self.skipped_by_reason.values())
    lines = [
        f"chorales ({self.config_name}): {status}",
        f"  data: {self.dataset_dir}",
        f"  files seen: {self.files_seen}, kept: {self.kept}, skipped: {skipped}",
    ]
    lines += [f"    skipped, {reason}: {count}" for reason, count in self.skipped_by_reason.items()]
    if self.adjustment_totals:
      adjusted = ", ".join(f"{name} {count}" for name, count in self.adjustment_totals.items())
      lines.append(f"  encoder adjustments in kept works: {adjusted}")
    lines.append("  splits: " + ", ".join(f"{name} {count}" for name, count in self.split_counts.items()))
    stats = self.tokens_per_work
    if stats.get("works"):
      lines.append(
          f"  tokens per work: min {stats['min']}, median {stats['median']:g}, mean {stats['mean']:.1f}, "
          f"max {stats['max']}, total {stats['total']}"
      )
    lines.append(f"  skip report: {self.skip_report_path}")
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_tfds_warnings():
  """Hides TFDS warnings that are expected here: "Using custom data configuration" (our spq/max_works
  configs) and "Variant folder ... has no dataset_info.json" (asking whether a dataset is prepared)."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


@contextlib.contextmanager
def _tfds_output(progress: bool):
  """Keeps TFDS's "Downloading and preparing dataset ..." lines off stdout (nothing is downloaded: the builder
  reads music21's bundled corpus; the caller reports what was built) and, with ``progress=False``, hides its
  progress bars too. The previous progress-bar setting is restored."""
  from tensorflow_datasets.core.utils import tqdm_utils  # noqa: PLC0415 (TFDS is slow to import; only building the dataset needs it)

  previous = getattr(tqdm_utils, "_active", True)
  if not progress:
    tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(previous)


def _builder(data_dir: pathlib.Path, config: ChoralesConfig, **kwargs) -> GovjaxChorales:
  with _quiet_tfds_warnings():
    return GovjaxChorales(data_dir=os.fspath(data_dir), config=config, **kwargs)


def prepare_chorales(
    data_dir: str | os.PathLike | None = None,
    *,
    steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER,
    max_works: int | None = None,
    num_workers: int = 1,
    progress: bool = True,
) -> PrepareReport:
  """Builds the chorale dataset into ``data_dir`` once; later calls are no-ops that say so.

  Args:
    data_dir: root data dir; default :func:`default_data_dir`.
    steps_per_quarter: tokenizer grid resolution.
    max_works: build a small version with at most this many works (>= 3, all splits non-empty).
    num_workers: parsing processes (ignored with ``max_works``). More than 1 uses spawned processes, so a
      script calling this must do so under ``if __name__ == "__main__":`` (the ``govjax`` CLI does, and
      uses 2 for the whole corpus).
    progress: show progress bars.

  Returns:
    A :class:`PrepareReport`.

  Example::

      print(prepare_chorales(max_works=12).format())
  """
  root = _resolve(data_dir)
  config = make_config(steps_per_quarter, max_works)
  builder = _builder(root, config, num_workers=num_workers, progress=progress)
  with _quiet_tfds_warnings():
    already = builder.is_prepared()
  start = time.perf_counter()
  if not already:
    with _tfds_output(progress):
      builder.download_and_prepare(
          download_dir=os.fspath(root / "downloads"),
          download_config=tfds.download.DownloadConfig(try_download_gcs=False),
          file_format="array_record",
      )
  wall = 0.0 if already else time.perf_counter() - start
  report = read_skip_report(root, config_name=config.name)
  sources = {split: builder.as_data_source(split=split) for split in corpus.SPLITS}
  lengths = [np.asarray(src[i]["tokens"]).size for src in sources.values() for i in range(len(src))]
  return PrepareReport(
      data_dir=os.fspath(root),
      dataset_dir=os.fspath(builder.data_path),
      config_name=config.name,
      already_prepared=already,
      files_seen=report.files_seen,
      kept=report.kept,
      skipped_by_reason=report.counts_by_reason(),
      adjustment_totals=report.adjustment_totals(),
      split_counts={split: len(src) for split, src in sources.items()},
      tokens_per_work=_length_stats(lengths),
      wall_time_s=wall,
      skip_report_path=os.fspath(builder.data_path / SKIP_REPORT_FILENAME),
  )


def _length_stats(lengths: Sequence[int]) -> dict[str, float]:
  if not lengths:
    return {"works": 0, "total": 0}
  values = np.asarray(lengths)
  return {
      "works": int(values.size),
      "total": int(values.sum()),
      "min": int(values.min()),
      "median": float(np.median(values)),
      "mean": float(values.mean()),
      "max": int(values.max()),
  }


def prepared_configs(data_dir: str | os.PathLike | None = None) -> list[str]:
  """Names of the chorale configs fully prepared in ``data_dir`` (sorted)."""
  base = _resolve(data_dir) / BUILDER_NAME
  version = str(GovjaxChorales.VERSION)
  if not base.is_dir():
    return []
  return sorted(
      child.name
      for child in base.iterdir()
      if _CONFIG_NAME_RE.match(child.name) and (child / version / "dataset_info.json").is_file()
  )


def _not_prepared(root: pathlib.Path, detail: str) -> DataNotPreparedError:
  command = "govjax prepare chorales" + ("" if root == default_data_dir() else f" --data-dir {root}")
  return DataNotPreparedError(f"The chorale dataset is not prepared in {root} ({detail}). Run `{command}` "
                              "first (options: --steps-per-quarter N, --max-works N).")


def _prepared_builder(data_dir, config_name_: str | None) -> GovjaxChorales:
  """The builder of a prepared config; ``None`` picks the only one, or the default when there are several."""
  root = _resolve(data_dir)
  available = prepared_configs(root)
  if config_name_ is None:
    if not available:
      raise _not_prepared(root, "no prepared config found")
    if len(available) == 1:
      config_name_ = available[0]
    elif DEFAULT_CONFIG_NAME in available:
      config_name_ = DEFAULT_CONFIG_NAME
    else:
      raise ValueError(f"several chorale configs are prepared in {root}: {available}; pass config_name")
  elif config_name_ not in available:
    raise _not_prepared(root, f"config {config_name_!r} not found; prepared: {available or 'none'}")
  return _builder(root, config_from_name(config_name_))


def load_chorales(
    data_dir: str | os.PathLike | None = None, split: str = "train", *, config_name: str | None = None
) -> Sequence[dict[str, Any]]:
  """Random-access data source of one split (dict examples; text fields are ``bytes``).

  Args:
    data_dir: root data dir; default :func:`default_data_dir`.
    split: "train", "validation" or "test" (TFDS slicing such as "train[:10]" also works).
    config_name: e.g. "spq4"; None: the only prepared config, or "spq4" when there are several.

  Raises:
    DataNotPreparedError: nothing prepared there; the message says to run ``govjax prepare chorales``.
  """
  return _prepared_builder(data_dir, config_name).as_data_source(split=split)


def load_chorale_works(
    data_dir: str | os.PathLike | None = None, split: str = "train", *, config_name: str | None = None
) -> list[Work]:
  """The works of one split as :class:`~govjax.data.loader.Work` objects, sorted by ``work_id``.

  This ordered list is what the loader's ``work_index`` refers to.
  """
  works = works_from_data_source(load_chorales(data_dir, split, config_name=config_name))
  return sorted(works, key=lambda w: w.work_id)


def read_skip_report(data_dir: str | os.PathLike | None = None, *, config_name: str | None = None):
  """The :class:`~govjax.data.corpus.SkipReport` saved when the dataset was prepared."""
  builder = _prepared_builder(data_dir, config_name)
  path = builder.data_path / SKIP_REPORT_FILENAME
  if not path.exists():
    raise _not_prepared(_resolve(data_dir), f"{path} is missing")
  return corpus.SkipReport.load(path)
