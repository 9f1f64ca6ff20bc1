"""normalise_phone / canonical_phone: Indonesian mobile numbers (domain.md §3; C1, C14)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from phonesync.normalise.phone import MULTIPLE_NUMBERS, canonical_phone, normalise_phone
from phonesync.outcomes import Outcome, Rejected


def _rejected(cell: object) -> Rejected:
    result = normalise_phone(cell)
    assert isinstance(result, Rejected), f"accepted: {result!r}"
    assert result.outcome is Outcome.INVALID_PHONE
    assert not re.search(r"[0-9]{5}", result.reason), "reason must not carry the value"
    return result


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("081234567890", "+6281234567890", id="C1-text-with-0"),
        pytest.param(81234567890, "+6281234567890", id="C1-int-safety-net"),
        pytest.param(81234567890.0, "+6281234567890", id="float-exact-integer"),
        pytest.param(6281234567890, "+6281234567890", id="int-with-62"),
        pytest.param("81234567890", "+6281234567890", id="text-leading-0-lost"),
        pytest.param("62811234567", "+62811234567", id="62-without-plus-not-6262"),
        pytest.param("6281234567890", "+6281234567890", id="62-without-plus-13"),
        pytest.param("+6281234567890", "+6281234567890", id="e164"),
        pytest.param("0062812345678", "+62812345678", id="0062-international-prefix"),
        pytest.param("0062 812-3456-7890", "+6281234567890", id="0062-grouped"),
        pytest.param("+62 (0) 812-3456-7890", "+6281234567890", id="C14-control-(0)"),
        pytest.param("+62 0812 3456 7890", "+6281234567890", id="spurious-0-after-62"),
        pytest.param("62 0812 3456 7890", "+6281234567890", id="spurious-0-after-bare-62"),
        pytest.param("(+62) 812-3456-7890", "+6281234567890", id="parenthesised-cc"),
        pytest.param("0812-3456-7890", "+6281234567890", id="hyphens"),
        pytest.param("0812.3456.7890", "+6281234567890", id="dots"),
        pytest.param("(0812) 3456 7890", "+6281234567890", id="parens"),
        pytest.param("0812\u20133456\u20137890", "+6281234567890", id="en-dashes"),
        pytest.param("\u00a00812 3456\u00a07890\u200b", "+6281234567890", id="nbsp-zero-width"),
        pytest.param("WA: 0812 3456 7890", "+6281234567890", id="WA-label"),
        pytest.param("No. HP: 0812-3456-7890", "+6281234567890", id="No-HP-label"),
        pytest.param("Telp. 0812 3456 7890", "+6281234567890", id="Telp-label"),
        pytest.param("WA/0812 3456 7890", "+6281234567890", id="WA-slash-label"),
        pytest.param("HP/WA: 0812-3456-7890", "+6281234567890", id="two-word-label"),
        pytest.param("wa.me/6281234567890", "+6281234567890", id="wa.me"),
        pytest.param("https://wa.me/6281234567890", "+6281234567890", id="wa.me-url"),
        pytest.param("tel:+6281234567890", "+6281234567890", id="tel-uri"),
        pytest.param("81234567890.0", "+6281234567890", id="text-float-.0"),
        pytest.param("6281234567890.00", "+6281234567890", id="text-float-.00"),
        pytest.param("0812345678", "+62812345678", id="shortest-10-digits"),
        pytest.param("0812345678901", "+62812345678901", id="longest-13-digits"),
        pytest.param("08581234567", "+628581234567", id="indosat-0858"),
        pytest.param("0881 2345 6789", "+6288123456789", id="smartfren-0881"),
    ],
)
def test_indonesian_mobiles_become_e164(cell: object, expected: str) -> None:
    """Every way an Indonesian mobile number is written gives the one E.164 `+628…`."""
    assert normalise_phone(cell) == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("'081234567810", "+6281234567810", id="leading-apostrophe"),
        pytest.param("\u2018081234567810", "+6281234567810", id="typographic-left-quote"),
        pytest.param("\u2019081234567810", "+6281234567810", id="typographic-right-quote"),
        pytest.param("'+62 812-3456-7810", "+6281234567810", id="apostrophe-then-e164"),
        pytest.param(" '0812 3456 7810", "+6281234567810", id="space-then-apostrophe"),
        pytest.param("' 0812 3456 7810", "+6281234567810", id="apostrophe-then-space"),
        pytest.param("'WA: 0812 3456 7810", "+6281234567810", id="apostrophe-then-label"),
        pytest.param("''081234567810", "unexpected character '''", id="two-apostrophes"),
        pytest.param("081234567810'", "unexpected character '''", id="trailing-apostrophe"),
        pytest.param("0812'3456'7810", "unexpected character '''", id="inner-apostrophes"),
        pytest.param("'", "phone is empty", id="only-apostrophe"),
        pytest.param("'6.28123E+12", "scientific notation", id="apostrophe-then-E-notation"),
        pytest.param("'12345", "must start with 08, 628 or +628", id="apostrophe-then-not-mobile"),
    ],
)
def test_one_leading_apostrophe_is_the_text_marker(cell: str, expected: str) -> None:
    """One leading `'` (Sheets' text marker, as for a NIK) is cleaned; any other one is refused."""
    if expected.startswith("+"):
        assert normalise_phone(cell) == expected
        assert canonical_phone(cell) == expected
    else:
        assert expected in _rejected(cell).reason


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param("08123456789012", "too long: 14 digits", id="C14-too-long"),
        pytest.param("+62 812 3456 7890 12", "too long: 14 digits", id="too-long-e164"),
        pytest.param("0812-345", "too short: 7 digits", id="C14-too-short"),
        pytest.param("081234567", "too short: 9 digits", id="9-digits"),
        pytest.param("12345", "must start with 08, 628 or +628", id="C14-12345"),
        pytest.param("0215551234", "must start with 08, 628 or +628", id="jakarta-landline"),
        pytest.param("+62215551234", "must start with 08, 628 or +628", id="landline-e164"),
        pytest.param("+6262812345678", "must start with 08, 628 or +628", id="already-+6262"),
        pytest.param("0800123456", "0800/0809", id="0800-toll-free"),
        pytest.param("+62 809 1234 567", "0800/0809", id="0809-premium"),
        pytest.param("+6581234567", "country code other than +62", id="singapore"),
        pytest.param("+0812 3456 7890", "country code other than +62", id="plus-then-0"),
        pytest.param("006581234567", "00 + a country other than 62", id="00-abroad"),
        pytest.param("", "phone is empty", id="empty"),
        pytest.param(" \u00a0\u200b", "phone is empty", id="only-spaces"),
        pytest.param(None, "phone is empty", id="none"),
        pytest.param("-", "no digits", id="dash-placeholder"),
    ],
)
def test_numbers_that_are_not_indonesian_mobiles_are_refused(cell: object, fragment: str) -> None:
    """Wrong length, landlines, 0800/0809, foreign and empty cells are refused with a reason."""
    assert fragment in _rejected(cell).reason


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("0812-3456-7890 / 0813-1111-2222", id="C14-slash"),
        pytest.param("081234567890, 081311112222", id="comma"),
        pytest.param("0812-3456-7890 0813-1111-2222", id="space"),
        pytest.param("0812 3456 7890 atau 0813 1111 2222", id="atau"),
        pytest.param("0812-3456-7890\n0813-1111-2222", id="newline"),
        pytest.param("WA: 0812-1111-2222 HP: 0813-3333-4444", id="two-labels"),
        pytest.param("62811234567/62812345678", id="two-62-without-plus"),
        pytest.param("+6281234567890 +6281311112222", id="two-e164"),
        pytest.param("0812-3456-7890 / 0813-111", id="second-one-short"),
    ],
)
def test_two_numbers_in_one_cell_are_refused(cell: str) -> None:
    """A cell with several numbers is refused with reason "multiple numbers", never split."""
    reason = _rejected(cell).reason
    assert reason == MULTIPLE_NUMBERS
    assert "multiple numbers" in reason


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("0812-CALL-ME", id="keypad-letters"),
        pytest.param("O812345678901", id="letter-O-first"),
        pytest.param("0812 3456 789O", id="letter-O-last"),
        pytest.param("08l2 3456 7890", id="letter-l-for-1"),
        pytest.param("+62 812 3456 7890 (Budi)", id="trailing-name"),
        pytest.param("0812 3456 7890 ext 12", id="extension"),
        pytest.param("HP hilang", id="label-then-words"),
        pytest.param("Budi 0812 3456 7890", id="name-is-not-a-label"),
    ],
)
def test_letters_inside_the_number_are_refused_never_converted(cell: str) -> None:
    """Keypad letters and a letter O for zero would yield a wrong, valid-looking number."""
    assert "letters" in _rejected(cell).reason


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param("6.28123E+12", "scientific notation", id="E-notation"),
        pytest.param("8.1234567890e+10", "scientific notation", id="e-notation-exact-mantissa"),
        pytest.param("81234567890.5", "with decimals", id="text-with-decimals"),
        pytest.param(81234567890.5, "with decimals", id="float-with-decimals"),
        pytest.param(float("nan"), "with decimals", id="nan"),
        pytest.param(float("inf"), "with decimals", id="inf"),
        pytest.param(2.0**53, "too large to be exact", id="float-2^53"),
        pytest.param(-81234567890, "negative", id="negative-int"),
        pytest.param(True, "TRUE/FALSE", id="bool"),
        pytest.param(date(2024, 3, 15), "a date", id="date"),
        pytest.param(b"081234567890", "unsupported type", id="bytes"),
    ],
)
def test_numbers_that_may_have_lost_digits_are_refused(cell: object, fragment: str) -> None:
    """E notation and non-integer numbers cannot be trusted; exact integers can (C1)."""
    assert fragment in _rejected(cell).reason


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [
        pytest.param("０８１２３４５６７８９０", "non-Latin digits", id="full-width"),
        pytest.param("0812*3456*7890", "unexpected character '*'", id="star"),
        pytest.param("0812_3456_7890", "unexpected character '_'", id="underscore"),
        pytest.param("+62 812 +3456 7890", "'+' inside", id="inner-plus"),
        pytest.param("wa.me/6281234567890?text=halo", "character '?'", id="wa.me-with-query"),
        pytest.param("0812­3456­7890", "U+00AD", id="soft-hyphen-by-code-point"),
    ],
)
def test_other_unexpected_characters_are_named(cell: str, fragment: str) -> None:
    """The reason names the offending character (never the number)."""
    assert fragment in _rejected(cell).reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("081234567890", "+6281234567890", id="national"),
        pytest.param("+62 812-3456-7890", "+6281234567890", id="grouped-e164"),
        pytest.param("6281234567890", "+6281234567890", id="62-without-plus"),
        pytest.param("tel:+6281234567890", "+6281234567890", id="tel-uri"),
        pytest.param("62811234567", "+62811234567", id="never-6262"),
        pytest.param("021 555 1234", None, id="landline"),
        pytest.param("################", None, id="masked-by-server"),
        pytest.param("", None, id="empty"),
        pytest.param("0812-3456-7890 / 0813-1111-2222", None, id="two-numbers"),
    ],
)
def test_canonical_phone_normalises_values_already_on_a_record(
    text: str, expected: str | None
) -> None:
    """A record's phone compares as E.164, or None when it is not one Indonesian mobile."""
    assert canonical_phone(text) == expected


def test_canonical_phone_tolerates_non_text() -> None:
    """A non-string telecom value (bad JSON) gives None instead of raising."""
    assert canonical_phone(81234567890) is None  # type: ignore[arg-type]


def test_c8_record_national_format_matches_the_sheets_grouped_e164() -> None:
    """`081234567890` on the record and `+62 812-3456-7890` in the sheet are the same number."""
    assert canonical_phone("081234567890") == normalise_phone("+62 812-3456-7890")
