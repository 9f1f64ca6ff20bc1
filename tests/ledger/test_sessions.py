"""Dashboard sessions in the ledger: open, active, revoked, ended, pruned — on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from phonesync.ledger import Ledger, sessions
from phonesync.ledger.schema import dashboard_sessions

T0 = datetime(2024, 3, 16, 2, 0, tzinfo=UTC)
EIGHT_HOURS = timedelta(hours=8)


def test_a_session_is_active_until_revoked_or_ended(ledger: Ledger) -> None:
    """Open → active; revoked → not, for good; past its end → not; unknown ids → not."""
    engine = ledger.engine
    sessions.open_session(engine, "a", actor="olga", now=T0, lifetime=EIGHT_HOURS)
    sessions.open_session(engine, "b", actor="olga", now=T0, lifetime=EIGHT_HOURS)
    assert sessions.is_active(engine, "a", now=T0 + timedelta(hours=1))
    sessions.revoke(engine, "a", now=T0 + timedelta(hours=1))
    assert not sessions.is_active(engine, "a", now=T0 + timedelta(hours=1))
    sessions.revoke(engine, "a", now=T0 + timedelta(hours=2))  # twice: still revoked
    assert not sessions.is_active(engine, "a", now=T0 + timedelta(hours=2))
    assert sessions.is_active(engine, "b", now=T0 + EIGHT_HOURS - timedelta(seconds=1))
    assert not sessions.is_active(engine, "b", now=T0 + EIGHT_HOURS)
    assert not sessions.is_active(engine, "never-opened", now=T0)
    sessions.revoke(engine, "never-opened", now=T0)  # a no-op


def test_only_a_hash_of_the_id_is_stored_and_ended_sessions_are_pruned(ledger: Ledger) -> None:
    """The table never holds the id a cookie carries; a sign-in deletes sessions that ended."""
    engine = ledger.engine
    sessions.open_session(engine, "old-secret-id", actor="olga", now=T0, lifetime=EIGHT_HOURS)
    later = T0 + EIGHT_HOURS + timedelta(minutes=1)
    sessions.open_session(engine, "new-secret-id", actor="victor", now=later, lifetime=EIGHT_HOURS)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(dashboard_sessions)).mappings().all()
    assert [r["actor"] for r in rows] == ["victor"]
    assert "new-secret-id" not in str(dict(rows[0]))
    assert rows[0]["session_hash"] == sessions.session_hash("new-secret-id")
