"""Phone cells → E.164 Indonesian mobile numbers (`+628…`) — see docs/normalisation.md.

The acceptance rule is ours, not `phonenumbers`' metadata (which reports `62811234567` as a valid
fixed line `+6262…` and `81234567890.0` as a valid mobile `+62812345678900`):

    after the country code 62 the national number starts with 8 and has 9–12 digits,
    and is not 0800/0809 (toll-free / premium).

Digits are taken only from text we understand: one optional leading apostrophe (the
spreadsheet's "keep as text" marker, as for a NIK), an optional label (`WA:`, `No HP`, `wa.me/`,
`tel:`), an optional `+`, then digits with the grouping characters ` - . ( )`. Letters anywhere else
are refused (keypad letters and a letter O for zero yield wrong numbers that look valid).
`phonenumbers.PhoneNumberMatcher` is used only to recognise a cell holding several numbers.
"""

from __future__ import annotations

import math
import re
from datetime import date
from itertools import islice

import phonenumbers

from phonesync.normalise._text import collapse_spaces, describe_char, has_non_ascii_digit
from phonesync.outcomes import Outcome, Rejected
from phonesync.source.rows import UnsavedFormula, unsaved_formula_reason

#: What every accepted number looks like.
MOBILE_E164 = re.compile(r"^\+628[0-9]{8,11}$")
_NATIONAL_MIN, _NATIONAL_MAX = 9, 12  # digits after 62; one more when written with the 0
_NOT_MOBILE = ("800", "809")  # 0800 toll-free, 0809 premium: start with 8 but are not mobiles
_EXACT_FLOAT_LIMIT = 2**53  # a float64 holds every integer below this exactly

_AS_TEXT = "format the phone column as plain text"
MULTIPLE_NUMBERS = "phone cell holds multiple numbers — keep one number per cell"
_LETTERS = "phone contains letters (keypad letters, O for 0?) — type digits only"
_NOT_MOBILE_PREFIX = "phone is not an Indonesian mobile number: it must start with 08, 628 or +628"

# Written so that no two parts can match the same digits: no quadratic backtracking on long cells.
_SCIENTIFIC = re.compile(r"^[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)[eE][+-]?[0-9]+$")
# A number cell rendered as text (`81234567890.0`, or `.00` with a two-decimals format). Phone
# numbers are far below 2^53, so the float held every digit and dropping the zeros loses nothing.
_WHOLE_FLOAT_TEXT = re.compile(r"^([0-9]+)\.0+$")
# …but `81234567890.5` is no phone: without this `.` would pass as a grouping character.
_DECIMAL_TEXT = re.compile(r"^[0-9]{9,}\.[0-9]+$")
_LABEL_WORD = r"(?:whatsapp|wa|hp|handphone|ponsel|telepon|telp|tel|phone|mobile)"
# `WA: `, `No. HP `, `HP/WA: `, `WA/`, `wa.me/`, `tel:`. Only these words may precede the digits.
_LABEL = re.compile(
    r"^(?:(?:https?://)?(?:www\.)?(?:wa\.me/|api\.whatsapp\.com/send/?\?phone=)"
    rf"|(?:(?:no|nomor|nomer)\.?\s*)?{_LABEL_WORD}(?:\s*[/&]\s*{_LABEL_WORD})*\s*[:./\-]?\s*)",
    re.IGNORECASE,
)
_APOSTROPHES = ("'", "\u2018", "\u2019")  # Sheets' "keep as text" marker, also typographic
_DASHES = "\u2010\u2011\u2012\u2013\u2212"  # what autocorrect makes of `-`
_GROUPING_CHARS = frozenset(f"0123456789(). -{_DASHES}")  # spaces are collapsed to " " first
_NON_DIGITS = re.compile(r"[^0-9]+")
_LIST_SEPARATORS = re.compile(r"[/,;|&\n]|\b(?:atau|dan|or|and)\b", re.IGNORECASE)
_DIGITS_FOR_TWO = 12  # fewer digits in the whole cell cannot be two numbers
_DIGITS_IN_A_FRAGMENT = 6  # a part of a list (`0812… / 0813-111`) that is meant as a number
_MATCHER_MAX_CHARS = 200  # beyond this, only list separators detect several numbers

