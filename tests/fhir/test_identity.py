"""identity_conflict() / record_state_conflict(): may this Patient be written for this NIK?"""

from __future__ import annotations

from typing import Any

import pytest

from phonesync.fhir.identity import guard_reason, identity_conflict, record_state_conflict

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


_REPLACED_BY = {"type": "replaced-by", "other": {"reference": "Patient/P999"}}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({"active": True, "deceasedBoolean": False}, None),
        ({"link": [{"type": "seealso", "other": {"reference": "Patient/P2"}}]}, None),
        ({"link": [{"type": "replaces", "other": {"reference": "Patient/P2"}}]}, None),
        ({"deceasedBoolean": True}, "record is marked deceased (deceasedBoolean)"),
        ({"deceasedDateTime": "2023-01-05"}, "record is marked deceased (deceasedDateTime)"),
        ({"deceasedBoolean": "false"}, "record's deceasedBoolean is not true/false"),
        ({"active": False}, "record is inactive (active=false)"),
        ({"active": "no"}, "record's active flag is not true/false"),
        ({"link": [_REPLACED_BY]}, "record was merged into another (link replaced-by)"),
        (
            {"link": [{"type": "seealso"}, _REPLACED_BY]},
            "record was merged into another (link replaced-by)",
        ),
        (
            {"active": False, "deceasedBoolean": True, "link": [_REPLACED_BY]},
            "record is marked deceased (deceasedBoolean); record is inactive (active=false); "
            "record was merged into another (link replaced-by)",
        ),
    ],
)
def test_record_state_conflict(extra: dict[str, Any], expected: str | None) -> None:
    """Deceased, inactive or merged-away records are named by field; a living, active one passes."""
    assert record_state_conflict({**_patient("1995-03-02", "female"), **extra}) == expected


@pytest.mark.parametrize(
    ("extra", "gender", "expected"),
    [
        ({}, "female", None),
        ({"active": False}, "female", "record is inactive (active=false)"),
        ({}, "male", "gender on the record contradicts the NIK"),
        (
            {"deceasedDateTime": "2023-01-05T10:00:00+07:00"},
            "male",
            "record is marked deceased (deceasedDateTime); "
            "gender on the record contradicts the NIK",
        ),
    ],
)
def test_guard_reason_joins_record_state_and_nik(
    extra: dict[str, Any], gender: str, expected: str | None
) -> None:
    """The guard's reason names every problem: the record's state first, then the NIK's."""
    patient = {**_patient("1995-03-02", gender), **extra}
    assert guard_reason(patient, nik(NIK_A)) == expected


def test_state_reason_never_contains_a_value() -> None:
    """The date of death and the merge target are never in the reason."""
    patient = {**_patient(), "deceasedDateTime": "2023-01-05", "link": [_REPLACED_BY]}
    reason = record_state_conflict(patient)
    assert reason is not None
    for secret in ("2023", "01-05", "P999"):
        assert secret not in reason
