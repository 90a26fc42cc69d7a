"""Image fingerprints: a decoded-pixel hash (tier 2b) and perceptual hashes (tier 3) via ``imagehash``.

- ``content_sha256``: sha256 of the decoded RGBA pixels and the size, so a PNG and its lossless re-encoding
  (BMP, TIFF, PNG with other compression or metadata) hash the same.
- ``phash`` (DCT perceptual hash) and ``dhash`` (gradient hash), 64 bits each, as hex: they survive resizing,
  mild compression, small brightness changes and small edits. Two images match when the Hamming distance of
  both hashes is at most ``max_distance`` (default 10 of 64 bits).

``imagehash`` is an optional dependency at import time: this module imports, and raises a clear error only
when a perceptual hash is asked for without it.

Example:
  >>> from PIL import Image
  >>> import numpy as np
  >>> y, x = np.mgrid[0:64, 0:64]
  >>> blobs = np.exp(-((x - 20) ** 2 + (y - 30) ** 2) / 60) + np.exp(-((x - 45) ** 2 + (y - 12) ** 2) / 90)
  >>> image = Image.fromarray((blobs / blobs.max() * 255).astype(np.uint8))
  >>> fp = fingerprint_image(image)
  >>> hamming(fp.phash, fingerprint_image(image.resize((128, 128))).phash) <= 10
  True
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

SCHEME_NAME = "govjax-image-phash-v1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
HASH_BITS = 64


def imagehash_available() -> bool:
  """Whether the ``imagehash`` package can be imported."""
  try:
    import imagehash  # noqa: F401 (optional extra 'images')
  except ImportError:
    return False
  return True


@dataclasses.dataclass(frozen=True)
class ImageFingerprint:
  """Tier 2b / tier 3 identity of an image.

  Attributes:
    content_sha256: sha256 of ``b"WxH:"`` + the RGBA pixel bytes.
    phash: 64-bit perceptual hash, 16 hex digits.
    dhash: 64-bit difference hash, 16 hex digits.
    width, height: pixel size.
  """

  content_sha256: str
  phash: str
  dhash: str
  width: int
  height: int

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> ImageFingerprint:
    return cls(str(data["content_sha256"]), str(data["phash"]), str(data["dhash"]), int(data["width"]),
               int(data["height"]))


def hamming(hex_a: str, hex_b: str) -> int:
  """Hamming distance between two hex-encoded hashes of equal length."""
  if len(hex_a) != len(hex_b):
    raise ValueError(f"hashes of different lengths: {hex_a!r} vs {hex_b!r}")
  return int(bin(int(hex_a, 16) ^ int(hex_b, 16)).count("1"))


def hamming_many(query_hex: str, hexes: list[str]) -> np.ndarray:
  """Hamming distances from one 64-bit hex hash to many (vectorised)."""
  if not hexes:
    return np.zeros(0, np.int64)
  values = np.array([int(h, 16) for h in hexes], dtype=np.uint64)
  xor = values ^ np.uint64(int(query_hex, 16))
  bits = np.unpackbits(xor.view(np.uint8).reshape(len(hexes), 8), axis=1)
  return bits.sum(axis=1).astype(np.int64)


def pixel_sha256(image: Any) -> str:
  """sha256 of the decoded RGBA pixels (with the size), independent of the file encoding."""
  rgba = image.convert("RGBA")
  header = f"{rgba.width}x{rgba.height}:".encode("ascii")
  return hashlib.sha256(header + rgba.tobytes()).hexdigest()


def fingerprint_image(image: Any) -> ImageFingerprint:
  """The :class:`ImageFingerprint` of a PIL image.

  Raises:
    RuntimeError: ``imagehash`` is not installed.
  """
  try:
    import imagehash  # noqa: PLC0415 (optional extra 'images')
  except ImportError as error:
    raise RuntimeError("image fingerprints need the 'imagehash' package (pip install imagehash)") from error
  rgb = image.convert("RGB")
  return ImageFingerprint(pixel_sha256(image), str(imagehash.phash(rgb)), str(imagehash.dhash(rgb)),
                          image.width, image.height)


def fingerprint_image_file(path: str | os.PathLike) -> ImageFingerprint:
  """:func:`fingerprint_image` of an image file."""
  from PIL import Image  # noqa: PLC0415 (optional extra 'images')

  with Image.open(path) as image:
    image.load()
    return fingerprint_image(image)
