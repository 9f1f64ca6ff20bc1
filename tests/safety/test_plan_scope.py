"""Pure planning rules of issue 3: catch-up scope, keyed fingerprints, newer wins."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from phonesync.catchup import CatchUp, window_start
from phonesync.outcomes import Outcome
from phonesync.plan import build_plan, fingerprint, settle_with_ledger
from phonesync.source.rows import SheetRow

JAKARTA = ZoneInfo("Asia/Jakarta")
D = date(2024, 3, 15)
KEY = b"plan-test-key"
NIK_A = "3174014203950001"
NIK_B = "3174013112850002"
NIK_C = "3174014506880003"


@pytest.mark.parametrize(
    ("days", "epoch", "expected"),
    [
        (7, None, D),  # a fresh ledger: nothing before this run
        (7, D, D),
        (7, D - timedelta(days=2), D - timedelta(days=2)),
        (7, D - timedelta(days=30), D - timedelta(days=7)),
        (1, D - timedelta(days=30), D - timedelta(days=1)),
        (7, D + timedelta(days=3), D),  # a backfill run for an older date than the epoch
    ],
)
def test_window_start(days: int, epoch: date | None, expected: date) -> None:
    """`days` back from the business date, but never before the ledger's first business date."""
    assert window_start(D, days, epoch) == expected


ROWS = [
    SheetRow(2, NIK_A, "0812-1111-2222", "2024-03-15"),  # the date's own row
    SheetRow(3, NIK_B, "0813-3333-4444", "2024-03-13"),  # catch-up, never settled
    SheetRow(4, "3174", "0813-3333-4444", "2024-03-12"),  # catch-up, invalid, never settled
    SheetRow(5, NIK_B, "0819-9999-0000", "2024-03-11"),  # catch-up, settled
    SheetRow(6, NIK_B, "0819-9999-0001", "2024-03-07"),  # before the window
    SheetRow(7, NIK_C, "0819-9999-0002", "2024-03-16"),  # a later date: never this run's
]


@dataclass
class Ledgerish:
    """The ledger's answer at the edge: which fingerprints are settled; remembers the question."""

    settled: set[str]
    asked: list[str]

    def __call__(self, fingerprints: Collection[str]) -> set[str]:
        self.asked.extend(fingerprints)
        return self.settled & set(fingerprints)


def _plan(catch_up: CatchUp | None) -> tuple[list[int], list[tuple[int, Outcome]], set[int]]:
    plan = build_plan(ROWS, business_date=D, zone=JAKARTA, hash_key=KEY, catch_up=catch_up)
    early = sorted((e.result.row, e.result.outcome) for e in plan.early)
    return [w.row for w in plan.work], early, plan.catch_up_rows


def test_daily_mode_takes_only_the_date() -> None:
    """Without catch-up only row 2 is in scope."""
    assert _plan(None) == ([2], [], set())


def test_catch_up_adds_unsettled_rows_of_the_window() -> None:
    """Rows 3 and 4 (never settled) join; 5 (settled), 6 (too old), 7 (later date) do not."""
    ledger = Ledgerish({fingerprint(ROWS[3], KEY)}, [])
    work, early, catch_up = _plan(CatchUp(D - timedelta(days=7), D, ledger))
    assert work == [2, 3]
    assert early == [(4, Outcome.INVALID_NIK)]
    assert catch_up == {3, 4}
    assert sorted(ledger.asked) == sorted(fingerprint(r, KEY) for r in ROWS[1:4])


def test_catch_up_row_competes_with_the_dates_row_for_one_nik() -> None:
    """NIK B on D-2 and on D: the later update wins, the catch-up row is superseded."""
    rows = [*ROWS[:2], SheetRow(8, NIK_B, "0821-0000-1111", "2024-03-15")]
    plan = build_plan(
        rows,
        business_date=D,
        zone=JAKARTA,
        hash_key=KEY,
        catch_up=CatchUp(D - timedelta(days=7), D, Ledgerish(set(), [])),
    )
    assert [w.row for w in plan.work] == [2, 8]
    assert [(e.result.row, e.result.outcome) for e in plan.early] == [(3, Outcome.SUPERSEDED)]


def test_retry_takes_its_rows_whatever_their_date() -> None:
    """A failed catch-up row of D-2 is retried by a retry of run D (NIK hash unchanged)."""
    first = build_plan(ROWS, business_date=D, zone=JAKARTA, hash_key=KEY)
    nik_b = (
        build_plan(
            [SheetRow(3, NIK_B, "0813-3333-4444", "2024-03-15")],
            business_date=D,
            zone=JAKARTA,
            hash_key=KEY,
        )
        .work[0]
        .nik_hash
    )
    retry = build_plan(ROWS, business_date=D, zone=JAKARTA, hash_key=KEY, only_rows={3: nik_b})
    assert [w.row for w in first.work] == [2]
    assert [w.row for w in retry.work] == [3]


