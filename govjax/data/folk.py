"""A second token stream: monophonic folk melodies of the Essen collection (bundled with music21), read as ABC
notation text and tokenised by character.

The chorales are polyphonic, on a sixteenth-note grid, four tokens per frame (:mod:`govjax.data.tokenizer`).
This stream differs in kind: one voice, and the tokens are the characters of the melody's ABC body (note letters,
octave marks, accidentals, durations, bar lines; the lines after the ``K:`` header; each line break becomes ``|``
separated by a space), so pitch and duration are spread over several tokens. No score parsing is needed (only
the text files), so loading is fast. A *work* is one song (``X:`` record); songs whose body text equals an
earlier song's are dropped, so that no two works share a window verbatim.

The music21 corpus note for this collection says its legal status is unclear (many encoders); it is used here
only as research material inside the package, as the chorales are.

Example:
  >>> works = folk_works(max_works=5)
  >>> len(works), works[0].work_id.startswith("essen/")
  (5, True)
  >>> text = decode(encode("c2d2|e4"))
  >>> text
  'c2d2|e4'
  >>> bool(np.all(encode(text) >= FIRST_CHAR_ID)) and int(encode(text).max()) < FOLK_VOCAB_SIZE
  True
"""

from __future__ import annotations

import hashlib
import pathlib
import re

import numpy as np

__all__ = ["FIRST_CHAR_ID", "FOLK_VOCAB_SIZE", "FolkSong", "decode", "encode", "essen_paths", "folk_works",
           "transpose_diatonic"]

FIRST_CHAR_ID = 3  # 0 = PAD, 1-2 unused (as in the chorale vocabulary)
_FIRST, _LAST = 32, 126  # printable ASCII
FOLK_VOCAB_SIZE = FIRST_CHAR_ID + _LAST - _FIRST + 1
_LETTERS = "CDEFGABcdefgab"


class FolkSong:
  """One song: ``work_id`` (``essen/<file stem>/<X number>``), ``title`` and the ABC body ``text``."""

  __slots__ = ("text", "title", "work_id")

  def __init__(self, work_id: str, title: str, text: str):
    self.work_id, self.title, self.text = work_id, title, text

  @property
  def tokens(self) -> np.ndarray:
    """The body as int32 token ids."""
    return encode(self.text)


def encode(text: str) -> np.ndarray:
  """Characters to ids (printable ASCII from :data:`FIRST_CHAR_ID`; anything else becomes a space)."""
  codes = np.frombuffer(text.encode("ascii", "replace"), np.uint8).astype(np.int32)
  codes = np.where((codes >= _FIRST) & (codes <= _LAST), codes, 32)
  return codes - _FIRST + FIRST_CHAR_ID


def decode(tokens) -> str:
  """Ids back to text (PAD and ids outside the vocabulary are skipped)."""
  codes = [int(t) - FIRST_CHAR_ID + _FIRST for t in np.asarray(tokens).ravel() if FIRST_CHAR_ID <= t < FOLK_VOCAB_SIZE]
  return bytes(codes).decode("ascii")


def essen_paths() -> list[pathlib.Path]:
  """The Essen ABC files bundled with music21 (sorted; test files excluded)."""
  import music21  # noqa: PLC0415 (slow optional dependency, needed only for the corpus path)

  root = pathlib.Path(music21.__file__).parent / "corpus" / "essenFolksong"
  return sorted(p for p in root.glob("*.abc") if not p.stem.startswith("test"))


def _songs(path: pathlib.Path):
  number, title, body, in_body = None, "", [], False
  for line in path.read_text(encoding="latin-1").splitlines() + ["X:end"]:
    if line.startswith("X:"):
      if number is not None and body:
        yield number, title, " ".join(body)
      number, title, body, in_body = line[2:].strip(), "", [], False
    elif in_body:
      line = line.strip()
      if line and not re.match(r"^[A-Za-z]:", line) and not line.startswith("%"):
        body.append(line)
    elif line.startswith("T:") and not title:
      title = line[2:].strip()
    elif line.startswith("K:"):
      in_body = True


def folk_works(*, max_works: int | None = None, min_length: int = 0) -> list[FolkSong]:
  """The songs of :func:`essen_paths`, distinct by body text, in a fixed order (sha256 of the work id).

  Args:
    max_works: keep the first this many (after ordering).
    min_length: drop songs whose body has fewer characters.

  Returns:
    A list of :class:`FolkSong`.
  """
  seen, songs = set(), []
  for path in essen_paths():
    for number, title, text in _songs(path):
      if len(text) < min_length or text in seen:
        continue
      seen.add(text)
      songs.append(FolkSong(f"essen/{path.stem}/{number}", title, text))
  songs.sort(key=lambda s: hashlib.sha256(s.work_id.encode()).hexdigest())
  return songs[:max_works] if max_works is not None else songs


def transpose_diatonic(tokens, steps: int) -> np.ndarray:
  """Moves every note letter ``steps`` scale steps (C D E F G A B c d e f g a b, clipped at the ends).

  A variation of a melody for the "learned with variation" set: the contour and rhythm stay, the pitches move.

  Args:
    tokens: token ids (characters).
    steps: scale steps (negative = down).

  Returns:
    int32 ids of the same length.
  """
  text = decode(tokens)
  out = []
  for char in text:
    index = _LETTERS.find(char)
    out.append(_LETTERS[min(max(index + steps, 0), len(_LETTERS) - 1)] if index >= 0 else char)
  return encode("".join(out))