# Non-text cells (XLSX or UNFORMATTED_VALUE). Checked in order: bool is an int, datetime a date.
_NON_TEXT_REASONS: tuple[tuple[type, str], ...] = (
    (UnsavedFormula, unsaved_formula_reason("phone")),
    (bool, "phone cell is TRUE/FALSE, not a number"),
    (date, f"phone cell is a date in the sheet; {_AS_TEXT}"),
)
# Trunk/international prefixes typed without `+`: (prefix, digits to drop). First match wins.
_PREFIXES: tuple[tuple[str, int | None], ...] = (
    ("0062", 4),  # international call prefix + 62
    ("00", None),  # international call prefix to another country
    ("62", 2),  # country code without `+`: must not become +6262…
    ("0", 1),  # national trunk prefix
    ("8", 0),  # leading 0 lost when the cell was a number (field case C1)
)


def normalise_phone(cell: object) -> str | Rejected:
    """One phone cell → `+628…`, or why not; never raises, never puts the number in a reason."""
    if cell is None:
        return _reject("phone is empty")
    if isinstance(cell, str):
        return _from_text(cell)
    digits = _digits_of_number(cell)
    return digits if isinstance(digits, Rejected) else _from_digits(digits, plus=False)


def canonical_phone(text: str) -> str | None:
    """A number already on a FHIR record (`081…`, `+62 812-…`, `62812…`, `tel:+62…`) → `+628…`.

    Used to decide "the patient already has this number"; it applies exactly `normalise_phone`'s
    rule, so both sides of that comparison are normalised alike. None when it is not a mobile.
    """
    if not isinstance(text, str):
        return None
    result = _from_text(text)
    return result if isinstance(result, str) else None


def _reject(reason: str) -> Rejected:
    return Rejected(Outcome.INVALID_PHONE, reason)


def _digits_of_number(cell: object) -> str | Rejected:
    """The digits of a numeric cell (int, or float holding an exact integer), else why not."""
    for kind, reason in _NON_TEXT_REASONS:
        if isinstance(cell, kind):
            return _reject(reason)
    if isinstance(cell, float):
        if not math.isfinite(cell) or not cell.is_integer():
            return _reject(f"phone cell is a number with decimals; {_AS_TEXT}")
        if abs(cell) >= _EXACT_FLOAT_LIMIT:
            return _reject(f"phone cell is a number too large to be exact; {_AS_TEXT}")
        cell = int(cell)
    if not isinstance(cell, int):
        return _reject(f"phone cell has an unsupported type; {_AS_TEXT}")
    if cell < 0:
        return _reject("phone cell is a negative number")
    return str(cell)


def _from_text(raw: str) -> str | Rejected:
    text = collapse_spaces(raw)
    if text.startswith(_APOSTROPHES):  # one text marker, as for a NIK; a second one is refused
        text = text[1:].lstrip(" ")
    if not text:
        return _reject("phone is empty")
    if _SCIENTIFIC.match(text):
        return _reject(f"phone is in scientific notation (E+), digits were lost — {_AS_TEXT}")
    whole = _WHOLE_FLOAT_TEXT.match(text)
    if whole:
        text = whole.group(1)
    elif _DECIMAL_TEXT.match(text):
        return _reject(f"phone is a number with decimals; {_AS_TEXT}")
    body = _LABEL.sub("", text, count=1)
    problem = _body_problem(body)
    result = _from_body(body) if problem is None else _reject(problem)
    # Only refusals pay for the matcher: one mobile number never has more than 13 digits.
    if isinstance(result, Rejected) and _holds_several_numbers(raw):
        return _reject(MULTIPLE_NUMBERS)
    return result


