"""parse_update_time: `last_updated_date` cells → aware datetimes in the run's zone (C11)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from phonesync.normalise.dates import parse_update_time
from phonesync.outcomes import Outcome, Rejected

JAKARTA = ZoneInfo("Asia/Jakarta")


def _at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=JAKARTA)


def _rejected(cell: object) -> Rejected:
    result = parse_update_time(cell, JAKARTA)
    assert isinstance(result, Rejected), f"accepted: {result!r}"
    assert result.outcome is Outcome.INVALID_DATE
    return result


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(45366, _at(2024, 3, 15), id="C11-serial-int"),
        pytest.param(45366.75, _at(2024, 3, 15, 18), id="C11-serial-fraction"),
        pytest.param(45366.604166666664, _at(2024, 3, 15, 14, 30), id="serial-14:30-rounded"),
        pytest.param(36526, _at(2000, 1, 1), id="serial-first-accepted-day"),
        pytest.param(73415.5, _at(2100, 12, 31, 12), id="serial-last-accepted-day"),
        pytest.param("45366", _at(2024, 3, 15), id="serial-as-text"),
        pytest.param("45366.75", _at(2024, 3, 15, 18), id="serial-text-fraction"),
        pytest.param("45366,75", _at(2024, 3, 15, 18), id="serial-text-id_ID-comma"),
        pytest.param("2024-03-15", _at(2024, 3, 15), id="C11-iso"),
        pytest.param("15/03/2024", _at(2024, 3, 15), id="C11-day-first-slash"),
        pytest.param("04/03/2024", _at(2024, 3, 4), id="C11-04/03-is-4-march"),
        pytest.param("15-03-2024", _at(2024, 3, 15), id="day-first-hyphen"),
        pytest.param("15.03.2024", _at(2024, 3, 15), id="day-first-dot"),
        pytest.param("5/3/2024", _at(2024, 3, 5), id="day-first-one-digit"),
        pytest.param("2024/03/15", _at(2024, 3, 15), id="year-first-slash"),
        pytest.param("2024-03-15 14:30", _at(2024, 3, 15, 14, 30), id="iso-space-time"),
        pytest.param("2024-03-15T14:30:00", _at(2024, 3, 15, 14, 30), id="iso-T-time"),
        pytest.param("2024-03-15T14:30:00.250", _at(2024, 3, 15, 14, 30, 0, 250000), id="ms"),
        pytest.param("15/03/2024 14:30:15", _at(2024, 3, 15, 14, 30, 15), id="day-first-time"),
        pytest.param("15/03/2024 14.30", _at(2024, 3, 15, 14, 30), id="id_ID-dot-time"),
        pytest.param("15 Maret 2024", _at(2024, 3, 15), id="indonesian-month"),
        pytest.param("15 Agustus 2024", _at(2024, 8, 15), id="indonesian-agustus"),
        pytest.param("1 Mei 2024", _at(2024, 5, 1), id="indonesian-mei"),
        pytest.param("15 Mar 2024", _at(2024, 3, 15), id="short-month"),
        pytest.param("15-Okt-2024", _at(2024, 10, 15), id="short-month-hyphens"),
        pytest.param("15 December 2024", _at(2024, 12, 15), id="english-month"),
        pytest.param("Mar 15, 2024", _at(2024, 3, 15), id="english-month-first"),
        pytest.param("15 Maret 2024 09:05", _at(2024, 3, 15, 9, 5), id="named-with-time"),
        pytest.param(" 2024-03-15\u00a0", _at(2024, 3, 15), id="nbsp-around"),
    ],
)
def test_accepted_forms_give_an_aware_time_in_the_zone(cell: object, expected: datetime) -> None:
    """Serials, ISO, day-first and month-name dates all land in the run's zone."""
    result = parse_update_time(cell, JAKARTA)
    assert result == expected
    assert isinstance(result, datetime)
    assert result.tzinfo is JAKARTA


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("2024-03-15T14:30:00+00:00", _at(2024, 3, 15, 21, 30), id="utc-offset"),
        pytest.param("2024-03-15T14:30:00Z", _at(2024, 3, 15, 21, 30), id="Z"),
        pytest.param("2024-03-15T20:00:00-0500", _at(2024, 3, 16, 8), id="negative-offset"),
        pytest.param("2024-03-15 23:00+07:00", _at(2024, 3, 15, 23), id="already-wib"),
        pytest.param(datetime(2024, 3, 15, 16, 0, tzinfo=UTC), _at(2024, 3, 15, 23), id="aware"),
        pytest.param(
            datetime(2024, 3, 15, 14, 30),  # noqa: DTZ001 — a naive XLSX cell is the point
            _at(2024, 3, 15, 14, 30),
            id="naive-xlsx-is-wall-clock",
        ),
        pytest.param(date(2024, 3, 15), _at(2024, 3, 15), id="date-is-midnight"),
    ],
)
def test_offsets_and_aware_values_are_converted_into_the_zone(
    cell: object, expected: datetime
) -> None:
    """An instant with an offset keeps its instant; naive values are wall-clock in the zone."""
    result = parse_update_time(cell, JAKARTA)
    assert result == expected
    assert isinstance(result, datetime)
    assert result.utcoffset() == timedelta(hours=7)


