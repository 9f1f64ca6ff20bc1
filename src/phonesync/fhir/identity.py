"""May this Patient be written at all, and does it contradict the NIK it was found by? Pure: no IO.

`guard_reason` is what the identity guard (`identity_guard`) checks, in this order:

1. the record's own state (`record_state_conflict`): a Patient marked deceased (`deceasedBoolean`
   true, or any `deceasedDateTime`), inactive (`active` false), or merged away (a `link` of type
   `replaced-by`) is not where a living person's new number belongs. The link is never followed:
   the row is refused and a person decides;
2. the NIK (`identity_conflict`).

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


def guard_reason(patient: dict[str, Any], nik: Nik) -> str | None:
    """Why the identity guard refuses to write this Patient (every reason, `; `-joined), or None."""
    reasons = [r for r in (record_state_conflict(patient), identity_conflict(patient, nik)) if r]
    return "; ".join(reasons) or None


def record_state_conflict(patient: dict[str, Any]) -> str | None:
    """A reason naming the field when the record is deceased, inactive or merged away, else None.

    Only a value that clearly says "in use" passes: `deceasedBoolean` absent or false, `active`
    absent or true. Anything else there (a malformed `"false"` string included) is refused.
    """
    reasons: list[str] = []
    deceased = patient.get("deceasedBoolean")
    if deceased is True:
        reasons.append("record is marked deceased (deceasedBoolean)")
    elif deceased is not None and deceased is not False:
        reasons.append("record's deceasedBoolean is not true/false")
    if patient.get("deceasedDateTime") is not None:
        reasons.append("record is marked deceased (deceasedDateTime)")
    active = patient.get("active")
    if active is False:
        reasons.append("record is inactive (active=false)")
    elif active is not None and active is not True:
        reasons.append("record's active flag is not true/false")
    links = patient.get("link")
    if isinstance(links, list) and any(
        isinstance(link, dict) and link.get("type") == "replaced-by" for link in links
    ):
        reasons.append("record was merged into another (link replaced-by)")
    return "; ".join(reasons) or None


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
