"""Random-token canaries: planted secrets that measure memorization (Carlini et al. 2019).

A canary is a random four-voice passage: in every frame each voice takes a uniformly random pitch token from its
own register (so the canary looks like music to the tokenizer but carries no musical regularity the model could
learn from other works). A canary set is planted with ``r`` copies of each canary for every repetition count
``r`` in ``CanarySpec.repeats``; exposure compares a canary's likelihood with that of *reference* sequences drawn
from the same distribution that were never planted (:func:`reference_tokens`).

Two kinds of canary are planted at every repetition level:

- ``random``: the random passages above (``spec.count`` per level): out of distribution, easy to single out.
- ``chorale`` (``spec.chorale_count`` per level): real chorale windows of ``spec.frames`` frames cut from held-out
  works that are in no other role (:func:`split_canary_sources` sets those works apart, deterministically by work
  id): in distribution, so their memorization is that of a real work seen ``r`` times.

Canaries stand for restricted specific works: their rights record carries ``CanarySpec.licence`` (a
``LicenseRef`` the default policy treats as restrictive/unknown, so governed runs train them at surface depth).

Example:
  >>> from govjax.core.config import CanarySpec
  >>> works = canary_works(CanarySpec(count=2, repeats=(1, 3), frames=4))
  >>> len(works), works[0].work_id, works[0].tokens.shape
  (8, 'canary/r1/0/copy0', (16,))
  >>> table = canary_table(CanarySpec(count=2, repeats=(1, 3), frames=4))
  >>> table.tokens.shape, table.repetitions.tolist(), table.kinds.tolist()
  ((4, 16), [1, 1, 3, 3], ['random', 'random', 'random', 'random'])
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

from govjax.core.ids import CANARY_PREFIX
from govjax.data import tokenizer
from govjax.data.loader import Work
from govjax.rights.records import parse_record

# Voice registers (MIDI), Soprano..Bass, inside the tokenizer's range.
REGISTERS = ((60, 79), (55, 74), (48, 67), (40, 60))
PREFIX = CANARY_PREFIX
CHORALE_PREFIX = CANARY_PREFIX + "chorale/"
KINDS = ("random", "chorale")

__all__ = ["CHORALE_PREFIX", "KINDS", "CanaryTable", "canary_group", "canary_kind",
           "canary_records", "canary_table", "canary_tokens", "canary_works", "chorale_canary_tokens",
           "reference_tokens", "split_canary_sources"]


def _random_frames(rng: np.random.Generator, count: int, frames: int) -> np.ndarray:
  out = np.empty((count, frames, tokenizer.NUM_VOICES), np.int32)
  for voice, (low, high) in enumerate(REGISTERS):
    pitches = rng.integers(low, high + 1, size=(count, frames))
    out[:, :, voice] = pitches - tokenizer.MIN_PITCH + tokenizer.PITCH_OFFSET
  return out.reshape(count, frames * tokenizer.NUM_VOICES)


def canary_tokens(spec, repeats: int) -> np.ndarray:
  """The ``spec.count`` canaries planted ``repeats`` times: int32 ``[count, frames * 4]``."""
  return _random_frames(np.random.default_rng([spec.seed, 1, repeats]), spec.count, spec.frames)


def reference_tokens(spec, num: int) -> np.ndarray:
  """``num`` never-planted sequences from the canaries' distribution (exposure's reference set ``R``)."""
  return _random_frames(np.random.default_rng([spec.seed, 2]), num, spec.frames)


def _id_bucket(work_id: str) -> float:
  """A work id's deterministic position in [0, 1) (sha256 of the id)."""
  return int.from_bytes(hashlib.sha256(work_id.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_canary_sources(works: Sequence, fraction: float = 0.5) -> tuple[list, list]:
  """Splits held-out works into chorale-canary sources and the rest, deterministically by work id.

  Args:
    works: held-out works (``Work`` objects), e.g. the test split.
    fraction: share of the works (by the sha256 of their id) set aside as canary sources.

  Returns:
    ``(sources, rest)``, each in the input order. ``rest`` never contributes a canary (the probe's calibration
    uses it, so calibration, canaries and the audit's non-members are disjoint).
  """
  sources = [w for w in works if _id_bucket(w.work_id) < fraction]
  rest = [w for w in works if _id_bucket(w.work_id) >= fraction]
  return sources, rest


def chorale_canary_tokens(spec, sources: Sequence, repeats: int) -> np.ndarray:
  """The ``spec.chorale_count`` chorale canaries planted ``repeats`` times: int32 ``[count, frames * 4]``.

  Windows of ``spec.frames`` frames (no PAD) are cut from ``sources`` at non-overlapping, frame-aligned starts,
  the works taken in order of the sha256 of their id and round-robin (one window per work in turn), so the
  canaries spread over many works; each repetition level takes the next block of windows (levels never share a
  window).

  Raises:
    ValueError: the sources hold too few windows.
  """
  length = spec.frames * tokenizer.NUM_VOICES
  ordered = sorted(sources, key=lambda w: hashlib.sha256(w.work_id.encode("utf-8")).hexdigest())
  per_work = [[np.asarray(w.tokens[s:s + length], np.int32) for s in range(0, len(w.tokens) - length + 1, length)]
              for w in ordered]
  windows = []
  for round_ in range(max((len(p) for p in per_work), default=0)):
    windows.extend(p[round_] for p in per_work if round_ < len(p))
  level = list(spec.repeats).index(repeats)
  need = spec.chorale_count * len(spec.repeats)
  if len(windows) < need:
    raise ValueError(f"canaries.chorale_count={spec.chorale_count}: the {len(ordered)} canary source works hold "
                     f"{len(windows)} windows of {spec.frames} frames, {need} needed")
  chosen = windows[level * spec.chorale_count:(level + 1) * spec.chorale_count]
  return np.stack(chosen).astype(np.int32) if chosen else np.zeros((0, length), np.int32)


@dataclasses.dataclass(frozen=True)
class CanaryTable:
  """The distinct planted canaries, random ones first (by level), then chorale ones (by level).

  Attributes:
    tokens: int32 ``[C, frames * 4]``.
    repetitions: int ``[C]`` copies planted.
    kinds: str ``[C]``, ``"random"`` or ``"chorale"``.
    ids: the canary group id of each (``canary/r4/2``, ``canary/chorale/r4/2``).
  """

  tokens: np.ndarray
  repetitions: np.ndarray
  kinds: np.ndarray
  ids: tuple[str, ...]


def canary_table(spec, sources: Sequence | None = None) -> CanaryTable:
  """The distinct canaries of ``spec``: chorale ones cut from ``sources`` when ``spec.chorale_count`` (left out
  when ``sources`` is None, e.g. for a manifest that lists only generated material)."""
  length = spec.frames * tokenizer.NUM_VOICES
  tokens, reps, kinds, ids = [], [], [], []
  for kind, prefix, count in (("random", PREFIX, spec.count),
                              ("chorale", CHORALE_PREFIX, getattr(spec, "chorale_count", 0))):
    if not count or (kind == "chorale" and sources is None):
      continue
    for repeats in spec.repeats:
      block = canary_tokens(spec, repeats) if kind == "random" else chorale_canary_tokens(spec, sources, repeats)
      tokens.append(block)
      reps += [repeats] * len(block)
      kinds += [kind] * len(block)
      ids += [f"{prefix}r{repeats}/{i}" for i in range(len(block))]
  return CanaryTable(tokens=np.concatenate(tokens) if tokens else np.zeros((0, length), np.int32),
                     repetitions=np.asarray(reps, np.int64), kinds=np.asarray(kinds, dtype=str), ids=tuple(ids))


def canary_kind(work_id: str) -> str | None:
  """``"chorale"`` or ``"random"`` for a canary id (a copy or a group), None for other works."""
  if not work_id.startswith(PREFIX):
    return None
  return "chorale" if work_id.startswith(CHORALE_PREFIX) else "random"


def canary_works(spec, sources: Sequence | None = None) -> list[Work]:
  """One :class:`Work` per planted copy: ``canary/r{repeats}/{i}/copy{c}`` (random) and
  ``canary/chorale/r{repeats}/{i}/copy{c}`` (chorale windows from ``sources``)."""
  table = canary_table(spec, sources)
  works = []
  for tokens, repeats, kind, group in zip(table.tokens, table.repetitions, table.kinds, table.ids, strict=True):
    i = int(group.rsplit("/", 1)[1])
    for copy in range(int(repeats)):
      works.append(Work(
          work_id=f"{group}/copy{copy}", title=f"{kind} canary {i} (x{repeats})", composer="govjax canary",
          collection="canaries", source_path=f"generated:{group}", sha256=hashlib.sha256(tokens.tobytes()).hexdigest(),
          key="", tokens=tokens, length=tokens.size,
          extra={"content_class": "specific", "canary": True, "repeats": int(repeats), "canary_index": i,
                 "canary_kind": str(kind)}))
  return works


def canary_group(work_id: str) -> str | None:
  """``canary/r4/2/copy1`` -> ``canary/r4/2`` (the canary a copy belongs to); None for other works."""
  if not work_id.startswith(PREFIX):
    return None
  return work_id.rsplit("/copy", 1)[0]


def canary_records(works, spec) -> list:
  """Rights records of the canary works (restricted specific works, clearly marked as generated)."""

  return [parse_record({
      "work_id": w.work_id, "title": w.title, "creators": ["govjax canary"], "rightsholder": "govjax canary",
      "source": w.source_path, "sha256": w.sha256, "licence": spec.licence, "use": "academic",
      "attribution": "yes", "share_alike": "unknown",
      "attribution_text": f"{w.title} (planted canary)", "content_class": "specific",
      "notes": f"planted {canary_kind(w.work_id)} canary for memorization audits", "simulated": True,
      "scenario": f"canaries seed {spec.seed}"}) for w in works]
