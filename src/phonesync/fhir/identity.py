"""Does the Patient found contradict the NIK it was found by? Pure: no IO.

A NIK encodes the birth date (`DDMMYY`, women's day + 40) and so the sex. A record whose
`birthDate` or `gender` disagrees is probably someone else carrying a mistyped NIK: writing a
phone number onto it would put the number on the wrong person.

Only what both sides say is compared: a missing `birthDate`/`gender`, a partial date (`1985`,
`1985-12`) compares only the parts it has, the year only modulo 100 (the NIK has no century),
and gender `other`/`unknown` is never a mismatch. Reasons name the fields, never the values.
"""

from __future__ import annotations

import re
from typing import Any

from phonesync.normalise.nik import Nik

_BIRTH_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def identity_conflict(patient: dict[str, Any], nik: Nik) -> str | None:
    """A reason naming the contradicting fields, or None when nothing contradicts the NIK."""
    fields = _birth_date_conflicts(patient.get("birthDate"), nik)
    gender = patient.get("gender")
    if gender in ("male", "female") and gender != nik.sex:
        fields.append("gender")
    if not fields:
        return None
    return f"{', '.join(fields)} on the record contradict{'s' * (len(fields) == 1)} the NIK"


def _birth_date_conflicts(value: Any, nik: Nik) -> list[str]:
    match = _BIRTH_DATE.match(value) if isinstance(value, str) else None
    if match is None:
        return []
    year, month, day = match.groups()
    checks = (
        ("birth year", year, nik.birth_yy, 100),
        ("birth month", month, nik.birth_month, None),
        ("birth day", day, nik.birth_day, None),
    )
    return [
        f"birthDate ({name})"
        for name, text, expected, modulo in checks
        if text is not None and _number(text, modulo) != expected
    ]


def _number(text: str, modulo: int | None) -> int:
    return int(text) % modulo if modulo else int(text)
