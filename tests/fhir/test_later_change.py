"""later_change: the record's own newer-wins, decided on raw FHIR JSON (no ledger, no IO).

phonesync retires a number with `use: old` and `period.end` = the business date of the run that
replaced it, so a date in a phone entry's period after this run's business date D means a newer
update already reached the record. These tests pin down which entries and dates count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from phonesync.fhir.telecom import LaterChange, fhir_date_span, later_change

from .conftest import JAKARTA, D, patient_a

FIXTURES = Path(__file__).parent / "fixtures"
UTC_ZONE = ZoneInfo("UTC")
CURRENT = {"system": "phone", "value": "+6281111111111", "use": "mobile"}


def _with(*telecom: dict[str, Any]) -> dict[str, Any]:
    return patient_a(telecom=[{"system": "email", "value": "a@example.org"}, *telecom])


def _old(end: Any, value: str = "+6281333333333", **extra: Any) -> dict[str, Any]:
    return {"system": "phone", "value": value, "use": "old", "period": {"end": end}, **extra}


def _check(patient: dict[str, Any], zone: Any = JAKARTA) -> LaterChange | None:
    return later_change(patient, D, zone)


# --- what a newer night leaves behind ------------------------------------------------------


def test_a_number_retired_after_the_business_date_is_a_newer_update() -> None:
    """The user's record before the bad write: B `old` ended 2024-03-16, C the mobile."""
    patient = _with(_old("2024-03-16"), {**CURRENT, "value": "+6283333333333", "rank": 1})
    change = _check(patient)
    assert change is not None
    assert change.certain
    assert change.when == "on 2024-03-16"


@pytest.mark.parametrize("end", ["2024-03-15", "2024-03-14", "2020", "2024-02", "2023-12-31"])
def test_an_end_on_or_before_the_business_date_is_no_sign(end: str) -> None:
    """Equal: a re-run or retry of the same night sees its own `period.end` and goes on."""
    assert _check(_with(_old(end), CURRENT)) is None


def test_no_period_at_all_is_no_sign() -> None:
    patient = _with(CURRENT, {"system": "phone", "value": "+6281333333333", "use": "old"})
    assert _check(patient) is None
    assert _check(patient_a(telecom=[])) is None
    assert _check({"resourceType": "Patient", "id": "P1"}) is None


@pytest.mark.parametrize("use", ["mobile", "old", None, "Mobile"])
def test_any_entry_of_the_mobiles_history_counts(use: str | None) -> None:
    """`old`, a `mobile` ended later by another system, no `use`, an unknown code: all count."""
    entry: dict[str, Any] = {"system": "phone", "value": "+6281333333333"}
    entry |= {"use": use} if use else {}
    entry["period"] = {"end": "2024-03-16"}
    change = _check(_with(entry))
    assert change is not None
    assert change.certain


@pytest.mark.parametrize(
    "entry",
    [
        {"system": "phone", "value": "0215550000", "use": "home", "period": {"end": "2024-03-20"}},
        {"system": "phone", "value": "0215550001", "use": "work", "period": {"end": "2024-03-20"}},
        {"system": "phone", "value": "0813", "use": "temp", "period": {"end": "2025-01-01"}},
        {"system": "email", "value": "b@example.org", "period": {"end": "2024-03-20"}},
        {"system": "sms", "value": "+6281333333333", "use": "old", "period": {"end": "2024-03-20"}},
        {"system": "fax", "value": "0215550002", "period": {"start": "not a date"}},
        {"system": "phone", "value": "0215550003", "use": "home", "period": "nonsense"},
    ],
)
def test_other_systems_and_non_mobile_uses_are_ignored(entry: dict[str, Any]) -> None:
    """Email, sms, fax; landline, work and temporary phones say nothing of the mobile."""
    assert _check(_with(CURRENT, entry)) is None


def test_a_contacts_numbers_are_ignored() -> None:
    patient = _with(CURRENT)
    patient["contact"] = [{"telecom": [_old("2024-03-20")]}]
    assert _check(patient) is None


def test_the_active_mobile_started_after_the_business_date_is_a_newer_update() -> None:
    started = {**CURRENT, "period": {"start": "2024-03-17"}}
    change = _check(_with(started))
    assert change is not None
    assert (change.certain, change.when) == (True, "on 2024-03-17")
    assert _check(_with({**CURRENT, "period": {"start": "2024-03-15"}})) is None
    assert _check(_with({**CURRENT, "period": {"start": "2019-01-01"}})) is None


def test_the_newest_certain_sign_is_named_and_wins_over_an_unreadable_one() -> None:
    patient = _with(_old("16/03/2024"), _old("2024-03-16"), _old("2024-03-18"), CURRENT)
    change = _check(patient)
    assert change is not None
    assert (change.certain, change.when) == (True, "on 2024-03-18")


