"""`redact()`: long digit runs never come out in clear, whatever their length or grouping.

Field cases from a user test, the masked shapes reports and docs rely on, numbers that are no
personal data, and properties over generated NIKs and phone numbers (hypothesis, deterministic).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonesync.masking import _PROVINCES, mask_nik, redact, register_secret
from phonesync.normalise.nik import PROVINCE_CODES

NIK = "3174014203950001"
PHONE = "082222222201"

deterministic = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)

_RUN_OF_DIGITS = re.compile(r"\d+(?:[ .\-()\u00a0\u2013]{1,3}\d+)*")


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def longest_run(text: str) -> int:
    """The most digits in one run of the output (digits joined by separators)."""
    return max((len(digits(m.group())) for m in _RUN_OF_DIGITS.finditer(text)), default=0)


# --- the field cases -----------------------------------------------------------------------------


def test_a_nik_glued_to_a_phone_number_is_masked() -> None:
    """(1a) 28 digits in one run: was stored, reported and logged in clear."""
    said = redact(f"row 2: failed (PUT rejected: 422 error: {NIK}{PHONE})")
    assert said == "row 2: failed (PUT rejected: 422 error: 3174****************2201)"


def test_a_nik_written_twice_shows_only_what_the_nik_mask_shows() -> None:
    """(1b) NIK plain then grouped: no digit 7–12 may survive (was `…0001*…*0395 0001`)."""
    said = redact(f"NIK {NIK} (3174 0142 0395 0001, +62 812-3456-7890)")
    assert said == "NIK 317401******0001 (317401******0001, +62 *********7890)"


# --- the shapes reports, tests and docs rely on --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NIK, "317401******0001"),
        ("telecom +6282222222222 rejected", "telecom +628******2222 rejected"),
        ("phone 081234567890", "phone 0812****7890"),
        ("0812.3456.7890", "0812******7890"),
        ("wa.me/6281234567890", "wa.me/6281*****7890"),
        ("?identifier=nik%7C3174014203950001", "?identifier=nik%7C317401******0001"),
        ("nik|3174014203950001", "nik|317401******0001"),
        ("3174-0142-0395-0001", "317401******0001"),
        ("NIK3174014203950001", "NIK317401******0001"),
        ("row 2 (3174014203950001)", "row 2 (317401******0001)"),
        (f"{NIK} {PHONE}", "3174****************2201"),
    ],
)
def test_masked_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("812345678", "1234"),  # 9 digits: only the last 4 survive (was `8123*5678`)
        ("0812345678", "081234"),
        ("62.81234567890", "812345"),  # a decimal point, but a phone number
        ("0.81234567890", "812345"),
        ("0.3174014203950001", "420395"),
        ("3174.014203950001", "420395"),
        ("3.17401420395E+15", "420395"),  # a NIK that went through a number
        ("3.174014203950001e+15", "420395"),
        ("hp081234567890", "345678"),  # glued to letters, but a mobile number
        ("phone_081234567890", "345678"),
        ("x317401420395 0001", "420395"),
        ("A3174 0142 0395 0001", "420395"),
        ("+62 (812) 3456 7890", "3456"),
        ("3174\u200b0142\u200b0395\u200b0001", "420395"),
        ("on 2024-03-15 081234567890", "345678"),
    ],
)
def test_digits_that_may_hide_a_nik_or_a_phone_are_masked(text: str, hidden: str) -> None:
    said = redact(text)
    assert hidden not in digits(said), said
    assert longest_run(said) <= 8


@pytest.mark.parametrize(
    "text",
    [
        "max_rate 66.66666666666667",  # was `66.6****6667`
        "waited 0.123456789 s",
        "ratio 33.333333333333336 %",
        "started 2024-03-15 23:00:00 WIB",  # was `2024*****5 23:00:00`
        "read 15-03-2024 23:00",
        "patient P35700566651",
        "run 20261204T055503Z-c39630",
        "1,234 rows in 41.2 s",
        "version djEtMDU4OWY4",
    ],
)
def test_numbers_that_are_no_personal_data_stay(text: str) -> None:
    assert redact(text) == text


def test_a_secret_with_digits_is_removed_whole() -> None:
    """Secrets go first: masking the digits inside one would let the rest of it through."""
    register_secret("tok-1234567890-abc")
    assert redact("Bearer tok-1234567890-abc refused") == "Bearer [secret] refused"


def test_the_province_codes_are_those_of_the_nik_validation() -> None:
    assert _PROVINCES == PROVINCE_CODES


# --- properties ----------------------------------------------------------------------------------

SEPARATORS = st.sampled_from([" ", ".", "-", " - ", "\u00a0", "\u2013", ". "])
CONTEXT = st.text(alphabet="abcPxWA :,;/|!?*=_()[]#\n", max_size=8)


@st.composite
def niks(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(PROVINCE_CODES)))
    place = draw(st.integers(1, 9999))
    day = draw(st.integers(1, 28)) + draw(st.sampled_from([0, 40]))
    month = draw(st.integers(1, 12))
    year = draw(st.integers(0, 99))
    serial = draw(st.integers(1, 9999))
    return f"{province}{place:04d}{day:02d}{month:02d}{year:02d}{serial:04d}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    rest = draw(st.text(alphabet="0123456789", min_size=8, max_size=11))
    prefix = draw(st.sampled_from(["0", "62", "+62", ""]))
    return f"{prefix}8{rest}"


@st.composite
def written(draw: st.DrawFn, number: str) -> str:
    """`number` as a person might write it: some digits grouped by separators."""
    out = [number[0]]
    for char in number[1:]:
        if char.isdigit() and out[-1][-1].isdigit() and draw(st.integers(0, 4)) == 0:
            out.append(draw(SEPARATORS))
        out.append(char)
    return "".join(out)


@deterministic
@given(data=st.data(), nik=niks(), left=CONTEXT, right=CONTEXT)
def test_a_nik_however_written_shows_at_most_the_nik_mask(
    data: st.DataObject, nik: str, left: str, right: str
) -> None:
    text = data.draw(written(nik))
    said = redact(f"{left}{text}{right}")
    assert digits(said) == digits(mask_nik(nik)), (text, said)


@deterministic
@given(data=st.data(), phone=phones(), left=CONTEXT, right=CONTEXT)
def test_a_phone_number_however_written_keeps_at_most_8_digits(
    data: st.DataObject, phone: str, left: str, right: str
) -> None:
    text = data.draw(written(phone))
    said = redact(f"{left}{text}{right}")
    shown = digits(said)
    assert len(shown) <= 8, (text, said)
    assert len(digits(phone)) - len(shown) >= 4, (text, said)


@deterministic
@given(
    data=st.data(),
    nik=niks(),
    phone=phones(),
    joiner=st.sampled_from(["", " ", "-", " - ", "/", ", "]),
    nik_first=st.booleans(),
)
def test_a_nik_next_to_a_phone_number_never_shows_more_than_both_masks(
    data: st.DataObject, nik: str, phone: str, joiner: str, nik_first: bool
) -> None:
    first, second = (nik, phone) if nik_first else (phone, nik)
    text = data.draw(written(first)) + joiner + data.draw(written(second))
    said = redact(f"error: {text}.")
    shown = digits(said)
    assert longest_run(said) <= 8, (text, said)
    assert len(shown) <= 18, (text, said)
    assert len(digits(text)) - len(shown) >= 10, (text, said)


@deterministic
@given(text=st.text(alphabet="0123456789 .-+():eEPx*,/\u00a0", max_size=60))
def test_redact_is_idempotent(text: str) -> None:
    """What `redact` leaves never needs masking again (logs redact texts already redacted)."""
    once = redact(text)
    assert redact(once) == once
