"""The Bach works bundled with music21: enumerate, parse, keep the four-voice SATB chorales, split by work.

Every file of ``music21.corpus.getComposer("bach")`` is either kept as a :class:`ParsedWork` (tokens plus
metadata: stable ``work_id``, title, composer, collection, source path inside the music21 corpus, sha256 of
the file bytes, key, length) or skipped with a reason. Nothing crashes the build and nothing disappears
silently: :class:`SkipReport` counts the skipped files by reason and lists every skipped file and every kept
work whose encoding needed adjustments (off-grid notes, grace notes, instrumental parts dropped, ...).

Skip reasons (:data:`SKIP_REASONS`):

* ``"duplicate encoding"``: the same work is also stored in a preferred format (.mxl over .xml over .krn);
* ``"unreadable file"``: the bytes cannot be read;
* ``"unparsable"``: music21 cannot parse the file (corrupt or unsupported);
* ``"not a score"``: the file parses to something other than one score (e.g. an opus);
* ``"not four voices"``: not exactly 4 parts and no unique Soprano/Alto/Tenor/Bass parts to select;
* ``"encoding error"``: the tokenizer refused it (e.g. a pitch out of range, no notes);
* ``"duplicate content"``: the tokens equal those of a work kept earlier (in work_id order);
* ``"unexpected error"``: any other exception while analysing the file (type and message in the detail).

The split of a work depends only on its ``work_id`` (a hash), so it never changes when other files are
added, removed or skipped, and a work is in exactly one split.

Example:
  >>> parsed = parse_work(corpus_root() / "bach" / "bwv10.7.mxl")
  >>> parsed.work.work_id, parsed.work.key, parsed.work.length, parsed.split == split_for_work("bach/bwv10.7")
  ('bach/bwv10.7', 'G minor', 1408, True)

``collect_works(max_works=12)`` does this for a sample of the corpus and returns ``(works, SkipReport)``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import music21
import tqdm

from govjax.data import tokenizer
from govjax.data.loader import Work

COMPOSER = "J. S. Bach"
COLLECTION = "music21 corpus: bach"
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
FORMAT_PREFERENCE = (".mxl", ".musicxml", ".xml", ".krn")
SKIP_REASONS = (
    "duplicate encoding",
    "unreadable file",
    "unparsable",
    "not a score",
    "not four voices",
    "encoding error",
    "duplicate content",
    "unexpected error",
)


class WorkSkipped(Exception):
  """A file is not used; ``reason`` is one of :data:`SKIP_REASONS`, ``detail`` says more."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class SkippedFile:
  """One skipped file: its path inside the corpus, work id, reason (see :data:`SKIP_REASONS`) and detail."""

  source_path: str
  work_id: str
  reason: str
  detail: str


@dataclasses.dataclass(frozen=True)
class ParsedWork:
  """A kept work: the :class:`~govjax.data.loader.Work`, its split, frame count and encoder adjustments.

  ``adjustments`` holds the non-zero tokenizer counts (e.g. ``{"grace_skipped": 2}``) plus
  ``"parts_dropped"`` when instrumental parts were set aside to select the SATB voices; ``dropped_parts``
  names those parts.
  """

  work: Work
  split: str
  num_frames: int
  adjustments: dict[str, int]
  dropped_parts: tuple[str, ...] = ()


@dataclasses.dataclass
class SkipReport:
  """What happened to every file considered.

  Attributes:
    files_seen: number of files considered.
    kept: number of works kept.
    skipped: every skipped file with its reason.
    adjusted: per kept work id, its adjustment counts and dropped part names (only works with any).
    steps_per_quarter: grid resolution used.
    max_works: the ``max_works`` limit used (None = whole corpus).
  """

  files_seen: int = 0
  kept: int = 0
  skipped: list[SkippedFile] = dataclasses.field(default_factory=list)
  adjusted: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER
  max_works: int | None = None

  def counts_by_reason(self) -> dict[str, int]:
    """Number of skipped files per reason (only reasons that occurred, in :data:`SKIP_REASONS` order)."""
    counts = {reason: 0 for reason in SKIP_REASONS}
    for item in self.skipped:
      counts[item.reason] = counts.get(item.reason, 0) + 1
    return {reason: count for reason, count in counts.items() if count}

  def adjustment_totals(self) -> dict[str, int]:
    """Adjustment counts summed over the kept works (e.g. total grace notes skipped)."""
    totals: dict[str, int] = {}
    for entry in self.adjusted.values():
      for name, count in entry["counts"].items():
        totals[name] = totals.get(name, 0) + count
    return dict(sorted(totals.items()))

  def to_json(self) -> dict[str, Any]:
    return {
        "files_seen": self.files_seen,
        "kept": self.kept,
        "skipped_total": len(self.skipped),
        "counts_by_reason": self.counts_by_reason(),
        "adjustment_totals": self.adjustment_totals(),
        "steps_per_quarter": self.steps_per_quarter,
        "max_works": self.max_works,
        "skipped": [dataclasses.asdict(item) for item in self.skipped],
        "adjusted": self.adjusted,
    }

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> SkipReport:
    return cls(
        files_seen=data["files_seen"],
        kept=data["kept"],
        skipped=[SkippedFile(**item) for item in data["skipped"]],
        adjusted=data["adjusted"],
        steps_per_quarter=data["steps_per_quarter"],
        max_works=data["max_works"],
    )

  def save(self, path: str | os.PathLike) -> None:
    pathlib.Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

  @classmethod
  def load(cls, path: str | os.PathLike) -> SkipReport:
    return cls.from_json(json.loads(pathlib.Path(path).read_text()))