# --- dates with a time and a zone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "zone", "after"),
    [
        ("2024-03-15T20:00:00Z", JAKARTA, "2024-03-16"),  # 03:00 on the 16th in Jakarta
        ("2024-03-15T16:59:59Z", JAKARTA, None),  # 23:59:59 on the 15th in Jakarta
        ("2024-03-15T23:30:00+07:00", JAKARTA, None),
        ("2024-03-16T00:00:00+07:00", JAKARTA, "2024-03-16"),
        ("2024-03-16T01:00:00+09:00", JAKARTA, "2024-03-16"),  # 23:00 on the 15th in Jakarta,
        # but the 16th by its date part: the later reading counts (conservative)
        ("2024-03-15T20:00:00Z", UTC_ZONE, None),  # PHONESYNC_TIMEZONE=UTC: still the 15th
        ("2024-03-15T23:59:60+07:00", JAKARTA, None),  # a leap second
        ("2024-03-16T10:00:00.123+07:00", JAKARTA, "2024-03-16"),
    ],
)
def test_a_date_time_is_read_in_the_business_date_zone_and_by_its_date_part(
    end: str, zone: Any, after: str | None
) -> None:
    change = _check(_with(_old(end), CURRENT), zone)
    if after is None:
        assert change is None
    else:
        assert change is not None
        assert (change.certain, change.when) == (True, f"on {after}")


@pytest.mark.parametrize(
    ("end", "certain"),
    [
        ("2024-03-14T10:00:00", None),  # a day later at most: still on or before D
        ("2024-03-15T10:00:00", False),  # the 15th, or the 16th in Jakarta: cannot tell
        ("2024-03-16T10:00:00", True),
    ],
)
def test_a_time_without_a_zone_may_be_a_day_later(end: str, certain: bool | None) -> None:
    """FHIR requires a zone with a time; without one the Jakarta date may be a day later."""
    change = _check(_with(_old(end), CURRENT))
    assert (change.certain if change else None) is certain
    if change is not None and not change.certain:
        assert change.detail == (
            "a phone entry's period.end has a time without a time zone "
            "(2024-03-15T10:00:00), which may be 2024-03-16 in Asia/Jakarta"
        )


# --- partial and unreadable dates ----------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "certain", "when"),
    [
        ("2025", True, "in 2025"),
        ("2024-04", True, "in 2024-04"),
        ("2024", False, None),  # 1 January … 31 December: may be after 15 March
        ("2024-03", False, None),
    ],
)
def test_a_year_or_a_month_alone_spans_its_days(end: str, certain: bool, when: str | None) -> None:
    change = _check(_with(_old(end), CURRENT))
    assert change is not None
    assert (change.certain, change.when) == (certain, when)
    if not certain:
        part = "the year" if len(end) == 4 else "the month"
        assert change.detail == (
            f"a phone entry's period.end gives only {part} ({end}), which may be after it"
        )


@pytest.mark.parametrize(
    "end",
    [
        "16/03/2024",
        "",
        "2024-02-30",
        "2024-13",
        "2024-03-16 ",
        "2024-03-16T10:00:00+15:00",
        "tomorrow",
        "081234567890",
        20240316,
        {"date": "2024-03-16"},
        True,
    ],
)
def test_an_unreadable_date_is_uncertain_and_never_echoed(end: Any) -> None:
    """Not FHIR's date form: a newer update may be there, nothing tells (the caller refuses)."""
    change = _check(_with(_old(end), CURRENT))
    assert change is not None
    assert not change.certain
    assert change.detail == "a phone entry's period.end is not a FHIR date"
    assert change.when is None


def test_a_period_that_is_not_an_object_is_uncertain() -> None:
    entry = {"system": "phone", "value": "+6281333333333", "use": "old", "period": "2024-03-16"}
    change = _check(_with(entry, CURRENT))
    assert change is not None
    assert (change.certain, change.detail) == (False, "a phone entry's period is not an object")


def test_an_unreadable_start_counts_like_an_unreadable_end() -> None:
    change = _check(_with({**CURRENT, "period": {"start": "2024/03/17"}}))
    assert change is not None
    assert change.detail == "a phone entry's period.start is not a FHIR date"


def test_a_null_date_is_absent() -> None:
    assert _check(_with(_old(None), CURRENT)) is None


# --- never a number; official examples -----------------------------------------------------

_DIGITS = re.compile(r"\d{9,}")


def test_what_it_says_never_holds_a_number() -> None:
    for end in ("2024-03-16", "2024", "081234567890", "2024-03-15T10:00:00"):
        change = _check(_with(_old(end, value="+6281234567890"), CURRENT))
        assert change is not None
        assert not _DIGITS.search(f"{change.when} {change.detail}"), end


@pytest.mark.parametrize(
    "name",
    ["patient-example.json", "patient-example-contained.json", "patient-example-f001-pieter.json"],
)
def test_the_official_examples_carry_no_later_change(name: str) -> None:
    """Their `old` number ended in 2014 (a year alone): long before D."""
    assert _check(json.loads((FIXTURES / name).read_text(encoding="utf-8"))) is None


def test_fhir_date_span_reads_every_fhir_form() -> None:
    assert fhir_date_span("2024", JAKARTA) == (
        D.replace(month=1, day=1),
        D.replace(month=12, day=31),
        "2024",
    )
    assert fhir_date_span("2024-02", JAKARTA) == (
        D.replace(month=2, day=1),
        D.replace(month=2, day=29),
        "2024-02",
    )
    assert fhir_date_span("2024-03-15", JAKARTA) == (D, D, "2024-03-15")
    assert fhir_date_span("0000", JAKARTA) is None
