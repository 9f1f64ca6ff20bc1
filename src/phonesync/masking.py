"""Masking of personal data and secrets: the one place that decides what may be shown.

NIK `3174014203950001` → `317401******0001`; phone `+6281234567890` → `+62812*****7890`.
`redact()` scrubs free text (error messages, URLs, server diagnostics) of anything that looks like
a NIK or a phone number, and of registered secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading

_NIK_LIKE = re.compile(r"(?<!\d)(\d{6})(\d{6})(\d{4})(?!\d)")
# Long digit runs (phones written with or without 62/0 and separators) that are not NIKs.
_PHONE_LIKE = re.compile(r"(?<![\w])(\+?\d[\d \-.()]{7,18}\d)(?![\w])")
_ENCODED_PIPE = re.compile(r"%7C(\d+)", re.IGNORECASE)

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
    """`+62812*****7890` for an E.164 number; anything else keeps at most 4 + 4 characters."""
    if not phone:
        return ""
    s = phone.strip()
    if len(s) <= 8:
        return "*" * len(s)
    # show at most about half: short texts keep only their last 4 characters
    head = 0 if len(s) < 12 else (6 if s.startswith("+") else 4)
    # at most 12 stars: a 50,000-character cell must not become a 50,000-character mask
    return f"{s[:head]}{'*' * min(len(s) - head - 4, 12)}{s[-4:]}"


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of a normalised value, hex; lets the ledger find a NIK without storing it."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _mask_digits(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if len(digits) < 9:
        return text
    return f"{text[:4]}{'*' * max(len(text) - 8, 1)}{text[-4:]}" if len(text) > 8 else "********"


def redact(text: str) -> str:
    """Remove NIK-like and phone-like digit runs and registered secrets from free text."""
    if not text:
        return text
    out = _ENCODED_PIPE.sub(lambda m: "%7C" + mask_nik(m.group(1)), text)
    out = _NIK_LIKE.sub(lambda m: mask_nik(m.group(0)), out)
    out = _PHONE_LIKE.sub(_mask_digits, out)
    with _secrets_lock:
        secrets = list(_secrets)
    for secret in secrets:
        out = out.replace(secret, "[secret]")
    return out
