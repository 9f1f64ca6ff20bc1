"""Key/value state kept in the ledger (the `service_state` table).

Shared by every replica and kept across restarts: `schedule.paused` (`phonesync serve`) and
`hash_key.check` (a keyed check value of PHONESYNC_HASH_KEY, see `ledger.hash_key`). Values are
short text; nothing personal and no secret is ever stored here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import service_state

SCHEDULE_PAUSED = "schedule.paused"
HASH_KEY_CHECK = "hash_key.check"


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


def put_if_absent(
    engine: Engine, key: str, value: str, *, by: str | None = None, now: datetime | None = None
) -> str:
    """Store `value` under `key` unless something is stored there; returns what is stored.

    Of two processes racing to store different values, exactly one wins (the primary key decides,
    on SQLite and PostgreSQL) and both get the winner's value back.
    """
    stored = get(engine, key)
    if stored is not None:
        return stored
    at = now or datetime.now(UTC)
    row = {"key": key, "value": value, "updated_at": at, "updated_by": by}
    try:
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(service_state).values(row))
    except IntegrityError:
        stored = get(engine, key)
        if stored is None:  # pragma: no cover - a value is never deleted
            raise
        return stored
    return value