def corpus_root() -> pathlib.Path:
  """The root folder of music21's bundled corpus (``source_path`` values are relative to it)."""
  return pathlib.Path(music21.common.getCorpusFilePath())


def bach_corpus_paths() -> list[pathlib.Path]:
  """All files music21 lists for Bach (``music21.corpus.getComposer("bach")``), sorted."""
  return sorted(pathlib.Path(p) for p in music21.corpus.getComposer("bach"))


def work_id_for(path: str | os.PathLike, root: str | os.PathLike) -> str:
  """``"bach/bwv10.7"`` for ``<root>/bach/bwv10.7.mxl``: the path inside ``root`` without its extension."""
  relative = pathlib.Path(path).relative_to(root)
  return relative.with_suffix("").as_posix() if relative.suffix else relative.as_posix()


def split_for_work(work_id: str) -> str:
  """Deterministic split of a work: sha256 of its id, mapped to train/validation/test at 80/10/10."""
  bucket = int.from_bytes(hashlib.sha256(work_id.encode("utf-8")).digest()[:8], "big") % 1000
  if bucket < 1000 * SPLIT_FRACTIONS["train"]:
    return "train"
  if bucket < 1000 * (SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["validation"]):
    return "validation"
  return "test"


def _voice_of(part_name: str | None) -> str | None:
  """'Soprano' for 'Soprano', 'soprano\\rOboe 1', 'Soprano Oboe 1 Violin1'; None for 'Soprano 1', 'Horn'."""
  words = re.split(r"\s+", (part_name or "").strip())
  first = words[0].capitalize() if words else ""
  if first not in tokenizer.VOICE_NAMES:
    return None
  if len(words) > 1 and words[1].isdigit():  # "Soprano 1", "Soprano 2": a divided voice, not one voice
    return None
  return first


def select_satb_parts(score) -> tuple[Any, tuple[str, ...]]:
  """Returns ``(score with exactly the 4 SATB parts, names of the parts set aside)``.

  A 4-part score is returned unchanged. A larger score (a chorale with instrumental parts) is reduced to its
  parts named Soprano, Alto, Tenor, Bass (first word of the part name), in that order, when each voice
  appears exactly once.

  Raises:
    WorkSkipped: "not a score" or "not four voices".
  """
  if not isinstance(score, music21.stream.Score):
    raise WorkSkipped("not a score", f"parsed to a {type(score).__name__}")
  parts = list(score.parts)
  if len(parts) == tokenizer.NUM_VOICES:
    return score, ()
  by_voice: dict[str, list] = {name: [] for name in tokenizer.VOICE_NAMES}
  for part in parts:
    voice = _voice_of(part.partName)
    if voice is not None:
      by_voice[voice].append(part)
  names = [str(part.partName) for part in parts]
  if len(parts) < tokenizer.NUM_VOICES or any(len(found) != 1 for found in by_voice.values()):
    raise WorkSkipped("not four voices", f"expected 4 voices, found {len(parts)} parts {names}")
  selected = [by_voice[name][0] for name in tokenizer.VOICE_NAMES]
  reduced = music21.stream.Score()
  if score.metadata is not None:
    reduced.insert(0, score.metadata)
  for part in selected:
    reduced.insert(0, part)
  dropped = tuple(str(part.partName) for part in parts if not any(part is kept for kept in selected))
  return reduced, dropped


