"""Masking of personal data and secrets: the one place that decides what may be shown.

NIK `3174014203950001` → `317401******0001`; phone `+6281234567890` → `+62812*****7890`.
`redact()` scrubs free text (error messages, URLs, server diagnostics) of registered secrets and
of every long digit run: a NIK, a phone number, or anything else that might hide one.

How `redact()` reads digits: a *run* is digits joined by up to three separator characters
(spaces, NBSP, zero-width spaces, `.`, `-`, dashes; parentheses around a group), so
`3174 0142 0395 0001`, `+62 (812) 3456-7890` and `0812.3456.7890` are one run each, and so is a
NIK glued to a phone number (`3174014203950001082222222201`) or followed by one
(`3174014203950001 0822 2222 2201`). Each run is masked once, as a whole, in the original text:
overlapping readings (a NIK inside a longer run) never add up to more than one mask shows. The
result is read again until nothing changes, so `redact(redact(t)) == redact(t)`.

- 16 digits, written in one piece or grouped (not after a `+`), → the NIK mask
  `317401******0001`: `NIK 3174014203950001 (3174 0142 0395 0001)` shows it twice, never more.
- Any other run of 9 or more digits keeps its last 4 characters and, from 12 digits on, its
  first 4 (`+628******2222`, `0812****7890`, `3174****************2201`): at most 8 digits
  survive, with at most 16 stars between. A NIK cut short (10–15 digits that begin like one:
  province code, birth day — women +40 — and month; e.g. `3.17401420395E+15`) keeps only its
  first 4 characters: its end is the birth date.
- One group of digits glued to a letter (`P35700566651`, a hex digest) is an identifier and
  stays, unless it has 16+ digits, is a mobile number, or begins like a NIK
  (`NIK3174014203950001`, `hp081234567890` are masked). Glued digits in a grouped run do not
  count as glued: `A3174 0142 0395 0001` is masked as a NIK.
- Left in clear because they cannot be a NIK or a phone number written out: a date with a time
  (`2024-03-15 23:00`, `15-03-2024 23:00`), and a decimal number with at most 6 digits before
  its point and 17 after (`66.66666666666667`, `0.123456789 s`), unless its digits — from the
  start or from the point — begin like a mobile number or a NIK (`62.81234567890`,
  `0.3174014203950001`) or it has an exponent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading

# Characters that group the digits of one written number. Up to three in a row: `0812 - 3456`;
# parentheses only around a group, as in `+62 (812) 3456`, `(021) 555`.
_SEP_CHAR = "[ .\\-\u00a0\u2007\u2009\u200b\u202f\u2060\u2010\u2011\u2012\u2013\u2212]"
_SEP = rf"(?:{_SEP_CHAR}{{1,3}}|{_SEP_CHAR}?\((?=\d{{1,5}}\))|\){_SEP_CHAR}{{0,2}})"
# Digit groups joined by separators. Separators and digits never overlap: linear matching.
_RUN = re.compile(rf"\+?\d+(?:{_SEP}\d+)*")
_GROUP = re.compile(r"\d+")
_SINGLE_GROUP = re.compile(r"\+?\d+")
_ENCODED_PIPE = re.compile(r"%7C(\d+)", re.IGNORECASE)

#: Fewer digits than this in a run are never masked (counts, ports, dates, times).
MIN_MASKED_DIGITS = 9
_NIK_DIGITS = 16
#: A run this long is masked even when glued to letters.
_GLUED_MASKED_DIGITS = 16
_MAX_STARS = 16

# Kemendagri province codes; the same set as `normalise.nik.PROVINCE_CODES` (a test checks it),
# repeated here because `normalise` imports this module.
_PROVINCES = frozenset(
    {"11", "12", "13", "14", "15", "16", "17", "18", "19", "21"}
    | {"31", "32", "33", "34", "35", "36", "51", "52", "53"}
    | {"61", "62", "63", "64", "65", "71", "72", "73", "74", "75", "76"}
    | {"81", "82", "91", "92", "93", "94", "95", "96"}
)
# A mobile number as typed (62 or 0 or nothing, then 8 and 8 to 11 digits), and its start.
_MOBILE = re.compile(r"(?:62|0)?8\d{8,11}")
_MOBILE_START = re.compile(r"(?:62|0)?8\d{8}")
_EXPONENT = re.compile(r"[eE][+\-]?\d")
_DECIMAL = re.compile(r"(\d{1,6})\.(\d{1,17})")
_DATE_HOUR = re.compile(
    r"(?:(?:19|20)\d\d([-.])(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0[1-9]|[12]\d|3[01])([-.])(?:0[1-9]|1[0-2])\2(?:19|20)\d\d)"
    r" (?:[01]\d|2[0-3])"
)
_MINUTES = re.compile(r":[0-5]\d")

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact()` removes it from any text (keys, tokens)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def mask_nik(nik: str | None) -> str:
    """`317401******0001` for a 16-digit NIK; a fixed placeholder for anything else."""
    if not nik:
        return ""
    digits = re.sub(r"\D", "", nik)
    if len(digits) == 16:
        return f"{digits[:6]}******{digits[-4:]}"
    if len(digits) >= 8:
        return f"{digits[:2]}{'*' * min(len(digits) - 4, 14)}{digits[-2:]}"
    return "*" * len(digits)


def mask_phone(phone: str | None) -> str:
    """`+62812*****7890` for an E.164 number; anything else keeps at most 4 + 4 characters, and
    never a letter: a cell like `Budi 0812… ibu 0812…` must not show the name."""
    if not phone:
        return ""
    s = phone.strip()
    if len(s) <= 8:
        return "*" * len(s)
    # show at most about half: short texts keep only their last 4 characters
    head = 0 if len(s) < 12 else (6 if s.startswith("+") else 4)
    # at most 12 stars: a 50,000-character cell must not become a 50,000-character mask
    shown_head, tail = _no_letters(s[:head]), _no_letters(s[-4:])
    return f"{shown_head}{'*' * min(len(s) - head - 4, 12)}{tail}"


def _no_letters(text: str) -> str:
    """`text` with every character but digits, '+', '-', '.', '(', ')' and spaces as '*'."""
    return "".join(c if c.isdigit() or c in "+-.() " else "*" for c in text)


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of a normalised value, hex; lets the ledger find a NIK without storing it."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _nik_start(digits: str) -> bool:
    """A province code, a birth day (women +40) and a month: the first 10 digits of a NIK."""
    if len(digits) < 10 or digits[:2] not in _PROVINCES:
        return False
    day, month = int(digits[6:8]), int(digits[8:10])
    return (1 <= day <= 31 or 41 <= day <= 71) and 1 <= month <= 12


def _mobile_shaped(digits: str) -> bool:
    return bool(_MOBILE.fullmatch(digits))


def _harmless(body: str, after: str) -> bool:
    """A date with a time, or a measurement: digits that cannot be a NIK or a phone written out.

    `after` is the text right after `body`.
    """
    if _DATE_HOUR.fullmatch(body):
        return bool(_MINUTES.match(after))
    decimal = _DECIMAL.fullmatch(body)
    if decimal is None or _EXPONENT.match(after):
        return False
    for digits in (decimal.group(1) + decimal.group(2), decimal.group(2)):
        if _MOBILE_START.match(digits) or _nik_start(digits):
            return False
    return True


def _mask_body(body: str, after: str) -> str:
    """One written number (`body`, possibly with separators and a leading `+`), masked."""
    digits = "".join(_GROUP.findall(body))
    if len(digits) < MIN_MASKED_DIGITS or _harmless(body, after):
        return body
    plus = body.startswith("+")
    if not plus and len(digits) == _NIK_DIGITS:
        return mask_nik(digits)
    if not plus and 10 <= len(digits) < 16 and _nik_start(digits):
        # a NIK cut short: its end is the birth date, so only what the NIK mask shows survives
        return f"{body[:4]}{'*' * min(len(body) - 4, _MAX_STARS)}"
    head = body[:4] if len(digits) >= 12 else ""
    stars = min(len(body) - len(head) - 4, _MAX_STARS)
    return f"{head}{'*' * stars}{body[-4:]}"


def _glued_identifier(text: str, match: re.Match[str]) -> bool:
    """One group of digits glued to a letter (`P35700566651`, part of a hex digest) that is
    neither a NIK nor a mobile number nor the start of a NIK: an identifier, left as it is."""
    run = match.group(0)
    start, end = match.span()
    if _SINGLE_GROUP.fullmatch(run) is None:
        return False
    glued = (start > 0 and text[start - 1].isalpha()) or (
        end < len(text) and text[end].isalpha() and not _EXPONENT.match(text, end)
    )
    digits = run.lstrip("+")
    if not glued or len(digits) >= _GLUED_MASKED_DIGITS:
        return False
    return not (_mobile_shaped(digits) or _nik_start(digits))


def _mask_run(match: re.Match[str]) -> str:
    text, run = match.string, match.group(0)
    if _glued_identifier(text, match):
        return run
    return _mask_body(run, text[match.end() : match.end() + 3])


def redact(text: str) -> str:
    """Remove registered secrets, then NIK-like, phone-like and other long digit runs."""
    if not text:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    out = text
    for secret in secrets:  # first: masking digits inside a secret would hide it from this
        out = out.replace(secret, "[secret]")
    out = _ENCODED_PIPE.sub(lambda m: "%7C" + mask_nik(m.group(1)), out)
    while True:  # until nothing is left to mask (a safety net: one pass is meant to suffice)
        masked = _RUN.sub(_mask_run, out)
        if masked == out:  # each pass that changes anything hides digits: this ends
            return out
        out = masked
