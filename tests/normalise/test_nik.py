"""parse_nik: cleaning and validation of NIK cells (domain.md §2; field cases C1–C4)."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from phonesync.normalise.nik import PROVINCE_CODES, Nik, parse_nik
from phonesync.outcomes import Outcome, Rejected

NIK_A = "3174014203950001"  # female, born 1995-03-02
NIK_B = "3174013112850002"  # male, born 1985-12-31
NIK_P = "9171014506880003"  # Papua, female, 1988-06-05


def _rejected(cell: object) -> Rejected:
    result = parse_nik(cell)
    assert isinstance(result, Rejected), f"accepted: {result!r}"
    assert result.outcome is Outcome.INVALID_NIK
    assert not re.search(r"[0-9]{5}", result.reason), "reason must not carry the value"
    return result


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(NIK_A, Nik(NIK_A, "31", 2, 3, 95, "female"), id="C3-female-day-plus-40"),
        pytest.param(NIK_B, Nik(NIK_B, "31", 31, 12, 85, "male"), id="C3-male-31-december"),
        pytest.param(NIK_P, Nik(NIK_P, "91", 5, 6, 88, "female"), id="C3-papua-as-text"),
        pytest.param("9271060312000001", Nik("9271060312000001", "92", 3, 12, 0, "male"), id="92"),
        pytest.param("6571010101900001", Nik("6571010101900001", "65", 1, 1, 90, "male"), id="65"),
        pytest.param(
            "9671017112990001", Nik("9671017112990001", "96", 31, 12, 99, "female"), id="96"
        ),
    ],
)
def test_valid_niks_decode_province_birth_date_and_sex(cell: str, expected: Nik) -> None:
    """A valid NIK decodes to its province, birth day (women −40), month, yy and sex."""
    assert parse_nik(cell) == expected


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("3174 0142 0395 0001", id="C3-spaces"),
        pytest.param("3174.0142.0395.0001", id="C3-dots"),
        pytest.param("'3174014203950001", id="C3-leading-apostrophe"),
        pytest.param("3174-0142-0395-0001", id="hyphens"),
        pytest.param("3174\u20130142\u20130395\u20130001", id="en-dashes-from-autocorrect"),
        pytest.param("\u00a03174014203950001\u00a0", id="nbsp-around"),
        pytest.param("3174\u00a00142\u202f0395\u20070001", id="unicode-spaces-inside"),
        pytest.param("\u200b3174014203950001\ufeff", id="zero-width-and-bom"),
        pytest.param("\t3174014203950001\n", id="tab-newline"),
        pytest.param("\u20193174014203950001", id="typographic-apostrophe"),
    ],
)
def test_safe_cleaning_gives_the_plain_nik(cell: str) -> None:
    """Spaces (any Unicode kind), one leading apostrophe, dots and hyphens are cleaned away."""
    result = parse_nik(cell)
    assert isinstance(result, Nik)
    assert result.value == NIK_A


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        pytest.param("3174013502950004", "NIK birth day 35 is impossible", id="C3-day-35"),
        pytest.param("3174014002950005", "NIK birth day 40 is impossible", id="C3-day-40"),
        pytest.param("3174010002950005", "NIK birth day 00 is impossible", id="day-00"),
        pytest.param("3174017202950005", "NIK birth day 72 is impossible", id="day-72"),
        pytest.param("3174017002950003", "NIK birth date 30/02 does not exist", id="C3-fem-30-feb"),
        pytest.param("3174013104950003", "NIK birth date 31/04 does not exist", id="31-april"),
        pytest.param("3174010113950006", "NIK birth month 13 is impossible", id="C3-month-13"),
        pytest.param("3174010100950006", "NIK birth month 00 is impossible", id="month-00"),
        pytest.param("317401420395001", "NIK has 15 digits, expected 16", id="C3-15-digits"),
        pytest.param("31740142039500011", "NIK has 17 digits, expected 16", id="17-digits"),
        pytest.param(
            "0074014203950001", "NIK province code 00 does not exist", id="C3-province-00"
        ),
        pytest.param("2074014203950001", "NIK province code 20 does not exist", id="province-20"),
        pytest.param("9774014203950001", "NIK province code 97 does not exist", id="province-97"),
        pytest.param(
            "3174014203950000",
            "NIK serial 0000 is never issued (number truncated by a spreadsheet?)",
            id="C2-excel-15-significant-digits",
        ),
        pytest.param("", "NIK is empty", id="empty"),
        pytest.param("   \u00a0", "NIK is empty", id="only-spaces"),
        pytest.param("'", "NIK is empty", id="only-apostrophe"),
        pytest.param(None, "NIK is empty", id="none"),
    ],
)
def test_impossible_niks_are_refused_with_a_specific_reason(cell: object, reason: str) -> None:
    """Length, province, day (incl. women's +40), month, calendar date and serial are checked."""
    assert _rejected(cell).reason == reason


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param("3174012902010001", "29/02 does not exist (not a leap year)", id="29feb-yy01"),
        pytest.param("3174016902970001", "29/02 does not exist (not a leap year)", id="29feb-f-97"),
    ],
)
def test_29_february_needs_a_leap_two_digit_year(cell: str, fragment: str) -> None:
    """29/02 is refused when neither 19yy nor 20yy is a leap year."""
    assert fragment in _rejected(cell).reason


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("3174012902000001", id="yy00-is-2000-leap"),
        pytest.param("3174012902960001", id="yy96"),
        pytest.param("3174016902040001", id="female-yy04"),
    ],
)
def test_29_february_with_a_leap_two_digit_year_is_valid(cell: str) -> None:
    """yy = 00 counts as 2000 (a leap year), so 29/02/00 exists."""
    assert isinstance(parse_nik(cell), Nik)


