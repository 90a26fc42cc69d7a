"""Text fingerprints: a normalised-content hash (tier 2b) and a MinHash of word shingles (tier 3).

Normalisation (Unicode NFKC, case folding, every run of non-alphanumeric characters -> one space) makes the
content hash survive re-encoding (UTF-8 / UTF-16, CRLF line ends, re-wrapping, punctuation and case changes).
The MinHash (datasketch) of the set of ``shingle_words``-word shingles survives small edits: changing one word
changes at most ``shingle_words`` shingles.

Example:
  >>> a = fingerprint_text("The quick brown fox jumps over the lazy dog near the river bank today.")
  >>> b = fingerprint_text("the QUICK brown fox -- jumps over the lazy dog near the river bank today")
  >>> a.content_sha256 == b.content_sha256
  True
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import numpy as np

from govjax.documentation.music_fingerprint import decode_signature, encode_signature, minhash_signature

SCHEME_NAME = "govjax-text-minhash-v1"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class TextFingerprintConfig:
  """Parameters of the text fingerprint (stored in the manifest).

  Attributes:
    shingle_words: words per shingle.
    num_perm: MinHash permutations.
    seed: MinHash seed.
    minhash_scheme: datasketch MinHash scheme.
  """

  shingle_words: int = 5
  num_perm: int = 128
  seed: int = 1
  minhash_scheme: str = "affine32"

  def to_dict(self) -> dict[str, Any]:
    return {"scheme": SCHEME_NAME, **dataclasses.asdict(self)}

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> TextFingerprintConfig:
    data = dict(data)
    scheme = data.pop("scheme", SCHEME_NAME)
    if scheme != SCHEME_NAME:
      raise ValueError(f"text fingerprint scheme {scheme!r} is not supported (expected {SCHEME_NAME!r})")
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class TextFingerprint:
  """Tier 2b / tier 3 identity of a text.

  Attributes:
    content_sha256: sha256 of the normalised text.
    signature: uint32 ``[num_perm]`` MinHash of the word shingles.
    size: number of distinct shingles (0: empty text, never matches).
    num_words: words after normalisation.
  """

  content_sha256: str
  signature: np.ndarray
  size: int
  num_words: int

  def to_json(self) -> dict[str, Any]:
    return {"content_sha256": self.content_sha256, "signature": encode_signature(self.signature),
            "size": self.size, "num_words": self.num_words}

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> TextFingerprint:
    return cls(str(data["content_sha256"]), decode_signature(data["signature"]), int(data["size"]),
               int(data["num_words"]))


def normalize_text(text: str) -> str:
  """NFKC, case-folded, non-alphanumeric runs collapsed to single spaces, stripped."""
  return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def word_shingles(text: str, shingle_words: int = 5) -> set[bytes]:
  """The set of ``shingle_words``-word shingles of the normalised text (one shingle if it is shorter)."""
  words = normalize_text(text).split()
  if not words:
    return set()
  if len(words) <= shingle_words:
    return {" ".join(words).encode("utf-8")}
  return {" ".join(words[i:i + shingle_words]).encode("utf-8") for i in range(len(words) - shingle_words + 1)}


def fingerprint_text(text: str, config: TextFingerprintConfig | None = None) -> TextFingerprint:
  """The :class:`TextFingerprint` of a string.

  Args:
    text: the text.
    config: parameters (must match the manifest's when comparing).

  Returns:
    The fingerprint.
  """
  config = config or TextFingerprintConfig()
  normalized = normalize_text(text)
  shingles = word_shingles(text, config.shingle_words)
  signature = minhash_signature(shingles, num_perm=config.num_perm, seed=config.seed,
                                scheme=config.minhash_scheme)
  return TextFingerprint(hashlib.sha256(normalized.encode("utf-8")).hexdigest(), signature, len(shingles),
                         len(normalized.split()))


def read_text_file(path: str | os.PathLike) -> str:
  """Reads a text file: UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1."""
  data = pathlib.Path(path).read_bytes()
  if data.startswith((b"\xff\xfe", b"\xfe\xff")):
    return data.decode("utf-16")
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError:
    return data.decode("latin-1")


def fingerprint_text_file(path: str | os.PathLike,
                          config: TextFingerprintConfig | None = None) -> TextFingerprint:
  """:func:`fingerprint_text` of a file (see :func:`read_text_file`)."""
  return fingerprint_text(read_text_file(path), config)
