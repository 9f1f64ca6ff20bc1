"""Key/value state of `phonesync serve` kept in the ledger (the `service_state` table).

Shared by every replica and kept across restarts: `schedule.paused` is the first key. Values are
short text; nothing personal and no secret is ever stored here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import service_state

SCHEDULE_PAUSED = "schedule.paused"


def get(engine: Engine, key: str) -> str | None:
    """The value stored under `key`, or None."""
    query = sa.select(service_state.c.value).where(service_state.c.key == key)
    with read_transaction(engine) as conn:
        return conn.execute(query).scalar_one_or_none()


def put(
    engine: Engine, key: str, value: str, *, by: str | None = None, now: datetime | None = None
) -> None:
    """Store `value` under `key` (insert or replace) in one transaction."""
    at = now or datetime.now(UTC)
    with write_transaction(engine) as conn:
        updated = conn.execute(
            sa.update(service_state)
            .where(service_state.c.key == key)
            .values(value=value, updated_at=at, updated_by=by)
        )
        if updated.rowcount == 0:
            conn.execute(
                sa.insert(service_state).values(key=key, value=value, updated_at=at, updated_by=by)
            )
