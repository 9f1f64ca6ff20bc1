"""The `superseded` reason of newer-wins within one sheet: "newer" only when it is newer."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from phonesync.outcomes import Outcome
from phonesync.plan import build_plan
from phonesync.source.rows import SheetRow

JAKARTA = ZoneInfo("Asia/Jakarta")
D = date(2024, 3, 15)
NIK_A = "3174014203950001"


@pytest.mark.parametrize(
    ("first", "second", "winner", "loser", "reason"),
    [
        (
            "15/03/2024",
            "15/03/2024",
            22,
            7,
            "a later row (22) has an update with the same timestamp for this NIK",
        ),
        (
            "2024-03-15 09:00",
            "2024-03-15T09:00:00+07:00",
            22,
            7,
            "a later row (22) has an update with the same timestamp for this NIK",
        ),
        ("2024-03-15 08:00", "2024-03-15 09:00", 22, 7, "row 22 has a newer update for this NIK"),
        ("2024-03-15 10:00", "2024-03-15 09:00", 7, 22, "row 7 has a newer update for this NIK"),
    ],
)
def test_superseded_reason_says_newer_only_for_newer(
    first: str, second: str, winner: int, loser: int, reason: str
) -> None:
    """Equal timestamps: the later row wins "with the same timestamp"; a newer one "newer"."""
    rows = [
        SheetRow(7, NIK_A, "0812-1111-2222", first),
        SheetRow(22, NIK_A, "0813-3333-4444", second),
    ]
    plan = build_plan(rows, business_date=D, zone=JAKARTA, hash_key=b"plan-test-key")
    assert [w.row for w in plan.work] == [winner]
    assert [(e.result.row, e.result.outcome, e.result.reason) for e in plan.early] == [
        (loser, Outcome.SUPERSEDED, reason)
    ]
