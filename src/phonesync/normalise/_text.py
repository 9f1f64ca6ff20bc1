"""Text helpers shared by the normalisers: invisible characters and naming a bad character.

Reasons must never contain the cell's value, so a bad character is named on its own (`','`) or,
when it is not printable ASCII, by its code point (`U+200E`).
"""

from __future__ import annotations

import re

# `\s` covers ASCII and Unicode spaces (NBSP U+00A0, U+2007, U+202F, U+3000, line breaks).
# Zero-width characters are not `\s` but come with copy-paste from chat apps; they carry nothing.
SPACES = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff]+")


def remove_spaces(text: str) -> str:
    """The text without any whitespace or zero-width characters, inner ones included."""
    return SPACES.sub("", text)


def collapse_spaces(text: str) -> str:
    """The text with every run of whitespace turned into one ASCII space, trimmed."""
    return SPACES.sub(" ", text).strip()


def has_non_ascii_digit(text: str) -> bool:
    """True when a Unicode digit other than 0–9 occurs (e.g. `٣` or full-width `３`).

    Every pattern in this package spells digits `[0-9]`: Python's `\\d` also matches these, which
    would let them through a "digits only" check and into a FHIR search.
    """
    return any(ch.isdigit() and not ("0" <= ch <= "9") for ch in text)


def describe_char(ch: str) -> str:
    """`','` for printable ASCII, `U+00AD` otherwise: safe to put in a reason."""
    if " " < ch < "\x7f":
        return f"'{ch}'"
    return f"U+{ord(ch):04X}"
