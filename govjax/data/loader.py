"""Fixed-length token windows over a list of works, served by grain.

The loader is independent of TFDS: it takes an ordered ``Sequence`` of works (:class:`Work` or dicts with the
same fields) and cuts each work's tokens into windows of ``context`` tokens that start on frame boundaries
(multiples of 4 tokens), ``stride`` tokens apart. The last window of a work is padded with PAD when the work
does not fill it, so every token is in at least one window; padded windows are counted in the
:class:`WindowTable`.

Every window has a stable ``example_id`` (its row in the window table) and a ``work_index`` (the position of
its work in the list passed in), so per-work metadata arrays can be gathered per batch row.

* :func:`make_train_dataset`: an infinite ``grain.MapDataset`` of batches, random access by step
  (``ds[step]``), reshuffled every epoch. Resuming at step ``s`` is just reading ``ds[s]``.
* :class:`ArrayWindowBatches`: the same random access over windows already held as arrays.
* :func:`make_eval_dataset` / :func:`iterate_eval_batches`: all windows once, in order; the last batch is
  padded and carries a ``weight`` of 0 on padding rows, so nothing is dropped.

Example:
  >>> works = [Work(work_id="bach/x", title="x", composer="J. S. Bach", collection="c", source_path="x.mxl",
  ...               sha256="0" * 64, key="C major", tokens=np.arange(64, dtype=np.int32) % 69 + 3, length=64)]
  >>> build_window_table(works, context=32, stride=16).start.tolist()
  [0, 16, 32]
  >>> batch = make_train_dataset(works, context=32, batch_size=2, seed=0, stride=16)[0]
  >>> {key: value.shape for key, value in sorted(batch.items())}
  {'example_id': (2,), 'tokens': (2, 32), 'work_index': (2,)}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from govjax.core.ids import CANARY_PREFIX, STRUCTURAL_PREFIX, work_kind  # noqa: F401 (re-exported)

if TYPE_CHECKING:
  import grain  # noqa: PLC0415 (grain imports JAX, which corpus-parsing workers do not need)

PAD = 0  # same as govjax.data.tokenizer.PAD (not imported, so the loader does not need music21)
FRAME_SIZE = 4  # tokens per frame (Soprano, Alto, Tenor, Bass)
WORK_FIELDS = (
    "work_id", "title", "composer", "collection", "source_path", "sha256", "key", "tokens", "length"
)

@dataclasses.dataclass(frozen=True, eq=False)
class Work:
  """One work: metadata plus its token sequence.

  Attributes:
    work_id: stable id, e.g. ``"bach/bwv10.7"`` (generated structural material uses ``"structural/..."``).
    title, composer, collection: descriptive metadata.
    source_path: path of the source file inside its collection (e.g. ``"bach/bwv10.7.mxl"``).
    sha256: hex sha256 of the source file bytes.
    key: e.g. ``"G minor"``.
    tokens: int32 array ``[num_frames * 4]`` (read-only).
    length: number of tokens (``len(tokens)``; frames = length // 4).
    extra: any further fields of the source dict (e.g. ``content_class``, ``licence``), kept as given.
  """

  work_id: str
  title: str
  composer: str
  collection: str
  source_path: str
  sha256: str
  key: str
  tokens: np.ndarray
  length: int
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    tokens = np.asarray(self.tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
      raise ValueError(
          f"work {self.work_id!r}: field 'tokens' must be a 1-D integer array, got {tokens.dtype} "
          f"{tokens.shape}"
      )
    if tokens.size == 0 or tokens.size % FRAME_SIZE:
      raise ValueError(
          f"work {self.work_id!r}: field 'tokens' has {tokens.size} tokens, expected a positive multiple "
          f"of {FRAME_SIZE}"
      )
    if int(self.length) != tokens.size:
      raise ValueError(
          f"work {self.work_id!r}: field 'length' is {self.length} but it has {tokens.size} tokens"
      )
    view = tokens.astype(np.int32, copy=False).view()
    view.flags.writeable = False
    object.__setattr__(self, "tokens", view)
    object.__setattr__(self, "length", int(self.length))


def _text(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return _text(value.item())
  return str(value)


def as_work(item: Work | Mapping[str, Any]) -> Work:
  """Returns ``item`` as a :class:`Work` (dicts: bytes decoded as UTF-8, unknown fields kept in ``extra``).

  Raises:
    ValueError: a field is missing or malformed (the message names the work and the field).
  """
  if isinstance(item, Work):
    return item
  work_id = _text(item.get("work_id", "<missing work_id>"))
  missing = [name for name in WORK_FIELDS if name not in item]
  if missing:
    raise ValueError(f"work {work_id!r}: missing field(s) {missing}")
  fields = {name: _text(item[name]) for name in WORK_FIELDS if name not in ("tokens", "length")}
  extra = {name: value for name, value in item.items() if name not in WORK_FIELDS}
  length = int(np.asarray(item["length"]))
  return Work(tokens=np.asarray(item["tokens"]), length=length, extra=extra, **fields)


def works_from_data_source(source: Sequence[Mapping[str, Any]]) -> list[Work]:
  """Converts a random-access data source of dict examples (e.g. ``load_chorales(...)``) into works.

  The order of the source is kept, so ``work_index`` in batches indexes this list.
  """
  return [as_work(source[i]) for i in range(len(source))]


@dataclasses.dataclass(frozen=True)
class WindowTable:
  """All windows of a list of works. Row ``i`` (the window's ``example_id``) starts at token
  ``start[i]`` of work ``work_index[i]``.

  Attributes:
    work_index: int32 ``[num_windows]``.
    start: int64 ``[num_windows]``, token offsets, multiples of 4.
    context: window length in tokens.
    stride: distance between window starts in tokens.
    num_padded_windows: windows that run past the end of their work and are filled with PAD.
    num_pad_tokens: total PAD tokens added.
    num_short_works: works shorter than ``context`` (their single window is padded).
  """

  work_index: np.ndarray
  start: np.ndarray
  context: int
  stride: int
  num_padded_windows: int
  num_pad_tokens: int
  num_short_works: int

  def __len__(self) -> int:
    return int(self.work_index.shape[0])


def _default_stride(context: int) -> int:
  return max(FRAME_SIZE, context - context % FRAME_SIZE)


def build_window_table(works: Sequence[Work | Mapping[str, Any]], *, context: int, stride: int | None = None):
  """Cuts every work into windows of ``context`` tokens starting every ``stride`` tokens.

  A work of ``T`` tokens gets windows at starts 0, stride, 2*stride, ... up to and including the first one
  that reaches the end of the work (``start + context >= T``), so every token is covered.

  Args:
    works: ordered works (``Work`` or dicts).
    context: window length in tokens (>= 4).
    stride: distance between window starts in tokens; a positive multiple of 4, at most ``context`` (so no
      token is skipped). Default: ``context`` rounded down to a whole frame.

  Returns:
    A :class:`WindowTable`.
  """
  works = [as_work(w) for w in works]
  if context < FRAME_SIZE:
    raise ValueError(f"context must be at least {FRAME_SIZE} tokens, got {context}")
  stride = _default_stride(context) if stride is None else stride
  if stride <= 0 or stride % FRAME_SIZE or stride > context:
    raise ValueError(f"stride must be a positive multiple of {FRAME_SIZE} and <= context ({context}), "
                     f"got {stride}")
  if not works:
    raise ValueError("no works to build windows from")
  work_index, starts = [], []
  padded = pad_tokens = short = 0
  for index, work in enumerate(works):
    total = work.tokens.size
    short += total < context
    for start in range(0, total, stride):
      work_index.append(index)
      starts.append(start)
      if start + context >= total:
        if start + context > total:
          padded += 1
          pad_tokens += start + context - total
        break
  return WindowTable(
      work_index=np.asarray(work_index, np.int32),
      start=np.asarray(starts, np.int64),
      context=int(context),
      stride=int(stride),
      num_padded_windows=padded,
      num_pad_tokens=pad_tokens,
      num_short_works=int(short),
  )


class _WindowLookup:
  """Maps a window id to ``{"tokens", "example_id", "work_index"}`` (picklable for grain workers)."""

  def __init__(self, works: Sequence[Work], table: WindowTable):
    self._tokens = [w.tokens for w in works]
    self._table = table
    self.context = table.context

  def window_tokens(self, example_id: int) -> np.ndarray:
    work = int(self._table.work_index[example_id])
    start = int(self._table.start[example_id])
    piece = self._tokens[work][start : start + self._table.context]
    out = np.full((self._table.context,), PAD, np.int32)
    out[: piece.size] = piece
    return out

  def __call__(self, example_id):
    example_id = int(example_id)
    return {
        "tokens": self.window_tokens(example_id),
        "example_id": np.int32(example_id),
        "work_index": np.int32(self._table.work_index[example_id]),
    }


class ArrayWindowBatches:
  """``batches[step]``: batches of in-memory windows, reshuffled every epoch (deterministic in ``step``).

  For windows that are already arrays (a subset of a run's windows, synthetic data): example ids are rows of
  ``tokens``, numbered from 0. Same contract as :func:`make_train_dataset`: random access by step.

  Args:
    tokens: int32 ``[N, context]`` windows.
    work_index: int ``[N]`` work of every window.
    batch_size: rows per batch.
    seed: shuffling seed.

  Example:
    >>> batches = ArrayWindowBatches(np.zeros((10, 8), np.int32), np.arange(10) // 5, batch_size=4, seed=0)
    >>> batches[3]["tokens"].shape, sorted(batches[0]["example_id"].tolist() + batches[1]["example_id"].tolist()
    ...                                    + batches[2]["example_id"].tolist()[:2])
    ((4, 8), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  """

  def __init__(self, tokens: np.ndarray, work_index: np.ndarray, batch_size: int, seed: int):
    if len(tokens) != len(work_index) or len(tokens) == 0:
      raise ValueError(f"tokens ({len(tokens)} rows) and work_index ({len(work_index)}) must be equal, non-empty")
    self.tokens, self.work_index, self.batch_size, self.seed = tokens, work_index, batch_size, seed

  def __getitem__(self, step: int) -> dict:
    n = len(self.tokens)
    epoch, offset = divmod(step * self.batch_size, n)
    order = np.random.default_rng([self.seed, epoch]).permutation(n)
    index = order[(offset + np.arange(self.batch_size)) % n]
    return {"tokens": self.tokens[index], "example_id": index.astype(np.int32),
            "work_index": self.work_index[index].astype(np.int32)}


def make_train_dataset(
    works: Sequence[Work | Mapping[str, Any]],
    *,
    context: int,
    batch_size: int,
    seed: int,
    stride: int | None = None,
) -> grain.MapDataset:
  """Infinite, random-access dataset of shuffled training batches.

  Element ``ds[step]`` is the batch for training step ``step``: windows are shuffled with a new permutation
  every epoch (epoch ``e`` uses seed ``seed + e``), epochs are concatenated and cut into batches of
  ``batch_size`` (a batch may straddle two epochs). The same ``(works, context, stride, seed, batch_size)``
  always give the same batches, so resuming at step ``s`` needs no iterator state.

  Args:
    works: ordered works (``Work`` or dicts); ``work_index`` refers to this order.
    context: window length in tokens.
    batch_size: windows per batch.
    seed: shuffle seed, 0 <= seed < 2**32.
    stride: distance between window starts (see :func:`build_window_table`).

  Returns:
    ``grain.MapDataset`` of dicts ``tokens`` int32 ``[B, context]``, ``example_id`` int32 ``[B]``,
    ``work_index`` int32 ``[B]``.

  Example::

      ds = make_train_dataset(works, context=128, batch_size=8, seed=0)
      for step in range(start_step, num_steps):
          batch = ds[step]
  """
  import grain  # noqa: PLC0415 (grain imports JAX, which corpus-parsing workers do not need)

  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  works = [as_work(w) for w in works]
  table = build_window_table(works, context=context, stride=stride)
  return (
      grain.MapDataset.range(len(table))
      .shuffle(seed=seed)
      .repeat()
      .map(_WindowLookup(works, table))
      .batch(batch_size)
  )


class _EvalBatch:
  """Maps a batch index to the in-order batch of windows, padding the last one (weight 0)."""

  def __init__(self, lookup: _WindowLookup, num_windows: int, batch_size: int):
    self._lookup = lookup
    self._num_windows = num_windows
    self._batch_size = batch_size

  def __call__(self, batch_index):
    ids = np.arange(batch_index * self._batch_size, (batch_index + 1) * self._batch_size)
    valid = ids < self._num_windows
    rows = [self._lookup(i) for i in ids[valid]]
    context = self._lookup.context
    tokens = np.full((self._batch_size, context), PAD, np.int32)
    example_id = np.full((self._batch_size,), -1, np.int32)
    work_index = np.full((self._batch_size,), -1, np.int32)
    for row, item in enumerate(rows):
      tokens[row] = item["tokens"]
      example_id[row] = item["example_id"]
      work_index[row] = item["work_index"]
    return {
        "tokens": tokens,
        "example_id": example_id,
        "work_index": work_index,
        "weight": valid.astype(np.float32),
    }


def make_eval_dataset(
    works: Sequence[Work | Mapping[str, Any]],
    *,
    context: int,
    batch_size: int,
    stride: int | None = None,
) -> grain.MapDataset:
  """Finite dataset of all windows in table order, ``ceil(num_windows / batch_size)`` batches.

  Batches hold ``tokens``, ``example_id``, ``work_index`` as in training plus ``weight`` float32 ``[B]``:
  1 for real windows, 0 for the padding rows of the last batch (whose ``example_id`` and ``work_index`` are
  -1 and tokens PAD). Weight the loss with it; do not gather with -1 ids.
  """
  import grain  # noqa: PLC0415 (grain imports JAX, which corpus-parsing workers do not need)

  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  works = [as_work(w) for w in works]
  table = build_window_table(works, context=context, stride=stride)
  num_batches = -(-len(table) // batch_size)
  batches = _EvalBatch(_WindowLookup(works, table), len(table), batch_size)
  return grain.MapDataset.range(num_batches).map(batches)


def iterate_eval_batches(
    works: Sequence[Work | Mapping[str, Any]],
    *,
    context: int,
    batch_size: int,
    stride: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields the batches of :func:`make_eval_dataset` in order (every window exactly once)."""
  dataset = make_eval_dataset(works, context=context, batch_size=batch_size, stride=stride)
  for index in range(len(dataset)):
    yield dataset[index]
