"""apply_mobile / patch_ops: put the new mobile on a Patient and change nothing else (C6, C8)."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest

from phonesync.fhir.telecom import apply_mobile, patch_ops

from .conftest import D, patient_a

NEW = "+6282222222222"
EMAIL = {"system": "email", "value": "a@example.org"}


def _mobile(value: str, **extra: Any) -> dict[str, Any]:
    return {"system": "phone", "value": value, "use": "mobile", **extra}


def _written(value: str) -> dict[str, Any]:
    """The entry a write adds: rank 1, in use since the update's date (D)."""
    return _mobile(value, rank=1, period={"start": D.isoformat()})


def _apply(patient: dict[str, Any], phone: str = NEW, old: str = "keep") -> dict[str, Any] | None:
    return apply_mobile(patient, phone, old_number=old, business_date=D)  # type: ignore[arg-type]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=False, ensure_ascii=False)


@pytest.mark.parametrize("old", ["keep", "drop"])
def test_every_other_element_is_byte_for_byte_the_same(old: str) -> None:
    """C6: only `telecom` differs; extensions, address, contact and unknown fields are untouched."""
    before = patient_a()
    pristine = copy.deepcopy(before)
    after = _apply(before, old=old)
    assert after is not None
    assert before == pristine  # the input is never mutated
    assert list(after) == list(before)  # same elements, same order
    for key in before:
        if key != "telecom":
            assert _canon(after[key]) == _canon(before[key]), key
    assert after["contact"][0]["telecom"] == pristine["contact"][0]["telecom"]


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        (
            "keep",
            [
                EMAIL,
                _written(NEW),
                {
                    "system": "phone",
                    "value": "+6281111111111",
                    "use": "old",
                    "period": {"end": "2024-03-15"},
                },
            ],
        ),
        ("drop", [EMAIL, _written(NEW)]),
    ],
)
def test_old_number_rule(old: str, expected: list[dict[str, Any]]) -> None:
    """C6: keep → old entry becomes use=old ended on D without rank; drop → removed; email kept."""
    after = _apply(patient_a(), old=old)
    assert after is not None
    assert after["telecom"] == expected


def test_exactly_one_active_mobile_after_several() -> None:
    """Two active mobiles (one ranked) become one active mobile plus two old ones."""
    patient = patient_a(
        telecom=[
            _mobile("081111111111", rank=1, id="t1"),
            {"system": "phone", "value": "0215550000", "use": "home"},
            _mobile("+6281333333333", period={"start": "2020-01-01"}),
        ]
    )
    after = _apply(patient)
    assert after is not None
    assert after["telecom"] == [
        _written(NEW),
        {
            "system": "phone",
            "value": "081111111111",
            "use": "old",
            "id": "t1",
            "period": {"end": "2024-03-15"},
        },
        {"system": "phone", "value": "0215550000", "use": "home"},
        {
            "system": "phone",
            "value": "+6281333333333",
            "use": "old",
            "period": {"start": "2020-01-01", "end": "2024-03-15"},
        },
    ]


@pytest.mark.parametrize(
    "on_record",
    [
        "081234567890",
        "+6281234567890",
        "+62 812-3456-7890",
        "62812 3456 7890",
        "tel:+6281234567890",
    ],
)
def test_same_number_in_any_writing_is_unchanged(on_record: str) -> None:
    """C8(A): compared after normalising both sides → None (no write), whatever the format."""
    patient = patient_a(telecom=[EMAIL, _mobile(on_record)])
    assert _apply(patient, "+6281234567890") is None


def test_same_number_with_a_second_active_mobile_is_cleaned_up() -> None:
    """The number is already there but another active mobile competes: it is retired, kept once."""
    patient = patient_a(
        telecom=[_mobile("+6281111111111"), _mobile("0822 2222 2222", id="x"), _mobile(NEW)]
    )
    after = _apply(patient)
    assert after is not None
    assert after["telecom"] == [
        {
            "system": "phone",
            "value": "+6281111111111",
            "use": "old",
            "period": {"end": "2024-03-15"},
        },
        _mobile(NEW, id="x", rank=1),
    ]


@pytest.mark.parametrize(
    "entry",
    [
        {"system": "sms", "value": "+6282222222222", "use": "mobile"},
        {"system": "phone", "value": "+6282222222222", "use": "home"},
        {"system": "phone", "value": "+6282222222222", "use": "work"},
        {"system": "phone", "value": "+6281333333333", "use": "old"},  # another old number
    ],
)
def test_other_entries_with_the_number_are_left_alone(entry: dict[str, Any]) -> None:
    """Only an active phone/mobile counts as "already has it"; other entries are not rewritten."""
    after = _apply(patient_a(telecom=[entry]))
    assert after is not None
    assert after["telecom"] == [entry, _written(NEW)]


