"""Fingerprints of symbolic music that survive transposition, time scaling, re-encoding and small edits.

A score is reduced to its sounding notes, split into monophonic *voices* (:mod:`govjax.documentation.music_notes`,
whose names are re-exported here), and described three ways:

- **canonical content** (tier 2b): the sorted, de-duplicated ``(onset, pitch)`` pairs with onsets measured
  from the first note in units of the median gap between distinct onsets and pitches from the lowest pitch.
  It is the same for a MusicXML file, its MIDI re-encoding, a transposed copy, a time-scaled copy and the
  same notes split into other tracks or merged into one (tied notes are merged first; voices, unison doublings
  and durations, which a one-track MIDI cannot keep apart, are left out).
- **voice sketches** (tier 3, :mod:`govjax.documentation.melodic_alignment`): per voice, its pitch intervals,
  the ratio class of consecutive inter-onset intervals of that voice alone, and its bars. The lookup aligns
  them: partial copies (excerpts, voice subsets, added parts), edited or ornamented copies, and the same tune
  in another setting.
- **melodic shingles**: per voice, the sequence of tokens ``(pitch interval to the next note, class of the
  inter-onset interval relative to the median duration)`` (``round(2 * log2(ioi / median))``: transposition-
  and tempo-invariant); its ``ngram``-grams are the shingles.
- **harmonic shingles**: at every onset, the sounding pitch classes relative to the bass plus the bass motion
  (mod 12) to the next onset; ``harmonic_ngram``-grams of these.

Two MinHash signatures (datasketch) summarise the shingles: ``melody`` (the highest voice) and ``full`` (every
voice's melodic shingles plus the harmonic shingles); they are kept in the manifest as an overall similarity
estimate (the duplicate report lists them per pair), while the lookup and the duplicate report decide on the
voice sketches. A lookup query needs only the content hash and the sketches
(``fingerprint_notes(..., minhash=False)``).

Example:
  >>> from music21 import corpus
  >>> score = corpus.parse("bach/bwv66.6")
  >>> fp = fingerprint_score(score)
  >>> fp2 = fingerprint_score(score.transpose(5))
  >>> fp.content_sha256 == fp2.content_sha256, estimate_jaccard(fp.full, fp2.full)
  (True, 1.0)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from govjax.documentation.melodic_alignment import (
    VoiceSketch,
    sketches_from_json,
    sketches_to_json,
    voice_sketches,
)
from govjax.documentation.music_notes import (
    MUSIC_SUFFIXES,
    MusicParseError,
    Note,
    NoteList,
    count_notes_in_file,
    notes_from_file,
    notes_from_score,
    notes_from_tokens,
    parse_music_file,
    score_from_notes,
)

__all__ = [
    "MUSIC_SUFFIXES", "SCHEME_NAME", "FingerprintConfig", "MusicFingerprint", "MusicParseError", "Note",
    "NoteList", "canonical_content", "content_sha256", "count_notes_in_file", "decode_signature", "encode_signature",
    "estimate_containment", "estimate_jaccard", "fingerprint_file", "fingerprint_notes", "fingerprint_score",
    "harmonic_tokens", "melodic_tokens", "minhash_signature", "notes_from_file", "notes_from_score",
    "notes_from_tokens", "parse_music_file", "score_from_notes", "shingle_sets",
]

SCHEME_NAME = "govjax-music-minhash-v2"  # v2: onset-grid content hash, per-voice sketches


@dataclasses.dataclass(frozen=True)
class FingerprintConfig:
  """Parameters of the music fingerprint; stored in the manifest so that lookups use the same ones.

  Attributes:
    ngram: melodic shingle length (tokens per shingle).
    harmonic_ngram: harmonic shingle length (sonorities per shingle).
    num_perm: MinHash permutations (signature length).
    seed: MinHash seed.
    rhythm_bins_per_octave: resolution of the inter-onset-interval classes (2: half-octave bins of the ratio).
    minhash_scheme: datasketch MinHash scheme (``affine32`` in datasketch >= 2).
  """

  ngram: int = 5
  harmonic_ngram: int = 3
  num_perm: int = 128
  seed: int = 1
  rhythm_bins_per_octave: int = 2
  minhash_scheme: str = "affine32"

  def to_dict(self) -> dict[str, Any]:
    return {"scheme": SCHEME_NAME, **dataclasses.asdict(self)}

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> FingerprintConfig:
    data = dict(data)
    scheme = data.pop("scheme", SCHEME_NAME)
    if scheme != SCHEME_NAME:
      raise ValueError(f"music fingerprint scheme {scheme!r} is not supported (expected {SCHEME_NAME!r}): "
                       "rebuild the manifest with `govjax manifest`")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
      raise ValueError(f"unknown music fingerprint config fields: {sorted(unknown)}")
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class MusicFingerprint:
  """Tier 2b and tier 3 identity of one piece of music.

  Attributes:
    content_sha256: sha256 of the canonical content (transposition-, tempo- and encoding-invariant).
    melody: uint32 ``[num_perm]`` MinHash of the highest voice's melodic shingles.
    melody_size: number of distinct melodic shingles of that voice (0: empty, never matches).
    full: uint32 ``[num_perm]`` MinHash of all voices' melodic shingles plus the harmonic shingles.
    full_size: number of distinct shingles behind ``full``.
    num_notes: notes fingerprinted.
    num_voices: voices found.
    voices: per-voice sketches, highest voice first (:mod:`govjax.documentation.melodic_alignment`).
  """

  content_sha256: str
  melody: np.ndarray
  melody_size: int
  full: np.ndarray
  full_size: int
  num_notes: int
  num_voices: int
  voices: tuple[VoiceSketch, ...] = ()

  def to_json(self) -> dict[str, Any]:
    """JSON-able dict; signatures as base64 of little-endian uint32 (684 characters for 128 permutations)."""
    return {"content_sha256": self.content_sha256, "melody": encode_signature(self.melody),
            "melody_size": self.melody_size, "full": encode_signature(self.full), "full_size": self.full_size,
            "num_notes": self.num_notes, "num_voices": self.num_voices, "voices": sketches_to_json(self.voices)}

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> MusicFingerprint:
    return cls(content_sha256=str(data["content_sha256"]), melody=decode_signature(data["melody"]),
               melody_size=int(data["melody_size"]), full=decode_signature(data["full"]),
               full_size=int(data["full_size"]), num_notes=int(data["num_notes"]),
               num_voices=int(data["num_voices"]), voices=tuple(sketches_from_json(data.get("voices", ()))))


# ----------------------------------------------------------------------------------------------- signatures


def encode_signature(signature: np.ndarray) -> str:
  """base64 of a signature as little-endian uint32."""
  return base64.b64encode(np.asarray(signature, dtype="<u4").tobytes()).decode("ascii")


def decode_signature(text: str) -> np.ndarray:
  """Inverse of :func:`encode_signature`."""
  return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
  """MinHash estimate of the Jaccard similarity: the fraction of equal signature entries."""
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    raise ValueError(f"signatures of different lengths: {a.shape} vs {b.shape}")
  return float(np.mean(a == b))


def estimate_containment(jaccard: float, size_query: int, size_record: int) -> float:
  """Estimated fraction of the query's shingles found in the record, from the Jaccard estimate and set sizes.

  ``|Q & R| = J (|Q| + |R|) / (1 + J)``; useful when the query is an excerpt of a documented work.
  """
  if size_query <= 0 or size_record <= 0:
    return 0.0
  return float(min(1.0, jaccard * (size_query + size_record) / (1.0 + jaccard) / size_query))


def minhash_signature(shingles: Iterable[bytes], *, num_perm: int = 128, seed: int = 1,
                      scheme: str = "affine32") -> np.ndarray:
  """datasketch MinHash of a set of byte strings, as uint32 ``[num_perm]``.

  Raises:
    RuntimeError: the installed datasketch does not offer ``scheme`` (pin datasketch >= 2.0).
  """
  import datasketch  # noqa: PLC0415 (datasketch imports scipy, 0.5 s; a lookup query needs no MinHash)

  try:
    minhash = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=scheme)
  except TypeError as error:  # datasketch < 2.0 has no scheme argument (and hashes differently)
    raise RuntimeError(f"datasketch {datasketch.__version__} has no MinHash scheme {scheme!r}; "
                       "fingerprints need datasketch >= 2.0") from error
  values = list(shingles)
  if values:
    minhash.update_batch(values)
  return np.asarray(minhash.hashvalues, dtype=np.uint64).astype(np.uint32)



# -------------------------------------------------------------------------------------------- features


def _voice_lines(notes: Sequence[Note], num_voices: int) -> list[list[Note]]:
  """Per voice, one note per onset (the highest), sorted by onset."""
  lines: list[dict[Fraction, Note]] = [{} for _ in range(num_voices)]
  for note in notes:
    line = lines[note.voice]
    if note.onset not in line or note.pitch > line[note.onset].pitch:
      line[note.onset] = note
  return [[line[o] for o in sorted(line)] for line in lines]


def _median_duration(notes: Sequence[Note]) -> Fraction:
  return statistics.median_low(sorted(n.duration for n in notes))


def _ioi_class(ioi: Fraction, unit: Fraction, bins: int) -> int:
  if ioi <= 0:
    return -99
  return max(-12, min(12, round(bins * math.log2(ioi / unit))))


def melodic_tokens(line: Sequence[Note], unit: Fraction, *, bins: int = 2) -> list[str]:
  """``"interval:ioi_class"`` for each consecutive pair of notes of a monophonic line."""
  return [f"{b.pitch - a.pitch}:{_ioi_class(b.onset - a.onset, unit, bins)}" for a, b in zip(line, line[1:],
                                                                                            strict=False)]


def harmonic_tokens(notes: Sequence[Note]) -> list[str]:
  """At each onset: the sounding pitch classes above the bass, with the bass motion to the next onset."""
  events = sorted((n.onset, n.onset + n.duration, n.pitch) for n in notes)
  onsets = sorted({e[0] for e in events})
  chords, basses = [], []
  start = 0
  active: list[tuple[Fraction, Fraction, int]] = []
  for onset in onsets:
    while start < len(events) and events[start][0] <= onset:
      active.append(events[start])
      start += 1
    active = [e for e in active if e[1] > onset]
    pitches = [e[2] for e in active]
    bass = min(pitches)
    chords.append(".".join(str(pc) for pc in sorted({(p - bass) % 12 for p in pitches})))
    basses.append(bass)
  return [f"{chords[i]}>{(basses[i + 1] - basses[i]) % 12}" if i + 1 < len(chords) else chords[i]
          for i in range(len(chords))]


def _ngrams(tokens: Sequence[str], n: int, prefix: str) -> set[bytes]:
  if len(tokens) < n:
    return {(prefix + " ".join(tokens)).encode()} if tokens else set()
  return {(prefix + " ".join(tokens[i:i + n])).encode() for i in range(len(tokens) - n + 1)}


def shingle_sets(note_list: NoteList,
                 config: FingerprintConfig | None = None) -> tuple[set[bytes], set[bytes]]:
  """``(melody shingles of the highest voice, full shingles)`` of a note list (see the module docstring)."""
  config = config or FingerprintConfig()
  notes = note_list.notes
  if not notes:
    return set(), set()
  unit = _median_duration(notes)
  lines = _voice_lines(notes, note_list.num_voices)
  per_voice = [_ngrams(melodic_tokens(line, unit, bins=config.rhythm_bins_per_octave), config.ngram, "m|")
               for line in lines]
  occupied = [i for i, line in enumerate(lines) if line]
  top = max(occupied, key=lambda i: (statistics.median(n.pitch for n in lines[i]), -i))
  full = set().union(*per_voice) | _ngrams(harmonic_tokens(notes), config.harmonic_ngram, "h|")
  return per_voice[top], full


def _onset_unit(onsets: Sequence[Fraction]) -> Fraction:
  """The median gap between consecutive distinct onsets (1 for a single onset): the time unit of the content."""
  distinct = sorted(set(onsets))
  gaps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
  return statistics.median_low(gaps) if gaps else Fraction(1)


def canonical_content(notes: Sequence[Note]) -> bytes:
  """The canonical encoding behind tier 2b (see the module docstring); ``b""`` for no notes.

  The distinct ``(onset, pitch)`` pairs, onsets from the first onset in units of the median gap between
  distinct onsets, pitches from the lowest. Durations are left out: a one-track encoding cannot hold two
  voices' overlapping notes of one pitch (the second note-on cuts the first), and the voices, whose unisons a
  merged track keeps once, are left out too; the onset grid is the same for the parts and their merge.
  """
  if not notes:
    return b""
  origin = min(n.onset for n in notes)
  lowest = min(n.pitch for n in notes)
  unit = _onset_unit([n.onset for n in notes])
  rows = sorted({((n.onset - origin) / unit, n.pitch - lowest) for n in notes})
  return "\n".join(f"{o} {p}" for o, p in rows).encode("ascii")


def content_sha256(notes: Sequence[Note]) -> str:
  """sha256 (hex) of :func:`canonical_content`."""
  return hashlib.sha256(canonical_content(notes)).hexdigest()


# ---------------------------------------------------------------------------------------- fingerprints


def fingerprint_notes(note_list: NoteList, config: FingerprintConfig | None = None, *,
                      minhash: bool = True) -> MusicFingerprint:
  """The :class:`MusicFingerprint` of a note list.

  Args:
    note_list: from :func:`notes_from_score`, :func:`notes_from_file` or :func:`notes_from_tokens`.
    config: fingerprint parameters (must match the manifest's when comparing).
    minhash: compute the MinHash signatures (False: empty signatures of size 0, for a lookup query, which
      aligns the voice sketches and needs none).

  Returns:
    The fingerprint.
  """
  config = config or FingerprintConfig()
  melody, full = shingle_sets(note_list, config) if minhash else (set(), set())
  empty = np.zeros(0, np.uint32)
  sign = lambda s: minhash_signature(s, num_perm=config.num_perm, seed=config.seed,
                                     scheme=config.minhash_scheme) if minhash else empty
  return MusicFingerprint(content_sha256=content_sha256(note_list.notes), melody=sign(melody),
                          melody_size=len(melody), full=sign(full), full_size=len(full),
                          num_notes=len(note_list.notes), num_voices=note_list.num_voices,
                          voices=tuple(voice_sketches(note_list)))


def fingerprint_score(score: Any, config: FingerprintConfig | None = None) -> MusicFingerprint:
  """:func:`fingerprint_notes` of a music21 score."""
  return fingerprint_notes(notes_from_score(score), config)


def fingerprint_file(path: str | os.PathLike, config: FingerprintConfig | None = None) -> MusicFingerprint:
  """:func:`fingerprint_notes` of a music file (MusicXML, MIDI, ABC, Humdrum, ...).

  Raises:
    MusicParseError: the file cannot be parsed or holds no notes.
  """
  note_list = notes_from_file(path)
  if not note_list.notes:
    raise MusicParseError(f"{path}: no pitched notes found")
  return fingerprint_notes(note_list, config)
