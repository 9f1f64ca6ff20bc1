"""Newer wins also against an invalid row: a newer row whose phone is invalid holds older ones back.

Pure planning rules (`build_plan`): the newest row of a NIK with a valid NIK and a readable date
but an invalid phone keeps every older valid row of that NIK from being written (`superseded`,
naming it), on the night itself, against catch-up rows, and from rows settled earlier. A row
whose date cannot be read cannot be ordered and holds nothing back.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from phonesync.catchup import CatchUp
from phonesync.outcomes import Outcome
from phonesync.plan import Plan, build_plan, fingerprint
from phonesync.source.rows import UNSAVED_FORMULA, Cell, SheetRow

JAKARTA = ZoneInfo("Asia/Jakarta")
D = date(2024, 3, 15)
KEY = b"plan-test-key"
NIK_X = "3174014203950001"
NIK_Y = "3174013112850002"
HELD_BACK = (
    "row 13 for this NIK is newer but its phone is invalid: fix that row "
    "(this older number is not written)"
)


def _plan(
    rows: Sequence[SheetRow],
    *,
    settled: Collection[SheetRow] = (),
    catch_up: bool = False,
    only_rows: dict[int, str] | None = None,
) -> Plan:
    window = None
    if catch_up or settled:
        prints = {fingerprint(r, KEY) for r in settled}
        window = CatchUp(D - timedelta(days=7), D, lambda fps: prints & set(fps))
    return build_plan(
        rows, business_date=D, zone=JAKARTA, hash_key=KEY, catch_up=window, only_rows=only_rows
    )


def _early(plan: Plan) -> dict[int, tuple[Outcome, str | None]]:
    return {e.result.row: (e.result.outcome, e.result.reason) for e in plan.early}


def _row(n: int, nik: Cell, phone: Cell, updated: Cell) -> SheetRow:
    return SheetRow(n, nik, phone, updated)


def test_a_newer_row_with_an_invalid_phone_holds_the_older_number_back() -> None:
    """The user test: r12 `0822-2222-2209` 09:00, r13 `0822-CALL-ME` 10:00 → nothing written."""
    plan = _plan(
        [
            _row(12, NIK_X, "0822-2222-2209", "15/03/2024 09:00"),
            _row(13, NIK_X, "0822-CALL-ME", "15/03/2024 10:00"),
        ]
    )
    assert plan.work == []
    early = _early(plan)
    assert early[12] == (Outcome.SUPERSEDED, HELD_BACK)
    assert early[13][0] is Outcome.INVALID_PHONE
    assert all(
        NIK_X not in str(reason) and "2209" not in str(reason) for _, reason in early.values()
    )


def test_every_older_row_stays_unwritten_and_a_newer_valid_row_still_wins() -> None:
    """r11 < r12 < r13 (invalid): neither older one is written; a valid r14 after r13 is."""
    rows = [
        _row(11, NIK_X, "0812-1111-0011", "15/03/2024 08:00"),
        _row(12, NIK_X, "0822-2222-2209", "15/03/2024 09:00"),
        _row(13, NIK_X, "0822-CALL-ME", "15/03/2024 10:00"),
    ]
    plan = _plan(rows)
    assert plan.work == []
    assert _early(plan)[11] == (Outcome.SUPERSEDED, "row 12 has a newer update for this NIK")
    assert _early(plan)[12] == (Outcome.SUPERSEDED, HELD_BACK)

    plan = _plan([*rows, _row(14, NIK_X, "0813-4444-0014", "15/03/2024 11:00")])
    assert [w.row for w in plan.work] == [14]
    assert _early(plan)[12] == (Outcome.SUPERSEDED, "row 14 has a newer update for this NIK")


@pytest.mark.parametrize(
    ("first", "second", "newer"),
    [
        ("15/03/2024 09:00", "15/03/2024 10:00", 13),
        ("15/03/2024 10:00", "15/03/2024 09:00", 12),
        ("15/03/2024", "15/03/2024", 13),  # same timestamp: the later row is the newer one
    ],
)
def test_only_a_newer_invalid_row_holds_back(first: str, second: str, newer: int) -> None:
    """Newer by timestamp, or on equal timestamps by the later row, as newer-wins decides."""
    for invalid in (12, 13):
        rows = [
            _row(n, NIK_X, "12345" if n == invalid else "0822-2222-2209", when)
            for n, when in ((12, first), (13, second))
        ]
        plan = _plan(rows)
        valid = 25 - invalid
        assert [w.row for w in plan.work] == ([] if newer == invalid else [valid])
        if newer == invalid and first == second:
            assert _early(plan)[valid] == (
                Outcome.SUPERSEDED,
                "a later row (13) has an update with the same timestamp for this NIK but its "
                "phone is invalid: fix that row (this number is not written)",
            )


def test_a_formula_phone_with_no_saved_value_holds_back_too() -> None:
    """An XLSX phone formula never saved: what it holds is unknown, but it is the newer row."""
    plan = _plan(
        [
            _row(12, NIK_X, "0822-2222-2209", "15/03/2024 09:00"),
            _row(13, NIK_X, UNSAVED_FORMULA, "15/03/2024 10:00"),
        ]
    )
    assert plan.work == []
    assert _early(plan)[12] == (Outcome.SUPERSEDED, HELD_BACK)


def test_rows_that_name_no_nik_or_another_nik_hold_nothing_back() -> None:
    """A newer invalid row with an invalid NIK, or of another NIK, leaves r12 to be applied."""
    plan = _plan(
        [
            _row(12, NIK_X, "0822-2222-2209", "15/03/2024 09:00"),
            _row(13, NIK_X[:15], "0822-CALL-ME", "15/03/2024 10:00"),  # 15 digits
            _row(14, NIK_Y, "0822-CALL-ME", "15/03/2024 10:00"),
        ]
    )
    assert [w.row for w in plan.work] == [12]


@pytest.mark.parametrize("updated", ["15/13/2024", "", "kemarin"])
def test_a_row_with_an_unreadable_date_holds_nothing_back_and_says_so(updated: str) -> None:
    """It cannot be ordered: the valid row goes on; the invalid_date reason names it."""
    plan = _plan(
        [
            _row(12, NIK_X, "0822-2222-2209", "15/03/2024 09:00"),
            _row(13, NIK_X, "0822-2222-2210", updated),
        ]
    )
    assert [w.row for w in plan.work] == [12]
    outcome, reason = _early(plan)[13]
    assert outcome is Outcome.INVALID_DATE
    assert str(reason).endswith(
        "(row 12 for this NIK has a readable date and is not held back by this row)"
    )
    alone = _plan([_row(13, NIK_X, "0822-2222-2210", updated)])  # no valid row: reason as before
    assert "row 12" not in str(_early(alone)[13][1])


def test_catch_up_rows_are_held_back_by_a_newer_invalid_row_of_the_night() -> None:
    """A catch-up row of D-2 (never settled) and tonight's invalid row for the same NIK."""
    rows = [
        _row(12, NIK_X, "0822-2222-2209", "13/03/2024 09:00"),
        _row(13, NIK_X, "0822-CALL-ME", "15/03/2024 10:00"),
    ]
    plan = _plan(rows, catch_up=True)
    assert plan.catch_up_rows == {12}
    assert plan.work == []
    assert _early(plan)[12] == (Outcome.SUPERSEDED, HELD_BACK)