def score_key(score) -> str:
  """Key as ``"G minor"`` / ``"B- major"``: the first key in the score, else a Krumhansl key analysis."""
  found = next(iter(score.recurse().getElementsByClass(music21.key.Key)), None)
  if found is None:
    found = score.analyze("key")
  return f"{found.tonic.name} {found.mode}"


def score_title(score, path: pathlib.Path) -> str:
  """The metadata title, else a movement name that is not just the file name, else the file stem."""
  metadata = score.metadata
  if metadata is not None:
    if metadata.title:
      return str(metadata.title)
    movement = metadata.movementName
    if movement and str(movement) != path.name:
      return str(movement)
  return path.stem


def parse_work(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER,
) -> ParsedWork:
  """Parses and encodes one corpus file.

  Args:
    path: the file (inside ``root``).
    root: the corpus root; ``source_path`` and ``work_id`` are relative to it. Default: music21's corpus.
    steps_per_quarter: tokenizer grid resolution.

  Returns:
    The :class:`ParsedWork`.

  Raises:
    WorkSkipped: with one of the reasons in :data:`SKIP_REASONS` (except the duplicate ones).

  Example::

      parsed = parse_work(corpus_root() / "bach/bwv10.7.mxl")
      assert parsed.work.work_id == "bach/bwv10.7"
  """
  path = pathlib.Path(path)
  root = corpus_root() if root is None else pathlib.Path(root)
  work_id = work_id_for(path, root)
  try:
    data = path.read_bytes()
  except OSError as error:
    raise WorkSkipped("unreadable file", f"{type(error).__name__}: {error}") from error
  try:
    score = music21.converter.parse(path, forceSource=True)
  except Exception as error:  # music21 raises many exception types for bad files
    message = str(error).splitlines()[0][:300] if str(error) else ""
    raise WorkSkipped("unparsable", f"{type(error).__name__}: {message}") from error
  score, dropped = select_satb_parts(score)
  try:
    encoded = tokenizer.encode_score(score, steps_per_quarter=steps_per_quarter)
  except tokenizer.EncodingError as error:
    raise WorkSkipped("encoding error", error.reason) from error
  adjustments = dict(encoded.adjustments)
  if dropped:
    adjustments["parts_dropped"] = len(dropped)
  work = Work(
      work_id=work_id,
      title=score_title(score, path),
      composer=COMPOSER,
      collection=COLLECTION,
      source_path=path.relative_to(root).as_posix(),
      sha256=hashlib.sha256(data).hexdigest(),
      key=score_key(score),
      tokens=encoded.tokens,
      length=int(encoded.tokens.size),
  )
  return ParsedWork(work, split_for_work(work_id), encoded.num_frames, adjustments, dropped)


def _parse_or_skip(path: str, root: str, steps_per_quarter: int) -> ParsedWork | SkippedFile:
  """``parse_work`` that returns a :class:`SkippedFile` instead of raising (runs in worker processes)."""
  try:
    return parse_work(path, root=root, steps_per_quarter=steps_per_quarter)
  except WorkSkipped as skip:
    reason, detail = skip.reason, skip.detail
  except Exception as error:  # a music21 failure after parsing must not stop the build either
    reason, detail = "unexpected error", f"{type(error).__name__}: {error}"[:300]
  relative = pathlib.Path(path).relative_to(root)
  return SkippedFile(relative.as_posix(), work_id_for(path, root), reason, detail)


def _format_rank(path: pathlib.Path) -> int:
  suffix = path.suffix.lower()
  return FORMAT_PREFERENCE.index(suffix) if suffix in FORMAT_PREFERENCE else len(FORMAT_PREFERENCE)


def _deduplicate_encodings(paths: Sequence[pathlib.Path], root: pathlib.Path):
  """Keeps one file per work id (preferred format); returns (kept paths, skipped duplicates)."""
  by_id: dict[str, list[pathlib.Path]] = {}
  for path in paths:
    by_id.setdefault(work_id_for(path, root), []).append(path)
  kept, skipped = [], []
  for work_id in sorted(by_id):
    ranked = sorted(by_id[work_id], key=lambda p: (_format_rank(p), p.name))
    kept.append(ranked[0])
    for other in ranked[1:]:
      detail = f"also encoded as {ranked[0].relative_to(root).as_posix()}"
      skipped.append(SkippedFile(other.relative_to(root).as_posix(), work_id, "duplicate encoding", detail))
  return kept, skipped


