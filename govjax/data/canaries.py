"""Random-token canaries: planted secrets that measure memorization (Carlini et al. 2019).

A canary is a random four-voice passage: in every frame each voice takes a uniformly random pitch token from its
own register (so the canary looks like music to the tokenizer but carries no musical regularity the model could
learn from other works). A canary set is planted with ``r`` copies of each canary for every repetition count
``r`` in ``CanarySpec.repeats``; exposure compares a canary's likelihood with that of *reference* sequences drawn
from the same distribution that were never planted (:func:`reference_tokens`).

Canaries stand for restricted specific works: their rights record carries ``CanarySpec.licence`` (a
``LicenseRef`` the default policy treats as restrictive/unknown, so governed runs train them at surface depth).

Example:
  >>> from govjax.core.config import CanarySpec
  >>> works = canary_works(CanarySpec(count=2, repeats=(1, 3), frames=4))
  >>> len(works), works[0].work_id, works[0].tokens.shape
  (8, 'canary/r1/0/copy0', (16,))
"""

from __future__ import annotations

import hashlib

import numpy as np

from govjax.core.ids import CANARY_PREFIX
from govjax.data import tokenizer
from govjax.data.loader import Work
from govjax.rights.records import parse_record

# Voice registers (MIDI), Soprano..Bass, inside the tokenizer's range.
REGISTERS = ((60, 79), (55, 74), (48, 67), (40, 60))
PREFIX = CANARY_PREFIX


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


def canary_works(spec) -> list[Work]:
  """One :class:`Work` per planted copy: ``canary/r{repeats}/{i}/copy{c}``."""
  works = []
  for repeats in spec.repeats:
    for i, tokens in enumerate(canary_tokens(spec, repeats)):
      for copy in range(repeats):
        work_id = f"{PREFIX}r{repeats}/{i}/copy{copy}"
        works.append(Work(
            work_id=work_id, title=f"canary {i} (x{repeats})", composer="govjax canary", collection="canaries",
            source_path=f"generated:{PREFIX}r{repeats}/{i}", sha256=hashlib.sha256(tokens.tobytes()).hexdigest(),
            key="", tokens=tokens, length=tokens.size,
            extra={"content_class": "specific", "canary": True, "repeats": repeats, "canary_index": i}))
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
      "notes": "generated random-token canary for memorization audits", "simulated": True,
      "scenario": f"canaries seed {spec.seed}"}) for w in works]
