"""The influence index: projected, depth-masked training-example features per checkpoint, on disk with an
integrity hash.

An index holds, for every kept checkpoint ``c`` and training example ``n``, the feature ``phi_c(n)`` (see
:mod:`govjax.provenance.featurize`), the checkpoint's learning rate ``lr_c`` and every example's TracIn
self-influence ``sum_c lr_c ||phi_c(n)||^2`` (from the features before any normalisation). It also stores what a
lineage needs without the training data: each example's work and the works' ids, depths and licence terms.

On disk (``workdir/provenance/index/``):

- ``features.npy``: float32 ``[C, N, k]``;
- ``arrays.npz``: ``self_influence`` ``[N]``, ``learning_rates`` ``[C]``, ``steps`` ``[C]``,
  ``example_work`` ``[N]``, ``example_depth`` ``[N]``;
- ``index.json``: format, feature config (k, projection seed, ...), checkpoints, dataset fingerprint, works,
  free metadata, the sha256 of both array files and ``sha256``: the hash of the whole JSON document without that
  field. :meth:`InfluenceIndex.load` recomputes all three and raises :class:`IndexIntegrityError` naming the file
  that does not match.

Example:
  >>> import tempfile
  >>> index = InfluenceIndex(features=np.ones((1, 2, 4), np.float32), self_influence=np.array([4.0, 4.0]),
  ...     learning_rates=np.array([0.1]), steps=np.array([10]), example_work=np.array([0, 1]),
  ...     example_depth=np.array([3, 1]), works=[{"work_id": "a"}, {"work_id": "b"}],
  ...     feature_config=FeatureConfig(k=4), metadata={"dataset_fingerprint": "x"})
  >>> path = index.save(tempfile.mkdtemp())
  >>> InfluenceIndex.load(path).num_examples
  2
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from govjax.core.checkpoint import CheckpointParams
from govjax.provenance.featurize import FeatureConfig, Featurizer, checkpoint_preconditioner, divide_rows

FORMAT = "govjax-influence-index/1"
INDEX_DIR = pathlib.Path("provenance") / "index"
_FILES = ("features.npy", "arrays.npz")
_ARRAYS = ("self_influence", "learning_rates", "steps", "example_work", "example_depth")


class IndexIntegrityError(ValueError):
  """An index file does not match the hash recorded when the index was written."""


def sha256_file(path: str | pathlib.Path, *, chunk: int = 1 << 20) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def _json_sha256(document: Mapping[str, Any]) -> str:
  body = {k: v for k, v in document.items() if k != "sha256"}
  return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def dataset_fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
  """sha256 over named arrays (name, dtype, shape and bytes, in name order): identifies the indexed examples."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    value = np.ascontiguousarray(arrays[name])
    digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


