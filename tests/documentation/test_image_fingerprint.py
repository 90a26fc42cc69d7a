"""Image fingerprints: pixel content hash across lossless re-encodings, perceptual hashes across resizing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from govjax.documentation import image_fingerprint as imf


@pytest.fixture(scope="module")
def images():
  from sklearn.datasets import load_sample_image

  return {name: Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")}


def test_lossless_reencoding_keeps_the_content_hash(images, tmp_path):
  image = images["china.jpg"]
  image.save(tmp_path / "a.png")
  image.save(tmp_path / "a.bmp")
  png, bmp = imf.fingerprint_image_file(tmp_path / "a.png"), imf.fingerprint_image_file(tmp_path / "a.bmp")
  assert png.content_sha256 == bmp.content_sha256 == imf.fingerprint_image(image).content_sha256


def test_resized_and_recompressed_copies_are_near(images):
  original = imf.fingerprint_image(images["china.jpg"])
  buffer = io.BytesIO()
  images["china.jpg"].resize((213, 160)).save(buffer, "JPEG", quality=40)
  buffer.seek(0)
  copy = imf.fingerprint_image(Image.open(buffer))
  assert copy.content_sha256 != original.content_sha256
  assert imf.hamming(copy.phash, original.phash) <= 10 and imf.hamming(copy.dhash, original.dhash) <= 10
  other = imf.fingerprint_image(images["flower.jpg"])
  assert imf.hamming(other.phash, original.phash) > 10


def test_hamming_many_matches_pairwise_reference():
  hashes = ["0000000000000000", "ffffffffffffffff", "0f0f0f0f0f0f0f0f", "8000000000000001"]
  query = "00000000000000ff"
  assert imf.hamming_many(query, hashes).tolist() == [imf.hamming(query, h) for h in hashes] == [8, 56, 32, 8]