def _from_body(body: str) -> str | Rejected:
    digits = _NON_DIGITS.sub("", body)
    if not digits:
        return _reject("phone has no digits")
    return _from_digits(digits, plus="+" in body)


def _body_problem(body: str) -> str | None:
    """None for digits with grouping characters and one leading `+`; else the first offender."""
    plus_allowed = True  # `+` may follow only `(` and spaces: `(+62) 812…`, `+62 …`
    for ch in body:
        if ch == "+" and plus_allowed:
            plus_allowed = False
        elif ch in _GROUPING_CHARS:
            plus_allowed = plus_allowed and ch in "( "
        else:
            return _char_reason(ch)
    return None


def _char_reason(ch: str) -> str:
    if has_non_ascii_digit(ch):
        return "phone contains non-Latin digits — type the digits 0–9"
    if ch.isalpha():
        return _LETTERS
    if ch == "+":
        return "phone has '+' inside the number — only one leading + is allowed"
    return f"phone contains an unexpected character {describe_char(ch)}"


def _holds_several_numbers(text: str) -> bool:
    """Several numbers in one cell: by list separators, or as `PhoneNumberMatcher` finds them."""
    if sum(ch.isdigit() for ch in text) < _DIGITS_FOR_TWO:
        return False
    parts = _LIST_SEPARATORS.split(text)
    if sum(1 for part in parts if _digit_count(part) >= _DIGITS_IN_A_FRAGMENT) >= 2:
        return True
    if len(text) > _MATCHER_MAX_CHARS:  # the matcher takes ~0.1 s per 10k characters
        return False
    # POSSIBLE, not VALID: `62811234567` would otherwise not count (it parses as +6262…). Only
    # full-length matches count, so one number broken by a stray letter is not "multiple".
    matcher = phonenumbers.PhoneNumberMatcher(text, "ID", leniency=phonenumbers.Leniency.POSSIBLE)
    full = (m for m in matcher if _digit_count(m.raw_string) > _NATIONAL_MIN)
    # Stop at the second match: the matcher is the slow part (~100 µs per cell).
    return next(islice(full, 1, None), None) is not None


def _digit_count(text: str) -> int:
    return sum("0" <= ch <= "9" for ch in text)


def _from_digits(digits: str, *, plus: bool) -> str | Rejected:
    national = _national_number(digits, plus=plus)
    if isinstance(national, Rejected):
        return national
    return _check_mobile(national)


def _national_number(digits: str, *, plus: bool) -> str | Rejected:
    """The digits after the country code, with one trunk 0 dropped (`+62 (0) 812…`)."""
    if plus:
        if not digits.startswith("62"):
            return _reject("phone has a country code other than +62 — only Indonesian numbers")
        rest = digits[2:]
        return rest[1:] if rest.startswith("0") else rest
    for prefix, drop in _PREFIXES:
        if digits.startswith(prefix):
            if drop is None:
                return _reject("phone dials abroad (00 + a country other than 62)")
            rest = digits[drop:]
            return rest[1:] if drop >= 2 and rest.startswith("0") else rest
    return _reject(_NOT_MOBILE_PREFIX)


def _check_mobile(national: str) -> str | Rejected:
    written = len(national) + 1  # as the operator reads it: 08…
    if not national.startswith("8"):
        return _reject(_NOT_MOBILE_PREFIX)
    if len(national) < _NATIONAL_MIN:
        return _reject(f"phone is too short: {written} digits in its 08… form, expected 10–13")
    if len(national) > _NATIONAL_MAX:
        return _reject(f"phone is too long: {written} digits in its 08… form, expected 10–13")
    if national.startswith(_NOT_MOBILE):
        return _reject("phone is a 0800/0809 toll-free or premium number, not a mobile")
    return "+62" + national