@dataclasses.dataclass
class InfluenceIndex:
  """Training-example features of a run (see the module docstring).

  Attributes:
    features: float32 ``[C, N, k]`` (unit rows when ``feature_config.normalize``).
    self_influence: float64 ``[N]``: ``sum_c lr_c ||phi_c(n)||^2`` before normalisation.
    learning_rates: float64 ``[C]``.
    steps: int ``[C]`` checkpoint steps.
    example_work: int ``[N]`` work index of every example.
    example_depth: int ``[N]`` number of depth groups each example trained (union over checkpoints).
    works: one JSON dict per work index (``work_id``, ``depth``, ``licence``, ``attribution_text``, ...).
    feature_config: how the features were made (k, projection seed, ...).
    metadata: JSON-able (``dataset_fingerprint``, ``num_groups``, run details, timings).
  """

  features: np.ndarray
  self_influence: np.ndarray
  learning_rates: np.ndarray
  steps: np.ndarray
  example_work: np.ndarray
  example_depth: np.ndarray
  works: list[dict]
  feature_config: FeatureConfig
  metadata: dict

  def __post_init__(self):
    if self.features.ndim != 3:
      raise ValueError(f"InfluenceIndex.features must be [C, N, k], got shape {self.features.shape}")
    c, n, k = self.features.shape
    for name, shape in (("self_influence", (n,)), ("learning_rates", (c,)), ("steps", (c,)),
                        ("example_work", (n,)), ("example_depth", (n,))):
      if np.shape(getattr(self, name)) != shape:
        raise ValueError(f"InfluenceIndex.{name} has shape {np.shape(getattr(self, name))}, expected {shape}")
    if k != self.feature_config.k:
      raise ValueError(f"InfluenceIndex.features has k={k}, feature_config.k={self.feature_config.k}")
    if n and (self.example_work.min() < 0 or self.example_work.max() >= len(self.works)):
      raise ValueError(f"InfluenceIndex.example_work ranges over [{self.example_work.min()}, "
                       f"{self.example_work.max()}], outside the {len(self.works)} works")

  @property
  def num_examples(self) -> int:
    return int(self.features.shape[1])

  @property
  def num_checkpoints(self) -> int:
    return int(self.features.shape[0])

  @property
  def num_works(self) -> int:
    return len(self.works)

  def save(self, directory: str | pathlib.Path) -> pathlib.Path:
    """Writes the index (replacing one there) and returns its directory."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "features.npy", np.ascontiguousarray(self.features, np.float32), allow_pickle=False)
    np.savez(directory / "arrays.npz", **{name: np.asarray(getattr(self, name)) for name in _ARRAYS})
    document = {
        "format": FORMAT,
        "feature_config": self.feature_config.to_dict(),
        "checkpoints": [{"step": int(s), "learning_rate": float(lr)}
                        for s, lr in zip(self.steps, self.learning_rates, strict=True)],
        "num_examples": self.num_examples,
        "works": self.works,
        "metadata": self.metadata,
        "files": {name: sha256_file(directory / name) for name in _FILES},
    }
    document["sha256"] = _json_sha256(document)
    (directory / "index.json").write_text(json.dumps(document, indent=1, sort_keys=True, default=_json_default))
    return directory

  @classmethod
  def load(cls, directory: str | pathlib.Path, *, verify: bool = True) -> InfluenceIndex:
    """Reads an index written by :meth:`save`.

    Args:
      directory: the index directory (e.g. ``workdir/provenance/index``).
      verify: check the recorded sha256 of ``index.json`` and of both array files.

    Returns:
      The index.

    Raises:
      FileNotFoundError: a file is missing.
      IndexIntegrityError: a file was changed or corrupted after the index was written.
    """
    directory = pathlib.Path(directory)
    meta_path = directory / "index.json"
    if not meta_path.is_file():
      raise FileNotFoundError(f"no influence index at {directory} (index.json missing); run `govjax index`")
    try:
      document = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
      raise IndexIntegrityError(f"{meta_path}: not valid JSON ({error}); the index is corrupted") from error
    if document.get("format") != FORMAT:
      raise ValueError(f"{meta_path}: field 'format' is {document.get('format')!r}, expected {FORMAT!r}")
    if verify:
      if document.get("sha256") != _json_sha256(document):
        raise IndexIntegrityError(f"{meta_path}: sha256 of the metadata does not match its field 'sha256'; "
                                  "the index was modified or corrupted; rebuild it with `govjax index`")
      for name in _FILES:
        path = directory / name
        if not path.is_file():
          raise FileNotFoundError(f"influence index file missing: {path}")
        expected = document.get("files", {}).get(name)
        actual = sha256_file(path)
        if actual != expected:
          raise IndexIntegrityError(f"{path}: sha256 {actual[:16]}... does not match the recorded "
                                    f"{str(expected)[:16]}...; the index is corrupted; rebuild it with "
                                    "`govjax index`")
    features = np.load(directory / "features.npy", allow_pickle=False)
    with np.load(directory / "arrays.npz", allow_pickle=False) as arrays:
      values = {name: arrays[name] for name in _ARRAYS}
    return cls(features=features, works=list(document["works"]),
               feature_config=FeatureConfig.from_dict(document["feature_config"]),
               metadata=dict(document["metadata"]), **values)


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def build_index(
    featurizer: Featurizer,
    checkpoints: Sequence[CheckpointParams],
    inputs: Mapping[str, np.ndarray],
    masks: np.ndarray,
    *,
    example_work: np.ndarray,
    works: Sequence[Mapping[str, Any]],
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> InfluenceIndex:
  """Featurizes every training example at every checkpoint.

  Args:
    featurizer: a :class:`~govjax.provenance.featurize.Featurizer` (its config decides k, seed, ...).
    checkpoints: the checkpoints, in the order of ``masks``.
    inputs: the training examples, arrays with a leading ``[N]`` axis (e.g. ``{"tokens": [N, L]}``).
    masks: float ``[C, N, G]`` group masks per checkpoint (from the routing log, see
      :func:`govjax.provenance.record.training_record`).
    example_work: int ``[N]`` work index of every example.
    works: one JSON dict per work (at least ``work_id``).
    metadata: extra JSON metadata (``dataset_fingerprint`` is added when absent).
    progress: called with a line per checkpoint.

  Returns:
    The :class:`InfluenceIndex` (not yet saved).
  """
  config = featurizer.config
  masks = np.asarray(masks, np.float32)
  n = len(next(iter(inputs.values())))
  if masks.shape != (len(checkpoints), n, featurizer.num_groups):
    raise ValueError(f"masks has shape {masks.shape}, expected {(len(checkpoints), n, featurizer.num_groups)} "
                     "(checkpoints, examples, groups)")
  example_work = np.asarray(example_work, np.int64)
  features = np.zeros((len(checkpoints), n, config.k), np.float32)
  self_influence = np.zeros(n, np.float64)
  seconds = []
  for c, ckpt in enumerate(checkpoints):
    start = time.perf_counter()
    precond = checkpoint_preconditioner(ckpt, config)
    if config.normalize:
      # Divided by the norm of the unmasked gradient: masking keeps lowering the norm (depth weighting).
      phi, norms = featurizer.features_and_norms(ckpt.params, inputs, masks[c], preconditioner=precond)
    else:
      phi = featurizer(ckpt.params, inputs, masks[c], preconditioner=precond, normalize=False)
    seconds.append(time.perf_counter() - start)
    self_influence += ckpt.learning_rate * np.sum(phi.astype(np.float64) ** 2, axis=1)
    features[c] = divide_rows(phi, norms) if config.normalize else phi
    if progress is not None:
      progress(f"checkpoint {ckpt.step}: {n} examples in {seconds[-1]:.1f} s")
  meta = dict(metadata or {})
  meta.setdefault("dataset_fingerprint", dataset_fingerprint({**inputs, "example_work": example_work}))
  meta.setdefault("num_groups", featurizer.num_groups)
  meta["featurize_seconds"] = [round(s, 4) for s in seconds]
  return InfluenceIndex(
      features=features,
      self_influence=self_influence,
      learning_rates=np.asarray([c.learning_rate for c in checkpoints], np.float64),
      steps=np.asarray([c.step for c in checkpoints], np.int64),
      example_work=example_work,
      example_depth=(masks.max(axis=0) > 0).sum(axis=1).astype(np.int64),
      works=[dict(w) for w in works],
      feature_config=config,
      metadata=meta,
  )
