"""Unicode text helpers: normalisation, invisible characters and terminal-safe display.

Text read from users' files can carry characters that change what a program decides without being visible: a
zero-width space that makes two identical-looking work ids different, a bidi override that reorders what is
shown, a constraint text that consists only of format characters, or an escape sequence (``ESC [ ...``) that a
terminal executes. These helpers make such characters explicit:

- :func:`nfc`: Unicode normalisation form C (``"e\\u0301"`` and ``"\\u00e9"`` become one string);
- :func:`invisible_characters`: every control (``Cc``) or format (``Cf``) character with its position;
- :func:`strip_invisible`: the text without them;
- :func:`terminal_safe`: the text with control, format, surrogate and line/paragraph-separator characters escaped
  in Python's style (``\\x1b``, ``\\u200b``, ``\\U000e0001``; ``\\t``, ``\\n``, ``\\r``), so that nothing raw reaches
  a terminal; printable text (a backslash included) is unchanged.

Example:
  >>> [(c.position, c.codepoint, c.name) for c in invisible_characters("bach\\u200b/bwv1")]
  [(4, 'U+200B', 'ZERO WIDTH SPACE')]
  >>> strip_invisible("bach\\u200b/bwv1")
  'bach/bwv1'
  >>> print(terminal_safe("x\\x1b[2Jy\\u202e"))
  x\\x1b[2Jy\\u202e
  >>> nfc("e\\u0301") == "\\u00e9"
  True
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

__all__ = ["INVISIBLE_CATEGORIES", "InvisibleChar", "describe_invisible", "invisible_characters", "nfc",
           "strip_invisible", "terminal_safe"]

INVISIBLE_CATEGORIES: frozenset[str] = frozenset({"Cc", "Cf"})  # control and format characters
_UNSAFE_FOR_TERMINALS = INVISIBLE_CATEGORIES | {"Cs", "Zl", "Zp"}  # + lone surrogates, line/paragraph separators
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


class InvisibleChar(NamedTuple):
  """A control or format character found in a text.

  Attributes:
    position: its index in the text.
    char: the character.
  """

  position: int
  char: str

  @property
  def codepoint(self) -> str:
    """``U+XXXX``."""
    return f"U+{ord(self.char):04X}"

  @property
  def name(self) -> str:
    """The Unicode name (``ZERO WIDTH SPACE``), or the category for unnamed controls (``control character``)."""
    return unicodedata.name(self.char, "control character" if unicodedata.category(self.char) == "Cc"
                            else "format character")


def nfc(text: str) -> str:
  """The text in Unicode normalisation form C (canonical composition).

  Args:
    text: any string.

  Returns:
    ``unicodedata.normalize("NFC", text)``.

  Example:
    >>> len("A\\u030a"), len(nfc("A\\u030a")), nfc("\\u212b") == "\\u00c5"  # A + ring, Angstrom sign
    (2, 1, True)
  """
  return unicodedata.normalize("NFC", text)


def invisible_characters(text: str) -> list[InvisibleChar]:
  """Every control (``Cc``: C0/C1 controls, DEL, tab, newline) or format (``Cf``: zero-width space/joiner, bidi
  controls, soft hyphen, a byte-order mark, tag characters) character of ``text``, in order.

  Args:
    text: any string.

  Returns:
    A list of :class:`InvisibleChar` ``(position, char)``; empty when there is none.

  Example:
    >>> invisible_characters("a\\tb\\ufeff")
    [InvisibleChar(position=1, char='\\t'), InvisibleChar(position=3, char='\\ufeff')]
  """
  return [InvisibleChar(i, ch) for i, ch in enumerate(text) if unicodedata.category(ch) in INVISIBLE_CATEGORIES]


def describe_invisible(found: list[InvisibleChar], *, limit: int = 3) -> str:
  """A short description of invisible characters for an error message.

  Args:
    found: the result of :func:`invisible_characters` (non-empty).
    limit: how many characters to name.

  Returns:
    E.g. ``"U+200B ZERO WIDTH SPACE at position 4"``, with ``" (and N more)"`` past ``limit``.

  Example:
    >>> describe_invisible(invisible_characters("\\x1b[1m\\u200d"))
    'U+001B control character at position 0, U+200D ZERO WIDTH JOINER at position 4'
  """
  shown = ", ".join(f"{c.codepoint} {c.name} at position {c.position}" for c in found[:limit])
  return shown + (f" (and {len(found) - limit} more)" if len(found) > limit else "")


def strip_invisible(text: str) -> str:
  """The text without its control and format characters (see :func:`invisible_characters`).

  Args:
    text: any string.

  Returns:
    ``text`` with every ``Cc`` / ``Cf`` character removed (other characters, spaces included, are kept).

  Example:
    >>> strip_invisible("\\u200b \\u2060"), strip_invisible("credit\\u00adthe label")
    (' ', 'creditthe label')
  """
  return "".join(ch for ch in text if unicodedata.category(ch) not in INVISIBLE_CATEGORIES)


def _escape(ch: str) -> str:
  if ch in _SHORT_ESCAPES:
    return _SHORT_ESCAPES[ch]
  code = ord(ch)
  if code <= 0xFF:
    return f"\\x{code:02x}"
  if code <= 0xFFFF:
    return f"\\u{code:04x}"
  return f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
  """The text with every character a terminal could act on, or could not show, escaped.

  Control (``Cc``) and format (``Cf``) characters, lone surrogates (``Cs``) and the line / paragraph separators
  (``Zl``, ``Zp``) are written as Python escapes (``\\x1b``, ``\\u200b``, ``\\U000e0041``; tab, newline and
  carriage return as ``\\t``, ``\\n``, ``\\r``); everything else, non-ASCII letters and backslashes included, is
  unchanged. The result is one line that encodes as UTF-8.

  Args:
    text: any string (non-strings are converted with ``str``).

  Returns:
    The escaped text.

  Example:
    >>> terminal_safe("Gr\\u00fc\\u00dfe, bach/bwv1") == "Gr\\u00fc\\u00dfe, bach/bwv1"
    True
    >>> print(terminal_safe("a\\nb\\u200bc\\u2028\\ud800"))
    a\\nb\\u200bc\\u2028\\ud800
  """
  text = text if isinstance(text, str) else str(text)
  return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE_FOR_TERMINALS else ch for ch in text)
