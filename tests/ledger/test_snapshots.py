"""The `snapshots` table: save, newest per date, per run, pruning."""

from __future__ import annotations

from datetime import date, timedelta

from phonesync.ledger import Ledger
from phonesync.ledger import snapshots as store

from .helpers import DAY, T0, start_run


def _save(ledger: Ledger, run_id: str, *, hours: int, day: date = DAY) -> None:
    start_run(ledger, run_id, business_date=day, started_at=T0 + timedelta(hours=hours))
    store.save(
        ledger.engine,
        run_id=run_id,
        business_date=day,
        created_at=T0 + timedelta(hours=hours),
        rows=hours,
        payload=f"sealed-{run_id}".encode(),
    )


def test_newest_snapshot_of_a_date_wins(ledger: Ledger) -> None:
    """Two runs of D: the later snapshot is replayed; another date is not mixed in."""
    _save(ledger, "r1", hours=0)
    _save(ledger, "r2", hours=2)
    _save(ledger, "r3", hours=5, day=DAY + timedelta(days=1))
    found = store.newest_for(ledger.engine, DAY)
    assert found is not None
    assert (found.run_id, found.payload, found.created_at) == (
        "r2",
        b"sealed-r2",
        T0 + timedelta(hours=2),
    )
    older = store.newest_for(ledger.engine, DAY, not_after=T0 + timedelta(hours=1))
    assert older is not None
    assert older.run_id == "r1"
    assert store.newest_for(ledger.engine, DAY - timedelta(days=1)) is None


def test_snapshot_of_a_run(ledger: Ledger) -> None:
    """`for_run` finds exactly that run's snapshot."""
    _save(ledger, "r1", hours=0)
    start_run(ledger, "r9")
    found = store.for_run(ledger.engine, "r1")
    assert found is not None
    assert found.rows == 0
    assert store.for_run(ledger.engine, "r9") is None


def test_prune_removes_only_older_snapshots(ledger: Ledger) -> None:
    """Created before the cut-off: deleted; at or after it: kept."""
    _save(ledger, "r1", hours=0)
    _save(ledger, "r2", hours=24)
    assert store.prune(ledger.engine, older_than=T0 + timedelta(hours=24)) == 1
    assert store.for_run(ledger.engine, "r1") is None
    assert store.for_run(ledger.engine, "r2") is not None
