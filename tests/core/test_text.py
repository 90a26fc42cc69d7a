"""Unicode normalisation, invisible characters and terminal-safe display (govjax.core.text)."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govjax.core.text import (
    InvisibleChar,
    describe_invisible,
    invisible_characters,
    nfc,
    strip_invisible,
    terminal_safe,
)

SETTINGS = settings(max_examples=200, deadline=None)
_UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def test_nfc_composes_and_maps_singletons():
  assert nfc("Cafe\u0301") == "Caf\u00e9"
  assert nfc("\u212b") == "\u00c5"  # ANGSTROM SIGN
  assert nfc("\u212a") == "K"  # KELVIN SIGN
  assert nfc("bach/bwv10.7") == "bach/bwv10.7"


@pytest.mark.parametrize("text,expected", [
    ("bach\u200b/bwv1", [(4, "\u200b", "U+200B", "ZERO WIDTH SPACE")]),
    ("\ufeffw", [(0, "\ufeff", "U+FEFF", "ZERO WIDTH NO-BREAK SPACE")]),
    ("a\u202eb", [(1, "\u202e", "U+202E", "RIGHT-TO-LEFT OVERRIDE")]),
    ("x\u200dy", [(1, "\u200d", "U+200D", "ZERO WIDTH JOINER")]),
    ("\x1b[31m", [(0, "\x1b", "U+001B", "control character")]),
    ("a\tb\nc\x7f\x85", [(1, "\t", "U+0009", "control character"), (3, "\n", "U+000A", "control character"),
                         (5, "\x7f", "U+007F", "control character"), (6, "\x85", "U+0085", "control character")]),
    ("\U000e0041", [(0, "\U000e0041", "U+E0041", "TAG LATIN CAPITAL LETTER A")]),
    ("Gr\u00fc\u00dfe \u00e9\u0301 \u00a0 \u2028", []),  # letters, a combining mark, NBSP, line separator: not Cc/Cf
])
def test_invisible_characters_with_positions_and_names(text, expected):
  found = invisible_characters(text)
  assert all(isinstance(c, InvisibleChar) for c in found)
  assert [(c.position, c.char, c.codepoint, c.name) for c in found] == expected
  assert strip_invisible(text) == "".join(ch for i, ch in enumerate(text) if i not in {c.position for c in found})


def test_describe_invisible_names_a_few():
  found = invisible_characters("\u200b\u200c\u200d\u2060\ufeff")
  assert describe_invisible(found, limit=2) == (
      "U+200B ZERO WIDTH SPACE at position 0, U+200C ZERO WIDTH NON-JOINER at position 1 (and 3 more)")


def test_strip_invisible_keeps_spaces_and_letters():
  assert strip_invisible("\u200b \u2060") == " "
  assert strip_invisible("\u200b\u200d\ufeff") == ""
  assert strip_invisible("J. S. Bach") == "J. S. Bach"


@pytest.mark.parametrize("text,expected", [
    ("plain ASCII, with \\ backslash", "plain ASCII, with \\ backslash"),
    ("Gr\u00fc\u00dfe \u65e5\u672c \U0001f3b5", "Gr\u00fc\u00dfe \u65e5\u672c \U0001f3b5"),
    ("\x1b[2Jgone", "\\x1b[2Jgone"),
    ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
    ("\x00\x07\x7f\x9b", "\\x00\\x07\\x7f\\x9b"),
    ("id\u200bx", "id\\u200bx"),
    ("\u202eevil", "\\u202eevil"),
    ("\ufeffbom", "\\ufeffbom"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("lone \ud800", "lone \\ud800"),
    ("\U000e0001tag", "\\U000e0001tag"),
])
def test_terminal_safe_escapes_exactly_the_unsafe_characters(text, expected):
  assert terminal_safe(text) == expected


def test_terminal_safe_converts_non_strings():
  assert terminal_safe(3) == "3"


@SETTINGS
@given(st.text())
def test_terminal_safe_output_is_one_printable_utf8_line(text):
  out = terminal_safe(text)
  assert not any(unicodedata.category(ch) in _UNSAFE for ch in out)
  out.encode("utf-8")  # no lone surrogate left
  assert "\n" not in out and "\r" not in out
  # Printable text is unchanged; only unsafe characters grow into escapes.
  if not any(unicodedata.category(ch) in _UNSAFE for ch in text):
    assert out == text
  else:
    assert len(out) > len(text)


@SETTINGS
@given(st.text())
def test_strip_invisible_and_nfc_properties(text):
  stripped = strip_invisible(text)
  assert invisible_characters(stripped) == []
  assert len(stripped) == len(text) - len(invisible_characters(text))
  assert strip_invisible(stripped) == stripped
  assert nfc(nfc(text)) == nfc(text)
  assert unicodedata.is_normalized("NFC", nfc(text))
