"""Property-based tests of the three normalisers: invariants over generated and mutated cells.

Deterministic (`derandomize=True`, no example database) so CI and laptops see the same cases.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from phonesync.normalise.dates import MAX_YEAR, MIN_YEAR, parse_update_time
from phonesync.normalise.nik import PROVINCE_CODES, Nik, parse_nik
from phonesync.normalise.phone import canonical_phone, normalise_phone
from phonesync.outcomes import Outcome, Rejected

JAKARTA = ZoneInfo("Asia/Jakarta")
MOBILE = re.compile(r"^\+628[0-9]{8,11}$")
NIK_DIGITS = re.compile(r"^[0-9]{16}$")
THOUSANDS_SHAPE = re.compile(r"^[0-9]{1,3}(?:[. ][0-9]{3}){4,}$")
VALUE_IN_REASON = re.compile(r"[0-9]{5}")
CODE_POINT = re.compile(r"U\+[0-9A-F]{4,6}")  # `U+15020` names a character, it is no value

deterministic = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- strategies --------------------------------------------------------------------------------

DIGITS = "0123456789"
SAFE_NIK_SEPARATORS = [" ", "\u00a0", "\u202f", "\u200b", ".", "-", "\u2013"]
UNSAFE_CHARS = [",", "|", "\\", "/", ";", "O", "l", "x", "*", "+", "\u00ad", "٣"]
PHONE_SEPARATORS = [" ", "-", ".", "\u00a0", "\u2013"]
TRICKY_TEXT = st.text(alphabet="0123456789 +-.,()/|'eEOo:\u00a0\u200bWAwa62", max_size=40)
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=-12)), timezone(timedelta(hours=14)), JAKARTA]
)
ANY_CELL = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    TRICKY_TEXT,
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=ZONES),
)


@st.composite
def valid_niks(draw: st.DrawFn) -> str:
    """A NIK that satisfies every documented rule (province, day/month/yy, serial ≠ 0000)."""
    province = draw(st.sampled_from(sorted(PROVINCE_CODES)))
    region = draw(st.text(DIGITS, min_size=4, max_size=4))
    month = draw(st.integers(1, 12))
    yy = draw(st.integers(0, 99))
    day = draw(st.integers(1, calendar.monthrange(2000 + yy, month)[1]))
    day += 40 if draw(st.booleans()) else 0
    serial = draw(st.integers(1, 9999))
    return f"{province}{region}{day:02d}{month:02d}{yy:02d}{serial:04d}"


@st.composite
def mobile_nationals(draw: st.DrawFn) -> str:
    """The national part of an Indonesian mobile: 8 + 8–11 digits, not 800/809."""
    rest = draw(st.text(DIGITS, min_size=8, max_size=11))
    national = "8" + rest
    return "81" + rest[1:] if national.startswith(("800", "809")) else national


@st.composite
def sprinkled(draw: st.DrawFn, text: str, chars: list[str]) -> str:
    """`text` with characters from `chars` inserted at random places."""
    out = list(text)
    for _ in range(draw(st.integers(0, 5))):
        out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(chars)))
    return "".join(out)


# --- invariants (used by every property) -----------------------------------------------------


def check_nik(result: Nik | Rejected) -> None:
    """Accepted: 16 digits, real province, a date that exists for some century, serial ≠ 0000."""
    if isinstance(result, Rejected):
        assert result.outcome is Outcome.INVALID_NIK
        assert result.reason
        assert not VALUE_IN_REASON.search(CODE_POINT.sub("", result.reason))
        return
    value = result.value
    assert NIK_DIGITS.match(value)
    assert result.province == value[:2] in PROVINCE_CODES
    assert value[12:] != "0000"
    date(2000 + result.birth_yy, result.birth_month, result.birth_day)  # raises if impossible
    raw_day = int(value[6:8])
    assert result.sex == ("female" if raw_day > 40 else "male")
    assert parse_nik(value) == result  # idempotent


def check_phone(result: str | Rejected) -> None:
    """Accepted: `+628…` with 9–12 national digits, never `+6262`, stable under re-parsing."""
    if isinstance(result, Rejected):
        assert result.outcome is Outcome.INVALID_PHONE
        assert result.reason
        assert not VALUE_IN_REASON.search(CODE_POINT.sub("", result.reason))
        return
    assert MOBILE.match(result)
    assert not result.startswith(("+6262", "+62800", "+62809"))
    assert normalise_phone(result) == result  # idempotent
    assert canonical_phone(result) == result
    # A cross-check only: phonenumbers is not our authority, but it must read the same number.
    parsed = phonenumbers.parse(result, None)
    assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == result


def check_date(result: datetime | Rejected, zone: ZoneInfo = JAKARTA) -> None:
    """Accepted: aware, in `zone`, inside the plausible years, stable under re-parsing."""
    if isinstance(result, Rejected):
        assert result.outcome is Outcome.INVALID_DATE
        assert result.reason
        return
    assert result.tzinfo is zone
    assert MIN_YEAR <= result.year <= MAX_YEAR
    assert parse_update_time(result, zone) == result
    assert parse_update_time(result.isoformat(), zone) == result


# --- NIK ---------------------------------------------------------------------------------------


@deterministic
@given(valid_niks())
def test_valid_niks_are_accepted_and_idempotent(nik: str) -> None:
    """Every NIK that satisfies the documented rules is accepted unchanged."""
    result = parse_nik(nik)
    assert isinstance(result, Nik)
    assert result.value == nik
    check_nik(result)


@deterministic
@given(st.data(), valid_niks())
def test_safe_separators_never_change_the_nik(data: st.DataObject, nik: str) -> None:
    """Spaces, dots, hyphens and one leading apostrophe are cleaned to the same NIK."""
    spelled = data.draw(st.sampled_from(["", "'"])) + data.draw(sprinkled(nik, SAFE_NIK_SEPARATORS))
    # Groups of three from the right are a number format, refused on purpose (test_nik.py).
    assume(not THOUSANDS_SHAPE.match(" ".join(spelled.split())))
    assert parse_nik(spelled) == parse_nik(nik)


@deterministic
@given(st.data(), valid_niks())
def test_unsafe_characters_anywhere_are_refused(data: st.DataObject, nik: str) -> None:
    """One `,` `|` `\\` `/` letter or symbol anywhere makes the cell invalid."""
    position = data.draw(st.integers(0, len(nik)))
    char = data.draw(st.sampled_from(UNSAFE_CHARS))
    result = parse_nik(nik[:position] + char + nik[position:])
    assert isinstance(result, Rejected)
    check_nik(result)


@deterministic
@given(st.data(), valid_niks())
def test_dropping_or_adding_a_digit_is_refused(data: st.DataObject, nik: str) -> None:
    """15 or 17 digits (Excel truncation, a typo) are never accepted."""
    position = data.draw(st.integers(0, 15))
    shorter = nik[:position] + nik[position + 1 :]
    longer = nik[:position] + data.draw(st.sampled_from("0123456789")) + nik[position:]
    assert isinstance(parse_nik(shorter), Rejected)
    assert isinstance(parse_nik(longer), Rejected)


@deterministic
@given(valid_niks())
def test_a_nik_that_went_through_a_number_is_refused(nik: str) -> None:
    """The NIK as int, float, `E+` text or with `.0` is refused, whatever its digits."""
    for cell in (int(nik), float(nik), f"{float(nik):.5E}", nik + ".0"):
        result = parse_nik(cell)
        assert isinstance(result, Rejected)
        check_nik(result)


@deterministic
@given(st.data(), valid_niks())
def test_changing_one_digit_keeps_the_invariants(data: st.DataObject, nik: str) -> None:
    """A mutated NIK is either refused or still satisfies every rule (no check digit exists)."""
    position = data.draw(st.integers(0, 15))
    digit = data.draw(st.sampled_from("0123456789"))
    check_nik(parse_nik(nik[:position] + digit + nik[position + 1 :]))


@deterministic
@given(st.one_of(ANY_CELL, TRICKY_TEXT.map(lambda t: "3174" + t)))
def test_parse_nik_never_crashes(cell: object) -> None:
    """Any cell gives a Nik or a Rejected; accepted ones satisfy every invariant."""
    check_nik(parse_nik(cell))


# --- phone -------------------------------------------------------------------------------------

PHONE_SPELLINGS = [
    "0{}",
    "62{}",
    "+62{}",
    "0062{}",
    "+62 (0) {}",
    "+62 0{}",
    "WA: 0{}",
    "wa.me/62{}",
]


@deterministic
@given(st.data(), mobile_nationals())
def test_every_spelling_of_a_mobile_gives_one_e164(data: st.DataObject, national: str) -> None:
    """0…, 62…, +62…, 0062…, +62 (0)…, labels and separators all give `+62` + national."""
    spelled = data.draw(st.sampled_from(PHONE_SPELLINGS)).format(
        data.draw(sprinkled(national, PHONE_SEPARATORS))
    )
    expected = "+62" + national
    assert normalise_phone(spelled) == expected
    assert canonical_phone(spelled) == expected
    check_phone(expected)


@deterministic
@given(mobile_nationals())
def test_numeric_cells_that_lost_the_leading_zero_are_recovered(national: str) -> None:
    """int and exact-integer float cells (C1) give the same number as the text."""
    expected = "+62" + national
    assert normalise_phone(int(national)) == expected
    assert normalise_phone(float(national)) == expected
    assert normalise_phone(national + ".0") == expected


@deterministic
@given(st.integers(1, 3), st.sampled_from(["", "+", "00"]), mobile_nationals())
def test_repeated_country_codes_never_give_6262(repeat: int, prefix: str, national: str) -> None:
    """`62…`, `6262…`, `+6262…` never produce a number starting `+6262`."""
    result = normalise_phone(prefix + "62" * repeat + national)
    check_phone(result)
    assert result == "+62" + national if repeat == 1 else isinstance(result, Rejected)


@deterministic
@given(st.data(), mobile_nationals(), mobile_nationals())
def test_two_numbers_in_one_cell_are_refused(data: st.DataObject, first: str, second: str) -> None:
    """Two mobiles joined by a separator are refused as multiple numbers."""
    joiner = data.draw(st.sampled_from([" / ", ", ", ";", " atau ", "\n", " ", " & "]))
    result = normalise_phone(f"0{first}{joiner}0{second}")
    assert isinstance(result, Rejected)
    assert "multiple numbers" in result.reason


@deterministic
@given(st.data(), mobile_nationals())
def test_a_letter_inside_a_number_is_refused(data: st.DataObject, national: str) -> None:
    """Keypad letters and O-for-0 are refused wherever they sit inside the digits."""
    text = "0" + national
    position = data.draw(st.integers(1, len(text)))
    letter = data.draw(st.sampled_from("OoIlABCxyz"))
    result = normalise_phone(text[:position] + letter + text[position:])
    assert isinstance(result, Rejected)
    assert "letters" in result.reason


@deterministic
@given(st.one_of(ANY_CELL, TRICKY_TEXT.map(lambda t: "08" + t)))
def test_normalise_phone_never_crashes(cell: object) -> None:
    """Any cell gives `+628…` or a Rejected; text accepted agrees with canonical_phone."""
    result = normalise_phone(cell)
    check_phone(result)
    if isinstance(cell, str) and isinstance(result, str):
        assert canonical_phone(cell) == result


@deterministic
@given(st.text())
def test_canonical_phone_never_crashes_and_agrees(text: str) -> None:
    """canonical_phone returns None or exactly what normalise_phone accepts."""
    result = canonical_phone(text)
    accepted = normalise_phone(text)
    assert result == (accepted if isinstance(accepted, str) else None)


# --- dates -------------------------------------------------------------------------------------

PLAUSIBLE = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2100, 12, 30))  # noqa: DTZ001


@deterministic
@given(PLAUSIBLE)
def test_text_spellings_of_a_moment_agree(moment: datetime) -> None:
    """ISO and day-first texts of one wall-clock moment parse to the same aware time."""
    moment = moment.replace(microsecond=0)
    expected = moment.replace(tzinfo=JAKARTA)
    for text in (
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        moment.strftime("%Y-%m-%dT%H:%M:%S"),
        moment.strftime("%d/%m/%Y %H:%M:%S"),
        moment.strftime("%d.%m.%Y %H.%M.%S"),
        moment.strftime("%d %b %Y %H:%M:%S"),
    ):
        assert parse_update_time(text, JAKARTA) == expected, text


@deterministic
@given(PLAUSIBLE)
def test_serial_numbers_round_trip(moment: datetime) -> None:
    """A moment written as a spreadsheet serial number comes back to the millisecond."""
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    serial = (moment - datetime(1899, 12, 30)) / timedelta(days=1)  # noqa: DTZ001
    result = parse_update_time(serial, JAKARTA)
    assert isinstance(result, datetime)
    assert abs(result - moment.replace(tzinfo=JAKARTA)) <= timedelta(milliseconds=1)
    check_date(result)


@deterministic
@given(ANY_CELL)
def test_parse_update_time_never_crashes(cell: object) -> None:
    """Any cell gives an aware datetime in the zone or a Rejected."""
    check_date(parse_update_time(cell, JAKARTA))


@deterministic
@given(
    st.from_regex(r"\A[0-9]{1,4}[-/. ][0-9A-Za-z]{1,9}[-/. ][0-9]{1,4}( [0-9]{1,2}[:.][0-9]{2})?\Z")
)
def test_date_like_text_never_crashes(text: str) -> None:
    """Text shaped like a date, valid or not, gives a datetime in range or a Rejected."""
    check_date(parse_update_time(text, JAKARTA))


# --- size --------------------------------------------------------------------------------------

HUGE_CELLS = {
    "digits": "1" * 50_000,
    "dotted-digits": "1." * 25_000,
    "parentheses": "(" * 50_000 + "x",
    "spaced-parentheses": "( " * 25_000 + "x",
    "e-after-digits": "1" * 50_000 + "e",
    "list-of-phones": " / ".join(["0812-3456-7890"] * 3_000),
    "repeated-dates": "2024-03-15 " * 4_500,
}


@pytest.mark.parametrize("cell", HUGE_CELLS.values(), ids=HUGE_CELLS.keys())
def test_a_50k_character_cell_is_refused_in_linear_time(cell: str) -> None:
    """A cell of Sheets' maximum size is refused quickly by all three (no quadratic work)."""
    started = time.perf_counter()
    assert isinstance(parse_nik(cell), Rejected)
    assert isinstance(normalise_phone(cell), Rejected)
    assert isinstance(parse_update_time(cell, JAKARTA), Rejected)
    # Linear work takes ~0.1 s here; a quadratic regex or matcher run takes minutes.
    assert time.perf_counter() - started < 2.0
