"""Frozen inputs in the ledger: the sealed rows each source-reading run read (table `snapshots`).

The payload is opaque here: `phonesync.snapshot` serialises and encrypts it (Fernet) before it
arrives, so this module never sees a NIK or a phone number. One snapshot per run at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import snapshots


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """One stored input: which run read it, for which date, when, and the sealed rows."""

    id: int
    run_id: str
    business_date: date
    created_at: datetime
    rows: int
    payload: bytes


def save(
    engine: Engine,
    *,
    run_id: str,
    business_date: date,
    created_at: datetime,
    rows: int,
    payload: bytes,
) -> None:
    """Store the sealed rows a run read (the run must exist in `runs`)."""
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(snapshots).values(
                run_id=run_id,
                business_date=business_date,
                created_at=created_at,
                rows=rows,
                payload=payload,
            )
        )


def newest_for(
    engine: Engine, business_date: date, *, not_after: datetime | None = None
) -> SnapshotRecord | None:
    """The newest snapshot of a business date (optionally created no later than `not_after`)."""
    query = sa.select(snapshots).where(snapshots.c.business_date == business_date)
    if not_after is not None:
        query = query.where(snapshots.c.created_at <= not_after)
    query = query.order_by(snapshots.c.created_at.desc(), snapshots.c.id.desc()).limit(1)
    with read_transaction(engine) as conn:
        found = conn.execute(query).mappings().first()
    return None if found is None else _record(found)


def for_run(engine: Engine, run_id: str) -> SnapshotRecord | None:
    """The snapshot a run saved, if any."""
    query = sa.select(snapshots).where(snapshots.c.run_id == run_id)
    with read_transaction(engine) as conn:
        found = conn.execute(query).mappings().first()
    return None if found is None else _record(found)


def _record(found: RowMapping) -> SnapshotRecord:
    return SnapshotRecord(**{k: found[k] for k in SnapshotRecord.__slots__})


def prune(engine: Engine, *, older_than: datetime) -> int:
    """Delete snapshots created before `older_than`; returns how many went."""
    with write_transaction(engine) as conn:
        result = conn.execute(sa.delete(snapshots).where(snapshots.c.created_at < older_than))
        return int(result.rowcount or 0)
