"""Dashboard sessions kept in the ledger (the `dashboard_sessions` table): an allow list.

The session cookie is signed but stateless; on its own it could not be taken back. So every
sign-in stores a session here and the cookie carries its random id: a request is signed in only
while its session is here, not revoked and not past `expires_at` (sign-in + the session
lifetime). Signing out revokes it. The table is shared by every replica and survives restarts
of `phonesync serve`, so a revoked cookie stays revoked. Only a SHA-256 of the id is stored
(someone reading the ledger cannot use a row as a cookie), with the dashboard user's name.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import dashboard_sessions as table


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def open_session(
    engine: Engine, session_id: str, *, actor: str, now: datetime, lifetime: timedelta
) -> None:
    """Store a new session; sessions already past their end are deleted on the way."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(table).where(table.c.expires_at < now))
        conn.execute(
            sa.insert(table).values(
                session_hash=session_hash(session_id),
                actor=actor[:255],
                created_at=now,
                expires_at=now + lifetime,
            )
        )


def is_active(engine: Engine, session_id: str, *, now: datetime) -> bool:
    """Whether this session exists, is not revoked and has not ended."""
    query = sa.select(table.c.expires_at).where(
        table.c.session_hash == session_hash(session_id), table.c.revoked_at.is_(None)
    )
    with read_transaction(engine) as conn:
        ends = conn.execute(query).scalar_one_or_none()
    return ends is not None and ends > now


def revoke(engine: Engine, session_id: str, *, now: datetime) -> None:
    """End a session now (signing out); an unknown id is a no-op."""
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.session_hash == session_hash(session_id), table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
