"""`last_updated_date` cells → aware datetimes in the run's zone — see docs/normalisation.md.

Accepted: spreadsheet serial numbers (days since 1899-12-30, the fraction is the time of day),
`datetime`/`date` objects from XLSX files, ISO text (`2024-03-15`, `2024-03-15T14:30:00+00:00`),
day-first text as the sheet's id_ID locale writes it (`15/03/2024`, `15-03-2024`, `15.03.2024`,
`04/03/2024` is 4 March) and month names in Indonesian or English (`15 Maret 2024`, `Mar 15, 2024`).
Times of day `HH:MM[:SS]` follow with `:` or, as id_ID writes them, with `.`.

Refused: impossible dates, two-digit years (`04/03/24` could be 2024 or 1924, and the day/month
order of a short form is a guess), words, and anything outside the years 2000–2100 (a typo such as
`2204` must not win "latest update" for years).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from phonesync.normalise._text import collapse_spaces
from phonesync.outcomes import Outcome, Rejected
from phonesync.source.rows import UnsavedFormula, unsaved_formula_reason

MIN_YEAR, MAX_YEAR = 2000, 2100
_SERIAL_EPOCH = datetime(1899, 12, 30)  # noqa: DTZ001 — wall-clock; the zone is attached later
_MS_PER_DAY = 86_400_000
_SERIAL_LOW = (datetime(MIN_YEAR, 1, 1) - _SERIAL_EPOCH).days  # noqa: DTZ001 — day arithmetic
_SERIAL_HIGH = (datetime(MAX_YEAR + 1, 1, 1) - _SERIAL_EPOCH).days  # noqa: DTZ001
_UNRECOGNISED = (
    "last_updated_date is not a recognised date — use YYYY-MM-DD or DD/MM/YYYY "
    "(optionally with HH:MM)"
)

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("januari", "january", "jan"),
            ("februari", "february", "feb", "pebruari"),
            ("maret", "march", "mar"),
            ("april", "apr"),
            ("mei", "may"),
            ("juni", "june", "jun"),
            ("juli", "july", "jul"),
            ("agustus", "august", "agu", "agt", "aug"),
            ("september", "sep", "sept"),
            ("oktober", "october", "okt", "oct"),
            ("november", "nopember", "nov", "nop"),
            ("desember", "december", "des", "dec"),
        ),
        start=1,
    )
    for name in names
}

# Digits are `[0-9]`, never `\d` (which also matches non-Latin digits).
_TIME = (
    r"(?:[ T,]\s*(?P<h>[0-9]{1,2})[:.](?P<mi>[0-9]{2})"
    r"(?:[:.](?P<s>[0-9]{2})(?:[.,](?P<f>[0-9]{1,6}))?)?)?"
)
_OFFSET = r"\s*(?P<tz>Z|[+-][0-9]{2}:?[0-9]{2})?"
_MONTH_NAME = r"(?P<mname>[a-z]+)\.?"
_PATTERNS = tuple(
    re.compile(f"^{pattern}{_TIME}{_OFFSET}$", re.IGNORECASE)
    for pattern in (
        r"(?P<y>[0-9]{4})(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})",  # year first
        r"(?P<d>[0-9]{1,2})(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<y>[0-9]{4})",  # day first
        rf"(?P<d>[0-9]{{1,2}})[ -]{_MONTH_NAME}[ -](?P<y>[0-9]{{4}})",  # 15 Maret 2024
        rf"{_MONTH_NAME} (?P<d>[0-9]{{1,2}}),? (?P<y>[0-9]{{4}})",  # Mar 15, 2024
    )
)
_SERIAL_TEXT = re.compile(r"^[0-9]{5}(?:[.,][0-9]+)?$")  # id_ID writes the decimal point as `,`
_TWO_DIGIT_YEAR = re.compile(r"^[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{2}(?:[ T].*)?$")


def parse_update_time(cell: object, zone: ZoneInfo) -> datetime | Rejected:
    """One `last_updated_date` cell → an aware datetime in `zone`, or why not; never raises."""
    if cell is None:
        return _reject("last_updated_date is empty")
    for kind, parse in _BY_TYPE:
        if isinstance(cell, kind):
            result = parse(cell, zone)
            return result if isinstance(result, Rejected) else _in_range(result)
    return _reject("last_updated_date cell has an unsupported type")


def _reject(reason: str) -> Rejected:
    return Rejected(Outcome.INVALID_DATE, reason)


def _in_range(moment: datetime) -> datetime | Rejected:
    if MIN_YEAR <= moment.year <= MAX_YEAR:
        return moment
    return _reject(f"last_updated_date is outside the years {MIN_YEAR}–{MAX_YEAR}")


def _from_unsaved_formula(_cell: UnsavedFormula, _zone: ZoneInfo) -> Rejected:
    return _reject(unsaved_formula_reason("last_updated_date"))


def _from_bool(_cell: bool, _zone: ZoneInfo) -> Rejected:
    return _reject("last_updated_date cell is TRUE/FALSE, not a date")


def _from_datetime(cell: datetime, zone: ZoneInfo) -> datetime | Rejected:
    # Naive = wall-clock time in the sheet's zone; aware = an instant, shown in the zone.
    if cell.tzinfo is None:
        return cell.replace(tzinfo=zone)
    if not MIN_YEAR <= cell.year <= MAX_YEAR:  # before astimezone: year 9999 + 7 h overflows
        return _in_range(cell)
    return cell.astimezone(zone)


def _from_date(cell: date, zone: ZoneInfo) -> datetime:
    return datetime(cell.year, cell.month, cell.day, tzinfo=zone)


def _from_serial(cell: float, zone: ZoneInfo) -> datetime | Rejected:
    """Days since 1899-12-30 (Sheets/Excel); the fraction is the wall-clock time of day."""
    if isinstance(cell, float) and not math.isfinite(cell):
        return _reject("last_updated_date is not a finite number")
    # Compared before any conversion: float() of a huge int would raise.
    if not _SERIAL_LOW <= cell < _SERIAL_HIGH:
        return _reject(f"last_updated_date number is not a date serial in {MIN_YEAR}–{MAX_YEAR}")
    # Rounded to the millisecond: 45366.6041666… must be 14:30:00, not 14:29:59.999999.
    moment = _SERIAL_EPOCH + timedelta(milliseconds=round(cell * _MS_PER_DAY))
    return moment.replace(tzinfo=zone)


def _from_text(cell: str, zone: ZoneInfo) -> datetime | Rejected:
    text = collapse_spaces(cell)
    if not text:
        return _reject("last_updated_date is empty")
    if _SERIAL_TEXT.match(text):
        return _from_serial(float(text.replace(",", ".")), zone)
    for pattern in _PATTERNS:
        match = pattern.match(text)
        if match:
            return _from_match(match, zone)
    if _TWO_DIGIT_YEAR.match(text):
        return _reject(
            "last_updated_date has a two-digit year (ambiguous) — write the year in full"
        )
    return _reject(_UNRECOGNISED)


def _from_match(match: re.Match[str], zone: ZoneInfo) -> datetime | Rejected:
    parts = match.groupdict()
    month = _month_of(parts)
    if month is None:
        return _reject(_UNRECOGNISED)
    if month > 12:
        return _reject(
            "last_updated_date month is above 12 — dates are read day first (DD/MM/YYYY)"
        )
    fraction = (parts["f"] or "").ljust(6, "0")
    try:
        moment = datetime(  # noqa: DTZ001 — wall-clock; the zone or offset is attached below
            int(parts["y"] or 0),
            month,
            int(parts["d"] or 0),
            int(parts["h"] or 0),
            int(parts["mi"] or 0),
            int(parts["s"] or 0),
            int(fraction),
        )
    except ValueError:
        return _reject("last_updated_date is an impossible date or time (e.g. 30 February)")
    offset = _offset_of(parts["tz"], has_time=parts["h"] is not None)
    if isinstance(offset, Rejected):
        return offset
    return _from_datetime(moment.replace(tzinfo=offset), zone)


def _month_of(parts: dict[str, str | None]) -> int | None:
    name = parts.get("mname")
    if name is not None:
        return _MONTHS.get(name.lower())
    month = parts["m"]
    return int(month) if month is not None else None


def _offset_of(text: str | None, *, has_time: bool) -> timezone | Rejected | None:
    """`Z`, `+07:00` or `+0700` after a time; an offset on a bare date makes no sense."""
    if text is None:
        return None
    if not has_time:  # the pattern allows `2024-03-15+07:00`; a date alone has no offset
        return _reject(_UNRECOGNISED)
    if text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        return _reject("last_updated_date has an impossible UTC offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


# Checked in order with isinstance: bool is an int, datetime is a date.
_BY_TYPE: tuple[tuple[type, Callable[..., datetime | Rejected]], ...] = (
    (UnsavedFormula, _from_unsaved_formula),
    (bool, _from_bool),
    (datetime, _from_datetime),
    (date, _from_date),
    (int, _from_serial),
    (float, _from_serial),
    (str, _from_text),
)
