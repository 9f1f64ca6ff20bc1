"""The ledger's tables (SQLAlchemy Core) — the shape the Alembic revisions in `migrations/` build.

Nothing here holds a clear-text NIK or phone number: only masked text (`317401******0001`) and keyed
HMAC hashes (`masking.keyed_hash`). Every timestamp is stored in UTC and read back timezone-aware on
both SQLite (which keeps no offset) and PostgreSQL (`timestamptz`), see `UtcDateTime`.

A change to these tables needs a new revision in `migrations/versions/`; `tests/ledger` checks that
the migrated database and this metadata agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def sqlite_timestamp(value: datetime) -> str:
    """An aware datetime as SQLite ledger text: UTC, `2024-03-15 16:00:12.000000` (fixed width)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class _SqliteUtcText(sqlite.DATETIME):
    """SQLite DATETIME bound as text we format ourselves (`UtcDateTime` on SQLite).

    Same storage format as SQLAlchemy's (`2024-03-15 16:00:12.000000`, fixed width, so that text
    order is time order), produced by C `isoformat` instead of a `%`-format per value: recording
    20,000 rows spent a third of its time there.
    """

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class UtcDateTime(sa.TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that refuses naive datetimes, stores UTC, reads back aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            # sqlite.DATETIME.__init__ is untyped (*args, **kwargs) in SQLAlchemy.
            return dialect.type_descriptor(_SqliteUtcText())  # type: ignore[no-untyped-call]
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("the ledger stores timezone-aware datetimes only (got a naive one)")
        if dialect.name == "sqlite":
            return sqlite_timestamp(value)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers always give datetimes
            raise TypeError(f"unexpected timestamp value of type {type(value).__name__}")
        # SQLite keeps no offset: what we stored was UTC.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids on PostgreSQL; SQLite only auto-increments a column typed exactly INTEGER.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("business_date", sa.Date(), nullable=False, index=True),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("parent_run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("dry_run", sa.Boolean(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("config", sa.JSON(), nullable=False),
    sa.Column("summary", sa.JSON(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
)

row_results = sa.Table(
    "row_results",
    metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("row", sa.Integer(), nullable=False),
    sa.Column("nik_hash", sa.String(64), nullable=True, index=True),
    sa.Column("nik_masked", sa.String(32), nullable=True),
    sa.Column("phone_masked", sa.String(32), nullable=True),
    sa.Column("phone_hash", sa.String(64), nullable=True),
    sa.Column("moment", UtcDateTime(), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("patient_id", sa.String(128), nullable=True),
    sa.Column("version_before", sa.String(64), nullable=True),
    sa.Column("version_after", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=True, index=True),  # catch-up (0004)
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("run_id", "row"),
)

applied = sa.Table(
    "applied",
    metadata,
    sa.Column("nik_hash", sa.String(64), primary_key=True),
    sa.Column("phone_hash", sa.String(64), nullable=False),
    sa.Column("moment", UtcDateTime(), nullable=False),
    sa.Column("business_date", sa.Date(), nullable=False),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("row", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.String(128), nullable=True),
    sa.Column("applied_at", UtcDateTime(), nullable=False),
    sqlite_with_rowid=False,  # keyed by nik_hash alone: one B-tree instead of table + index
)

run_locks = sa.Table(
    "run_locks",
    metadata,
    sa.Column("business_date", sa.Date(), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("acquired_at", UtcDateTime(), nullable=False),
    sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
)

patient_ids = sa.Table(
    "patient_ids",
    metadata,
    sa.Column("nik_hash", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(128), nullable=False),
    sa.Column("seen_at", UtcDateTime(), nullable=False),
)

# --- scale-out (phonesync.scaleout, docs/scale-out.md): the day's plan as a shared work queue ---
queue_runs = sa.Table(
    "queue_runs",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("business_date", sa.Date(), nullable=False, index=True),
    sa.Column("workers", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # planning → ready → finished
    sa.Column("rows_read", sa.Integer(), nullable=False),
    sa.Column("in_scope", sa.Integer(), nullable=False),
    sa.Column("items", sa.Integer(), nullable=False),
    sa.Column("remaining", sa.Integer(), nullable=False),
    sa.Column("sheet_requests", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # the plan step's checks on the sheet (`sync.source_anomalies`), for the finish (0007):
    # dates, counts and row numbers only; NULL for a run planned before 0007
    sa.Column("source_warnings", sa.JSON(), nullable=True),
)

queue_items = sa.Table(
    "queue_items",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("queue_runs.run_id"), primary_key=True),
    sa.Column("row", sa.Integer(), primary_key=True),
    sa.Column("nik_hash", sa.String(64), nullable=False),
    sa.Column("phone_hash", sa.String(64), nullable=False),
    sa.Column("moment", UtcDateTime(), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=True),
    sa.Column("sealed", sa.LargeBinary(), nullable=False),  # Fernet: NIK and phone, never clear
    sa.Column("status", sa.String(16), nullable=False),  # pending → claimed → done
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("claims", sa.Integer(), nullable=False),
    sa.UniqueConstraint("run_id", "nik_hash"),
    sa.Index("ix_queue_items_run_id_status", "run_id", "status"),
)

queue_workers = sa.Table(
    "queue_workers",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("queue_runs.run_id"), primary_key=True),
    sa.Column("worker", sa.String(255), primary_key=True),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("requests_total", sa.Integer(), nullable=False),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("by_status", sa.JSON(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime(), nullable=False, index=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255), nullable=True),
    sa.Column("result", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("job_id", sa.String(64), nullable=True, index=True),
    sa.Column("run_id", sa.String(64), nullable=True, index=True),
)

#: Frozen inputs (0004): the rows a run read, Fernet-encrypted; see `phonesync.snapshot`.
snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False, unique=True),
    sa.Column("business_date", sa.Date(), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
)

#: Service state (0005): small key/value settings of `phonesync serve`; see `ledger.service_state`.
service_state = sa.Table(
    "service_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=True),
)

#: Dashboard sessions (0006): the allow list of signed-in sessions; see `ledger.sessions`.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)