_OLD_NEW = {"system": "phone", "value": "0822-2222-2222", "use": "old", "period": {"end": "2024"}}
_ENDED_NEW = _mobile("+6282222222222", period={"end": "2024-03-01"})  # ended: not active
_RETIRED_CURRENT = {
    "system": "phone",
    "value": "+6281111111111",
    "use": "old",
    "period": {"end": "2024-03-15"},
}


@pytest.mark.parametrize(
    ("old", "telecom", "expected"),
    [
        pytest.param("keep", [_OLD_NEW], [_written(NEW)], id="only-old-copy"),
        pytest.param("keep", [_ENDED_NEW], [_written(NEW)], id="only-ended-copy"),
        pytest.param(
            "keep",
            [EMAIL, _OLD_NEW, _mobile("+6281111111111"), _ENDED_NEW],
            [EMAIL, _written(NEW), _RETIRED_CURRENT],
            id="keep-current-becomes-old",
        ),
        pytest.param(
            "drop",
            [EMAIL, _mobile("+6281111111111"), _OLD_NEW],
            [EMAIL, _written(NEW)],
            id="drop-current-removed",
        ),
        pytest.param(
            "keep",
            [_mobile("+6281111111111"), _OLD_NEW, _mobile(NEW, id="x")],
            [_RETIRED_CURRENT, _mobile(NEW, id="x", rank=1)],
            id="active-copy-kept-in-place",
        ),
    ],
)
def test_the_new_number_as_an_old_entry_ends_up_once(
    old: str, telecom: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    """The new number already `use: old` (or an ended mobile): only the active mobile holds it."""
    after = _apply(patient_a(telecom=telecom), old=old)
    assert after is not None
    assert after["telecom"] == expected
    assert sum(_same_number(t) for t in after["telecom"]) == 1


def _same_number(entry: dict[str, Any]) -> bool:
    return "".join(ch for ch in entry.get("value", "") if ch.isdigit()).endswith("82222222222")


def test_future_period_end_is_still_active() -> None:
    """A mobile whose period ends after the business date is still the active one."""
    patient = patient_a(telecom=[_mobile(NEW, period={"end": "2030-01-01"})])
    assert _apply(patient) is None


@pytest.mark.parametrize("telecom", [None, []])
def test_patient_without_telecom_gets_one(telecom: list[Any] | None) -> None:
    """No telecom at all → one entry, appended as the last element; nothing else added."""
    patient = patient_a()
    del patient["telecom"]
    if telecom is not None:
        patient["telecom"] = telecom
    after = _apply(patient)
    assert after is not None
    assert after["telecom"] == [_written(NEW)]
    assert {k: v for k, v in after.items() if k != "telecom"} == {
        k: v for k, v in patient.items() if k != "telecom"
    }


def test_new_phone_is_stored_in_e164() -> None:
    """The value written is E.164 even if the caller passes a national spelling."""
    after = _apply(patient_a(telecom=[]), "0822-2222-2222")
    assert after is not None
    assert after["telecom"] == [_written(NEW)]


@pytest.mark.parametrize("phone", ["12345", "+6621234567", ""])
def test_non_indonesian_mobile_is_refused(phone: str) -> None:
    """A programming error upstream never turns into a write."""
    with pytest.raises(ValueError, match=r"E\.164"):
        _apply(patient_a(), phone)


def test_malformed_telecom_is_refused() -> None:
    """A telecom that is not a list is never overwritten."""
    with pytest.raises(ValueError, match="not a list"):
        _apply(patient_a(telecom={"system": "phone"}))


def test_patch_ops_carry_current_name_birthdate_gender() -> None:
    """National PATCH: replace /telecom plus the current name, birthDate and gender."""
    current = patient_a()
    updated = _apply(current)
    assert updated is not None
    assert patch_ops(current, updated) == [
        {"op": "replace", "path": "/telecom", "value": updated["telecom"]},
        {"op": "replace", "path": "/name", "value": current["name"]},
        {"op": "replace", "path": "/birthDate", "value": "1995-03-02"},
        {"op": "replace", "path": "/gender", "value": "female"},
    ]


def test_patch_ops_omit_what_the_patient_lacks() -> None:
    """Fields the patient does not have are not invented."""
    current = patient_a()
    del current["birthDate"], current["gender"]
    updated = _apply(current)
    assert updated is not None
    assert [op["path"] for op in patch_ops(current, updated)] == ["/telecom", "/name"]


def test_business_date_is_written_as_iso_date() -> None:
    """period.end is the business date, not a timestamp."""
    after = apply_mobile(patient_a(), NEW, old_number="keep", business_date=date(2024, 12, 31))
    assert after is not None
    assert after["telecom"][2]["period"] == {"end": "2024-12-31"}