@pytest.mark.parametrize(
    ("cells", "key", "same"),
    [
        ((NIK_A, "0812", "2024-03-15"), KEY, True),
        ((NIK_A, "0812 ", "2024-03-15"), KEY, False),  # any edit is a new content
        ((NIK_A, "0812", 45366), KEY, False),  # a number is not the same cell as text
        ((NIK_A, "0812", "2024-03-15"), b"other-key", False),  # keyed
    ],
)
def test_fingerprint_is_keyed_and_sees_every_edit(
    cells: tuple[object, object, object], key: bytes, same: bool
) -> None:
    """Same content and key → same fingerprint; any other cell or key → another one."""
    base = fingerprint(SheetRow(2, NIK_A, "0812", "2024-03-15"), KEY)
    other = fingerprint(SheetRow(9, *cells), key)
    assert (base == other) is same
    assert len(base) == 24


@dataclass(frozen=True)
class State:
    phone_hash: str
    moment: datetime
    business_date: date
    run_id: str
    applied_at: datetime


NIGHT = datetime(2024, 3, 15, 23, 0, tzinfo=JAKARTA)


@pytest.mark.parametrize(
    ("applied_moment", "applied_phone", "applied_at", "read_at", "expected"),
    [
        (NIGHT - timedelta(days=1), "new", NIGHT, NIGHT, None),  # older applied: go on
        (NIGHT + timedelta(hours=1), "other", NIGHT, NIGHT, Outcome.SUPERSEDED),
        (NIGHT, "same", NIGHT, NIGHT, Outcome.UNCHANGED),
        # equal moments, another number: a snapshot read before that was applied loses …
        (NIGHT, "other", NIGHT + timedelta(days=1), NIGHT, Outcome.SUPERSEDED),
        # … a sheet read after it was applied is a newer edit and goes on
        (NIGHT, "other", NIGHT, NIGHT + timedelta(days=1), None),
        (NIGHT, "other", NIGHT + timedelta(days=1), None, None),
    ],
)
def test_settle_with_ledger_newer_wins(
    applied_moment: datetime,
    applied_phone: str,
    applied_at: datetime,
    read_at: datetime | None,
    expected: Outcome | None,
) -> None:
    """The newest applied update wins; equal moments are decided by when the rows were read."""
    plan = build_plan(
        [SheetRow(2, NIK_A, "0812-1111-2222", "2024-03-15 23:00")],
        business_date=D,
        zone=JAKARTA,
        hash_key=KEY,
    )
    item = plan.work[0]
    phone_hash = item.phone_hash if applied_phone == "same" else "f" * 64
    state = State(phone_hash, applied_moment, D, "run-x", applied_at)
    settle_with_ledger(plan, {item.nik_hash: state}, read_at=read_at)
    outcomes = [e.result.outcome for e in plan.early]
    assert outcomes == ([] if expected is None else [expected])
    assert len(plan.work) == (1 if expected is None else 0)


@pytest.mark.parametrize(
    ("later", "held_back"),
    [
        (SheetRow(9, NIK_A, "0813-0000-1111", "2024-03-16"), True),  # the next day
        (SheetRow(9, NIK_A, "12345", "2025-03-15"), True),  # a year typo, invalid phone too
        (SheetRow(9, "3174 0142 0395 0001", "0813-0000-1111", "2024-03-20"), True),  # cleaned
        (SheetRow(9, NIK_B, "0813-0000-1111", "2024-03-16"), False),  # another NIK
        (SheetRow(9, "317401420395000", "0813-0000-1111", "2024-03-16"), False),  # invalid NIK
        (SheetRow(9, NIK_A, "0813-0000-1111", "kemarin"), False),  # unreadable: no order
        (SheetRow(9, NIK_A, "0813-0000-1111", "2024-03-14"), False),  # older
    ],
)
def test_a_row_dated_after_the_run_s_date_holds_its_nik_s_older_rows_back(
    later: SheetRow, held_back: bool
) -> None:
    """Newer wins across dates: a valid NIK's row dated later supersedes the date's row of that
    NIK, naming itself; a row that cannot be tied to the NIK or ordered holds nothing back."""
    rows = [ROWS[0], later]
    plan = build_plan(rows, business_date=D, zone=JAKARTA, hash_key=KEY)
    superseded = [(e.result.row, e.result.reason) for e in plan.early]
    if held_back:
        day = later.updated[:10]
        assert [w.row for w in plan.work] == []
        assert superseded == [
            (
                2,
                f"row 9 for this NIK is dated {day}, after this run's date: that newer update "
                "wins (this older number is not written)",
            )
        ]
    else:
        assert [w.row for w in plan.work] == [2]


def test_a_retry_yields_to_a_row_dated_later_than_its_run() -> None:
    """A retry of run D: its failed row is superseded by a row of its NIK dated after D."""
    nik_a = build_plan([ROWS[0]], business_date=D, zone=JAKARTA, hash_key=KEY).work[0].nik_hash
    rows = [ROWS[0], SheetRow(9, NIK_A, "0813-0000-1111", "2024-03-17")]
    retry = build_plan(rows, business_date=D, zone=JAKARTA, hash_key=KEY, only_rows={2: nik_a})
    assert [w.row for w in retry.work] == []
    assert [(e.result.row, e.result.outcome) for e in retry.early] == [(2, Outcome.SUPERSEDED)]