NUMBER_REASON = (
    "NIK cell is a number in the sheet; digits may have been lost — "
    "format the NIK column as plain text"
)


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        pytest.param(3174014203950001, NUMBER_REASON, id="C1-int"),
        pytest.param(3174014203950000.0, NUMBER_REASON, id="C2-float"),
        pytest.param(9271060312000001, NUMBER_REASON, id="papua-int-above-2^53"),
        pytest.param(float("nan"), NUMBER_REASON, id="nan"),
        pytest.param(True, "NIK cell is TRUE/FALSE, not a NIK", id="bool"),
        pytest.param(
            date(2024, 3, 15),
            "NIK cell is a date in the sheet; format the NIK column as plain text",
            id="date",
        ),
        pytest.param(
            datetime(2024, 3, 15, 1, 2),  # noqa: DTZ001 — a naive XLSX cell is the point
            "NIK cell is a date in the sheet; format the NIK column as plain text",
            id="datetime",
        ),
        pytest.param(
            b"3174014203950001",
            "NIK cell has an unsupported type; format the NIK column as plain text",
            id="bytes",
        ),
    ],
)
def test_non_text_cells_are_refused_even_when_the_digits_look_right(
    cell: object, reason: str
) -> None:
    """A NIK that is not text may have lost digits: refused, never converted."""
    assert _rejected(cell).reason == reason


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param("3.17401E+15", "scientific notation", id="C2-E-notation"),
        pytest.param("3.17401e+15", "scientific notation", id="e-notation-lower"),
        pytest.param("317401420395E15", "scientific notation", id="E-without-plus"),
        pytest.param("3174014203950001.0", "ends in '.0'", id="trailing-.0"),
        pytest.param("3174014203950001.00", "ends in '.0'", id="trailing-.00"),
        pytest.param("3174.0142.0395.0", "ends in '.0'", id="grouped-then-.0"),
        pytest.param("9.271.060.312.000.004", "thousands separators", id="id_ID-number-format"),
        pytest.param("3 174 014 203 950 001", "thousands separators", id="space-thousands"),
        pytest.param("3\u202f174\u202f014\u202f203\u202f950\u202f001", "thousands", id="nnbsp"),
    ],
)
def test_text_that_went_through_a_number_is_refused(cell: str, fragment: str) -> None:
    """`E+` and a trailing `.0` show the NIK was a number once; the digits cannot be trusted."""
    assert fragment in _rejected(cell).reason


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param(f"{NIK_A},{NIK_B}", "several NIKs", id="C4-comma-list"),
        pytest.param(f"{NIK_A}; {NIK_B}", "several NIKs", id="semicolon-list"),
        pytest.param(f"{NIK_A}\n{NIK_B}", "several NIKs", id="newline-list"),
        pytest.param(f"{NIK_A} {NIK_B}", "several NIKs", id="space-list"),
        pytest.param(f"{NIK_A}|x", "'|'", id="C4-pipe"),
        pytest.param(f"{NIK_A}\\", "'\\'", id="C4-backslash"),
        pytest.param(f"{NIK_A}/", "'/'", id="slash"),
        pytest.param(f"{NIK_A},", "','", id="trailing-comma"),
        pytest.param(f"+{NIK_A}", "'+'", id="plus"),
        pytest.param(f"{NIK_A}*", "unexpected character '*'", id="star"),
        pytest.param(f"{NIK_A}\u00ad", "U+00AD", id="soft-hyphen-by-code-point"),
        pytest.param("31740142O3950001", "letters", id="letter-O-for-zero"),
        pytest.param(f"NIK {NIK_A}", "letters", id="label"),
        pytest.param("3174l14203950001", "letters", id="letter-l-for-one"),
        pytest.param("３１７４014203950001", "non-Latin digits", id="full-width-digits"),
        pytest.param("٣١٧٤014203950001", "non-Latin digits", id="arabic-indic-digits"),
        pytest.param(f"{NIK_A}'", "'''", id="trailing-apostrophe"),
        pytest.param(f"''{NIK_A}", "'''", id="two-apostrophes"),
    ],
)
def test_unsafe_characters_are_refused_never_cleaned_away(cell: str, fragment: str) -> None:
    """`,` `|` `\\` `/` letters and lists would change a FHIR search: refused, not stripped."""
    assert fragment in _rejected(cell).reason


def test_every_kemendagri_province_is_accepted() -> None:
    """All 38 province codes are valid, the Papua splits 91–96 included."""
    assert len(PROVINCE_CODES) == 38
    for code in sorted(PROVINCE_CODES):
        assert isinstance(parse_nik(f"{code}74014203950001"), Nik), code


def test_regency_and_district_codes_are_not_checked() -> None:
    """Old regency codes (before a province split) and unusual districts stay valid."""
    result = parse_nik("9199994203950001")
    assert isinstance(result, Nik)
    assert result.province == "91"
