"""NIK (Nomor Induk Kependudukan) cleaning and validation — see docs/normalisation.md.

A NIK is 16 digits `PP RR SS DDMMYY NNNN` (province, regency, district, birth day — women +40 —,
month, two-digit year, serial). It has no check digit, so the only defence against a corrupted NIK
is refusing every cell that *could* have been corrupted:

* a cell that is not text (a number keeps 15 significant digits in Excel and is exact only below
  2^53 in a float64, so Papua NIKs 91…–96… turn silently into other valid-looking NIKs);
* text showing that it went through a number (`E+`, a trailing `.0`, thousands separators);
* anything but digits after the safe cleaning (spaces, a leading apostrophe, `.` and `-`). A `,`
  or `|` would change the meaning of a FHIR search; they are refused, never cleaned away.

Regency and district codes are not checked: NIKs keep the code of the region that existed when
they were issued, and regions have been split since.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from phonesync.normalise._text import (
    collapse_spaces,
    describe_char,
    has_non_ascii_digit,
    remove_spaces,
)
from phonesync.outcomes import Outcome, Rejected
from phonesync.source.rows import UnsavedFormula, unsaved_formula_reason


@dataclass(frozen=True, slots=True)
class Nik:
    """A valid 16-digit NIK and what it encodes (`PP RR SS DDMMYY NNNN`)."""

    value: str
    province: str
    birth_day: int  # 1..31, the +40 for women already removed
    birth_month: int  # 1..12
    birth_yy: int  # 0..99: the century cannot be known
    sex: Literal["male", "female"]


#: Kemendagri province codes (38), Papua's 2022 provinces 93–96 included.
PROVINCE_CODES = frozenset(
    {"11", "12", "13", "14", "15", "16", "17", "18", "19", "21"}
    | {"31", "32", "33", "34", "35", "36", "51", "52", "53"}
    | {"61", "62", "63", "64", "65", "71", "72", "73", "74", "75", "76"}
    | {"81", "82", "91", "92", "93", "94", "95", "96"}
)

_AS_TEXT = "format the NIK column as plain text"
_NUMBER_CELL = f"NIK cell is a number in the sheet; digits may have been lost — {_AS_TEXT}"
# Checked in order with isinstance: bool before int (bool is an int), date covers datetime.
_NON_TEXT_REASONS: tuple[tuple[type, str], ...] = (
    (UnsavedFormula, unsaved_formula_reason("NIK")),
    (bool, "NIK cell is TRUE/FALSE, not a NIK"),
    (int, _NUMBER_CELL),
    (float, _NUMBER_CELL),
    (date, f"NIK cell is a date in the sheet; {_AS_TEXT}"),
)

_SCIENTIFIC = re.compile(r"[eE]\+|[0-9][eE][0-9]")
# `317…0.0` or `317….00`: a number rendered with decimals. Dot-grouped NIKs end in 4 digits.
_NUMBER_DECIMALS = re.compile(r"^[0-9]+\.0+$|\.0$")
# `3.174.014.203.950.001`: a *number* shown with thousands separators (id_ID uses `.`, other locales
# a space). Nobody groups a NIK in threes from the right; a number above 2^53 has lost digits.
_THOUSANDS = re.compile(r"^[0-9]{1,3}(?:[. ][0-9]{3}){4,}$")
_APOSTROPHES = ("'", "\u2018", "\u2019")  # Sheets' text marker, also as typographic quotes
# `.` and `-` group digits for reading; Unicode hyphens/dashes are what autocorrect makes of `-`.
_GROUPING = re.compile(r"[.\-\u2010\u2011\u2012\u2013\u2212]")
_DIGITS = re.compile(r"[0-9]+")
_ALL_DIGITS = re.compile(r"^[0-9]+$")

_CHAR_REASONS = {
    ",": "NIK contains ',' (a list of NIKs?) — put one NIK per cell",
    ";": "NIK contains ';' (a list of NIKs?) — put one NIK per cell",
    "|": "NIK contains '|', which would change the FHIR search — remove it",
    "\\": "NIK contains '\\', which would change the FHIR search — remove it",
    "/": "NIK contains '/' — put one NIK per cell, digits only",
    "+": "NIK contains '+' — a NIK is digits only",
}


def parse_nik(cell: object) -> Nik | Rejected:
    """Clean and validate one NIK cell; never raises, never puts the value in a reason."""
    if cell is None:
        return _reject("NIK is empty")
    if not isinstance(cell, str):
        return _reject(_non_text_reason(cell))
    cleaned = _clean(cell)
    if isinstance(cleaned, Rejected):
        return cleaned
    for check in _CHECKS:
        reason = check(cleaned)
        if reason is not None:
            return _reject(reason)
    return _decode(cleaned)


def _reject(reason: str) -> Rejected:
    return Rejected(Outcome.INVALID_NIK, reason)


def _non_text_reason(cell: object) -> str:
    for kind, reason in _NON_TEXT_REASONS:
        if isinstance(cell, kind):
            return reason
    return f"NIK cell has an unsupported type; {_AS_TEXT}"


def _clean(text: str) -> str | Rejected:
    """Digits only after the safe cleaning, or why the text cannot be trusted."""
    if _THOUSANDS.match(collapse_spaces(text)):
        return _reject(f"NIK is written like a number with thousands separators — {_AS_TEXT}")
    text = remove_spaces(text)
    if _SCIENTIFIC.search(text):
        return _reject(f"NIK is in scientific notation (E+), digits were lost — {_AS_TEXT}")
    if _NUMBER_DECIMALS.search(text):
        return _reject(f"NIK ends in '.0': it passed through a number format — {_AS_TEXT}")
    if text.startswith(_APOSTROPHES):
        text = text[1:]
    text = _GROUPING.sub("", text)
    if not text:
        return _reject("NIK is empty")
    if not _ALL_DIGITS.match(text):
        return _reject(_bad_text_reason(text))
    return text


def _bad_text_reason(text: str) -> str:
    """The most useful reason for a text with something other than ASCII digits in it."""
    if sum(1 for run in _DIGITS.findall(text) if len(run) >= 15) >= 2:
        return "NIK cell holds several NIKs — put one NIK per cell"
    bad = next(ch for ch in text if not "0" <= ch <= "9")
    if has_non_ascii_digit(bad):
        return "NIK contains non-Latin digits — type the digits 0–9"
    if bad.isalpha():
        return "NIK contains letters — a NIK is 16 digits"
    return _CHAR_REASONS.get(bad, f"NIK contains an unexpected character {describe_char(bad)}")


def _check_length(digits: str) -> str | None:
    if len(digits) == 16:
        return None
    hint = " (several NIKs in one cell?)" if len(digits) >= 30 else ""
    return f"NIK has {len(digits)} digits, expected 16{hint}"


def _check_province(digits: str) -> str | None:
    province = digits[:2]
    return None if province in PROVINCE_CODES else f"NIK province code {province} does not exist"


def _check_day(digits: str) -> str | None:
    day = int(digits[6:8])
    return (
        None if 1 <= day <= 31 or 41 <= day <= 71 else f"NIK birth day {digits[6:8]} is impossible"
    )


def _check_month(digits: str) -> str | None:
    month = int(digits[8:10])
    return None if 1 <= month <= 12 else f"NIK birth month {digits[8:10]} is impossible"


def _check_date(digits: str) -> str | None:
    """The day must exist in that month for *some* century: 29/02 needs a leap yy (00 = 2000)."""
    day, month, yy = int(digits[6:8]) % 40, int(digits[8:10]), int(digits[10:12])
    # 2000+yy is a leap year exactly when 19yy or 20yy is one (1900 is not, 2000 is).
    if day <= calendar.monthrange(2000 + yy, month)[1]:
        return None
    leap_hint = " (not a leap year)" if (day, month) == (29, 2) else ""
    return f"NIK birth date {day:02d}/{month:02d} does not exist{leap_hint}"


def _check_serial(digits: str) -> str | None:
    if digits[12:] != "0000":
        return None
    return "NIK serial 0000 is never issued (number truncated by a spreadsheet?)"


# Order matters: each check may rely on the ones before it (length, then month before date).
_CHECKS: tuple[Callable[[str], str | None], ...] = (
    _check_length,
    _check_province,
    _check_day,
    _check_month,
    _check_date,
    _check_serial,
)


def _decode(digits: str) -> Nik:
    day = int(digits[6:8])
    return Nik(
        value=digits,
        province=digits[:2],
        birth_day=day - 40 if day > 40 else day,
        birth_month=int(digits[8:10]),
        birth_yy=int(digits[10:12]),
        sex="female" if day > 40 else "male",
    )