def split_quotas(max_works: int) -> dict[str, int]:
  """Works per split when at most ``max_works`` are kept: ~80/10/10, at least one per split."""
  if max_works < len(SPLITS):
    raise ValueError(
        f"max_works must be at least {len(SPLITS)} so that every split has a work, got {max_works}"
    )
  quotas = {name: max(1, round(max_works * SPLIT_FRACTIONS[name])) for name in ("validation", "test")}
  quotas["train"] = max_works - quotas["validation"] - quotas["test"]
  return quotas


def _parse_files(args: list[tuple[str, str, int]], num_workers: int, progress: bool) -> list:
  """``_parse_or_skip`` over ``args``, in order, in this process or in ``num_workers`` spawned processes."""
  with tqdm.tqdm(total=len(args), desc="parsing chorales", unit="file", disable=not progress) as bar:
    if num_workers <= 1:
      results = []
      for arg in args:
        results.append(_parse_or_skip(*arg))
        bar.update()
      return results
    context = multiprocessing.get_context("spawn")  # no fork: the parent may have started JAX threads
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
      futures = [pool.submit(_parse_or_skip, *arg) for arg in args]
      for _ in concurrent.futures.as_completed(futures):
        bar.update()
      return [future.result() for future in futures]


def collect_works(
    paths: Sequence[str | os.PathLike] | None = None,
    *,
    root: str | os.PathLike | None = None,
    steps_per_quarter: int = tokenizer.DEFAULT_STEPS_PER_QUARTER,
    max_works: int | None = None,
    num_workers: int = 1,
    progress: bool = True,
) -> tuple[list[ParsedWork], SkipReport]:
  """Parses corpus files into works, skipping (and reporting) the ones that cannot be used.

  Args:
    paths: files to consider; default: all Bach files of the music21 corpus.
    root: corpus root the paths are inside (default: music21's corpus root).
    steps_per_quarter: tokenizer grid resolution.
    max_works: keep at most this many works, chosen in work_id order within each split with quotas of
      about 80/10/10 (:func:`split_quotas`), parsing only as many files as needed (in this process).
      None: all files.
    num_workers: parse in this many spawned processes (call under ``if __name__ == "__main__":`` in a
      script); 1 parses in this process.
    progress: show a tqdm progress bar.

  Returns:
    ``(works sorted by work_id, SkipReport)``.

  Example::

      works, report = collect_works(max_works=3, progress=False)
      assert sorted(w.split for w in works) == ["test", "train", "validation"]
  """
  root = corpus_root() if root is None else pathlib.Path(root)
  paths = bach_corpus_paths() if paths is None else sorted(pathlib.Path(p) for p in paths)
  unique, skipped = _deduplicate_encodings(paths, root)
  kept: list[ParsedWork] = []
  seen_tokens: dict[bytes, str] = {}

  def accept(result: ParsedWork | SkippedFile) -> bool:
    if isinstance(result, SkippedFile):
      skipped.append(result)
      return False
    digest = hashlib.sha256(result.work.tokens.tobytes()).digest()
    if digest in seen_tokens:
      skipped.append(SkippedFile(result.work.source_path, result.work.work_id, "duplicate content",
                                 f"same tokens as {seen_tokens[digest]}"))
      return False
    seen_tokens[digest] = result.work.work_id
    kept.append(result)
    return True

  if max_works is None:
    args = [(str(p), str(root), steps_per_quarter) for p in unique]
    for result in _parse_files(args, num_workers, progress):  # work_id order: duplicates keep the first
      accept(result)
    files_seen = len(paths)
  else:
    quotas = split_quotas(max_works)
    parsed = 0
    with tqdm.tqdm(total=max_works, desc="parsing chorales", unit="work", disable=not progress) as bar:
      for split in SPLITS:
        taken = 0
        for path in (p for p in unique if split_for_work(work_id_for(p, root)) == split):
          if taken == quotas[split]:
            break
          parsed += 1
          if accept(_parse_or_skip(str(path), str(root), steps_per_quarter)):
            taken += 1
            bar.update()
    files_seen = parsed + len(paths) - len(unique)  # parsed files plus the duplicate encodings
  kept.sort(key=lambda w: w.work.work_id)
  report = SkipReport(
      files_seen=files_seen,
      kept=len(kept),
      skipped=sorted(skipped, key=lambda s: s.source_path),
      adjusted={
          w.work.work_id: {"counts": w.adjustments, "dropped_parts": list(w.dropped_parts)}
          for w in kept
          if w.adjustments
      },
      steps_per_quarter=int(steps_per_quarter),
      max_works=max_works,
  )
  return kept, report