def test_the_zone_argument_is_honoured() -> None:
    """The same serial means a different instant in another zone (wall-clock semantics)."""
    utc_zone = ZoneInfo("UTC")
    result = parse_update_time(45366.75, utc_zone)
    assert result == datetime(2024, 3, 15, 18, tzinfo=utc_zone)
    assert parse_update_time(45366.75, JAKARTA) != result


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param("2024-02-30", "impossible date", id="C11-30-february"),
        pytest.param("2023-02-29", "impossible date", id="29-feb-non-leap"),
        pytest.param("31/04/2024", "impossible date", id="31-april"),
        pytest.param("2024-03-15 24:00", "impossible date or time", id="hour-24"),
        pytest.param("2024-03-15 12:60", "impossible date or time", id="minute-60"),
        pytest.param("03/15/2024", "read day first", id="us-month-first"),
        pytest.param("kemarin", "not a recognised date", id="C11-kemarin"),
        pytest.param("hari ini", "not a recognised date", id="today-in-words"),
        pytest.param("15 Foo 2024", "not a recognised date", id="unknown-month"),
        pytest.param("2024-03-15+07:00", "not a recognised date", id="offset-without-time"),
        pytest.param("2024-03-15T14:30+25:00", "impossible UTC offset", id="offset-25h"),
        pytest.param("15/03/2024/1", "not a recognised date", id="extra-part"),
        pytest.param("2024-03-15 14:30 WIB", "not a recognised date", id="zone-name"),
        pytest.param("04/03/24", "two-digit year", id="two-digit-year"),
        pytest.param("4-3-24 10:00", "two-digit year", id="two-digit-year-time"),
        pytest.param("20240315", "not a recognised date", id="compact-iso"),
        pytest.param("1999-12-31", "outside the years 2000–2100", id="before-2000"),
        pytest.param("2204-03-15", "outside the years 2000–2100", id="typo-2204"),
        pytest.param("2100-12-31T23:00+00:00", "outside the years", id="2101-in-the-zone"),
        pytest.param("", "last_updated_date is empty", id="empty"),
        pytest.param("  \u00a0", "last_updated_date is empty", id="only-spaces"),
        pytest.param(None, "last_updated_date is empty", id="none"),
        pytest.param(20240315, "not a date serial", id="int-yyyymmdd"),
        pytest.param(36525, "not a date serial", id="serial-1999-12-31"),
        pytest.param(73416, "not a date serial", id="serial-2101-01-01"),
        pytest.param(-1, "not a date serial", id="negative"),
        pytest.param(10**400, "not a date serial", id="huge-int-no-overflow"),
        pytest.param(float("nan"), "not a finite number", id="nan"),
        pytest.param(float("inf"), "not a finite number", id="inf"),
        pytest.param("1234", "not a recognised date", id="short-number-text"),
        pytest.param(True, "TRUE/FALSE", id="bool"),
        pytest.param(b"2024-03-15", "unsupported type", id="bytes"),
        pytest.param(date(1999, 12, 31), "outside the years", id="old-date-object"),
        pytest.param(
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
            "outside the years",
            id="aware-max-no-overflow",
        ),
    ],
)
def test_unusable_dates_are_refused_with_a_reason(cell: object, fragment: str) -> None:
    """Impossible, ambiguous, out-of-range and non-date cells are refused, never guessed."""
    assert fragment in _rejected(cell).reason