def test_an_invalid_row_settled_earlier_still_holds_back_an_older_row_added_late() -> None:
    """r13 (D-1 10:00, invalid) was reported by night D-1; r12 (D-1 09:00) was added after that
    night: catch-up takes r12 alone, and r13 — not reported again — still holds it back."""
    r12 = _row(12, NIK_X, "0822-2222-2209", "14/03/2024 09:00")
    r13 = _row(13, NIK_X, "0822-CALL-ME", "14/03/2024 10:00")
    plan = _plan([r12, r13], settled=[r13])
    assert plan.catch_up_rows == {12}
    assert plan.work == []
    assert _early(plan) == {12: (Outcome.SUPERSEDED, HELD_BACK)}

    older = _row(13, NIK_X, "0822-CALL-ME", "14/03/2024 08:00")  # settled, but older than r12
    plan = _plan([r12, older], settled=[older])
    assert [w.row for w in plan.work] == [12]


def test_a_retry_is_held_back_by_a_newer_invalid_row_of_its_date() -> None:
    """A retry takes only its rows; an invalid newer row of the date still holds them back."""
    r12 = _row(12, NIK_X, "0822-2222-2209", "15/03/2024 09:00")
    nik_hash = _plan([r12]).work[0].nik_hash
    plan = _plan(
        [r12, _row(13, NIK_X, "0822-CALL-ME", "15/03/2024 10:00")], only_rows={12: nik_hash}
    )
    assert plan.work == []
    assert _early(plan) == {12: (Outcome.SUPERSEDED, HELD_BACK)}
