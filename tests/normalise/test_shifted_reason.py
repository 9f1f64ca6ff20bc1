"""The reason of a shifted CSV row (`SheetRow.shifted`): the row's usual outcome, a reason that
says the columns are shifted and how to fix the row, and no NIK or phone number in it."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from phonesync.masking import redact
from phonesync.outcomes import Outcome, RowResult
from phonesync.plan import build_plan
from phonesync.source.rows import Cell, SheetRow, ShiftedCells

NIK_A = "3174014203950001"
PHONE = "081234567890"
DAY = date(2024, 3, 15)
JAKARTA = ZoneInfo("Asia/Jakarta")
SHIFT = ShiftedCells(cells=8, header=7, delimiter=",")
SAID = (
    "the row has 8 cells while the header has 7: an unquoted ',' (the file's delimiter) inside "
    "a cell shifted the cells after it to the right; fix the row in the file (put that cell in "
    "double quotes); as read: "
)


def _early(row: SheetRow) -> RowResult:
    plan = build_plan([row], business_date=DAY, zone=JAKARTA, hash_key=b"shift-test")
    assert plan.work == []
    [early] = plan.early
    return early.result


@pytest.mark.parametrize(
    ("cells", "outcome"),
    [
        # the comma before the NIK column: the NIK cell holds the name's second half
        pytest.param((" S.Kom", NIK_A, PHONE), Outcome.INVALID_NIK, id="before-nik"),
        # between NIK and phone: the phone cell holds an address's second half
        pytest.param((NIK_A, " Bogor", PHONE), Outcome.INVALID_PHONE, id="before-phone"),
        # between phone and date: the date cell holds a town's second half
        pytest.param((NIK_A, PHONE, " Jawa Barat"), Outcome.INVALID_DATE, id="before-date"),
    ],
)
def test_a_shifted_invalid_row_keeps_its_outcome_and_says_the_columns_shifted(
    cells: tuple[Cell, Cell, Cell], outcome: Outcome
) -> None:
    """Same outcome as the unmarked row; the reason leads with the shift (counts, the
    delimiter, the fix) and ends with the usual reason, so the outcome still makes sense."""
    plain = SheetRow(9, *cells)
    usual = _early(plain)
    shifted = _early(replace(plain, shifted=SHIFT))
    assert usual.outcome is outcome
    assert shifted.outcome is outcome
    assert shifted.reason == SAID + str(usual.reason)
    assert str(shifted.reason).startswith("the row has 8 cells while the header has 7")


def test_the_delimiter_named_is_the_files() -> None:
    """A `;` file's shift names `;`: the character to look for in the row."""
    reason = _early(SheetRow(3, " S.Kom", NIK_A, PHONE, shifted=ShiftedCells(5, 4, ";"))).reason
    assert str(reason).startswith(
        "the row has 5 cells while the header has 4: an unquoted ';' (the file's delimiter)"
    )


def test_a_shifted_row_whose_key_cells_are_right_stays_valid() -> None:
    """The comma in a column after NIK, phone and date (row 4): the row is applied as usual and
    nothing about a shift is reported for it; beside it a shifted row that reads invalid (row 5)
    is reported with the shift."""
    valid = SheetRow(4, NIK_A, PHONE, "2024-03-15", shifted=SHIFT)
    invalid = SheetRow(5, " S.Kom", NIK_A, PHONE, shifted=SHIFT)
    plan = build_plan([valid, invalid], business_date=DAY, zone=JAKARTA, hash_key=b"shift-test")
    assert [(w.row, w.phone) for w in plan.work] == [(4, "+6281234567890")]
    assert [(e.result.row, e.result.outcome) for e in plan.early] == [(5, Outcome.INVALID_NIK)]
    assert str(plan.early[0].result.reason).startswith(SAID)


def test_a_shifted_reason_holds_no_nik_or_phone() -> None:
    """Counts only: masking has nothing to hide, and no run of 5+ digits is in the text, even
    when the cells read hold a NIK and a phone number in the wrong columns."""
    for cells in [(PHONE, NIK_A, "2024-03-15"), (NIK_A, NIK_A, PHONE), ("x", PHONE, NIK_A)]:
        reason = str(_early(SheetRow(5, *cells, shifted=SHIFT)).reason)
        assert reason.startswith(SAID)
        assert redact(reason) == reason
        assert not re.search(r"[0-9]{5}", reason), reason
