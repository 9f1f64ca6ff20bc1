"""identity_conflict(): does a Patient's birthDate/gender contradict the NIK?"""

from __future__ import annotations

from typing import Any

import pytest

from phonesync.fhir.identity import identity_conflict

from .conftest import NIK_A, NIK_B, nik

_MISSING = object()


def _patient(birth: Any = _MISSING, gender: Any = _MISSING) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "P001"}
    if birth is not _MISSING:
        patient["birthDate"] = birth
    if gender is not _MISSING:
        patient["gender"] = gender
    return patient


@pytest.mark.parametrize(
    ("nik_value", "birth", "gender", "expected"),
    [
        (NIK_A, "1995-03-02", "female", None),
        (NIK_B, "1985-12-31", "male", None),
        (NIK_A, "1895-03-02", "female", None),  # the NIK has no century
        (NIK_A, _MISSING, _MISSING, None),
        (NIK_A, "1995", "female", None),
        (NIK_A, "1995-03", _MISSING, None),
        (NIK_A, "1995-03-02", "other", None),
        (NIK_A, "1995-03-02", "unknown", None),
        (NIK_A, "not a date", None, None),
        (NIK_A, 19950302, "female", None),
        (NIK_A, "1995-03-02", "male", "gender on the record contradicts the NIK"),
        (NIK_A, "1995-03-12", "female", "birthDate (birth day) on the record contradicts the NIK"),
        (NIK_A, "1995-04", None, "birthDate (birth month) on the record contradicts the NIK"),
        (NIK_A, "1996", None, "birthDate (birth year) on the record contradicts the NIK"),
        (
            NIK_B,
            "1984-11-30",
            "female",
            "birthDate (birth year), birthDate (birth month), birthDate (birth day), gender "
            "on the record contradict the NIK",
        ),
    ],
)
def test_identity_conflict(nik_value: str, birth: Any, gender: Any, expected: str | None) -> None:
    """Only what both sides state is compared; the reason names fields, never values."""
    assert identity_conflict(_patient(birth, gender), nik(nik_value)) == expected


def test_reason_never_contains_the_birth_date() -> None:
    """The NIK's date part is masked everywhere else; the reason must not reveal it either."""
    reason = identity_conflict(_patient("1990-01-01", "male"), nik(NIK_A))
    assert reason is not None
    for secret in ("1990", "1995", "03-02", "02"):
        assert secret not in reason
