"""The two bulk writes of `record_results`: row results in, `applied` moved forward.

Statements are built and compiled by SQLAlchemy Core (per dialect, once), then executed with the
driver's executemany on plain tuples. Why not `conn.execute(stmt, dicts)`: SQLAlchemy then runs
every parameter of every row through its processors in Python, which was ~40 % of the time of
recording 20,000 rows. These statements only carry strings, integers, dates and our UTC
timestamps, converted here exactly as `schema.UtcDateTime` would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from phonesync.ledger.schema import applied, row_results, sqlite_timestamp
from phonesync.masking import redact
from phonesync.outcomes import Outcome

if TYPE_CHECKING:
    from phonesync.ledger.store import LedgerRow

#: Outcomes after which the patient's record carries the row's phone number.
APPLIED_OUTCOMES = frozenset({Outcome.UPDATED, Outcome.UNCHANGED})
#: The dialects with an `INSERT … ON CONFLICT` the ledger can use.
UPSERT_INSERTS: dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
_RESULT_COLUMNS = (
    "run_id", "row", "nik_hash", "nik_masked", "phone_masked", "phone_hash", "moment", "outcome",
    "reason", "patient_id", "version_before", "version_after", "attempts", "fingerprint",
    "recorded_at",
)  # fmt: skip
_APPLIED_COLUMNS = (
    "nik_hash", "phone_hash", "moment", "business_date", "run_id", "row", "patient_id",
    "applied_at",
)  # fmt: skip
_compiled: dict[tuple[type[sa.Dialect], str], tuple[str, tuple[str, ...] | None]] = {}


def insert_results(
    conn: Connection, run_id: str, rows: Sequence[LedgerRow], recorded_at: datetime
) -> None:
    """Insert the batch into `row_results` (the unique (run_id, row) refuses duplicates).

    Reasons pass through `masking.redact` once more: they are free text.
    """
    ts = _timestamp_binder(conn)
    at = ts(recorded_at)
    values = [
        (run_id, r.row, r.nik_hash, r.nik_masked, r.phone_masked, r.phone_hash, ts(r.moment),
         r.outcome.value, redact(r.reason) if r.reason else None, r.patient_id, r.version_before,
         r.version_after, r.attempts, r.fingerprint or None, at)
        for r in rows
    ]  # fmt: skip
    _execute_many(conn, "results", _RESULT_COLUMNS, values)


def move_applied(
    conn: Connection,
    run_id: str,
    business_date: date,
    rows: Sequence[LedgerRow],
    applied_at: datetime,
) -> None:
    """Upsert `applied` for the batch's applied rows — only ever to a newer or equal moment."""
    newest: dict[str, LedgerRow] = {}
    for row in rows:
        if row.outcome in APPLIED_OUTCOMES and row.nik_hash and row.moment:
            # One statement must not touch a key twice (PostgreSQL refuses): keep the winner,
            # latest moment first, then the later row — as the plan decides.
            kept = newest.get(row.nik_hash)
            if kept is None or (row.moment, row.row) >= (kept.moment, kept.row):
                newest[row.nik_hash] = row
    if not newest:
        return
    ts = _timestamp_binder(conn)
    day: object = business_date.isoformat() if conn.dialect.name == "sqlite" else business_date
    at = ts(applied_at)
    values = [
        (r.nik_hash, r.phone_hash, ts(r.moment), day, run_id, r.row, r.patient_id, at)
        for r in newest.values()
    ]
    _execute_many(conn, "applied", _APPLIED_COLUMNS, values)


#: Kept when a run only confirms the update already recorded (same moment, same number: an
#: `unchanged` row): the run, row, night and time that applied it. A run that never reached
#: the FHIR server (its pre-flight failed) settles such rows `unchanged` too, and had become the
#: run "that applied" the number in later reasons.
_APPLIER_COLUMNS = ("business_date", "run_id", "row", "applied_at")


def _upsert_applied(dialect_name: str) -> sa.Insert:
    insert = UPSERT_INSERTS[dialect_name](applied)
    excluded = insert.excluded
    same = sa.and_(applied.c.moment == excluded.moment, applied.c.phone_hash == excluded.phone_hash)
    set_: dict[str, Any] = {c.name: excluded[c.name] for c in applied.c if c.name != "nik_hash"}
    for name in _APPLIER_COLUMNS:
        set_[name] = sa.case((same, applied.c[name]), else_=excluded[name])
    return insert.on_conflict_do_update(
        index_elements=[applied.c.nik_hash], set_=set_, where=applied.c.moment <= excluded.moment
    )


_STATEMENTS: dict[str, Callable[[str], sa.Insert]] = {
    "results": lambda _dialect: sa.insert(row_results),
    "applied": _upsert_applied,
}


def _execute_many(
    conn: Connection, kind: str, columns: Sequence[str], values: list[tuple[Any, ...]]
) -> None:
    key = (type(conn.dialect), kind)
    if key not in _compiled:
        stmt = _STATEMENTS[kind](conn.dialect.name)
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        _compiled[key] = (compiled.string, order)
    sql, order = _compiled[key]
    if order is None:  # named parameters (psycopg: %(name)s)
        conn.exec_driver_sql(sql, [dict(zip(columns, v, strict=True)) for v in values])
    elif order == tuple(columns):  # positional (sqlite3: ?), already in our order
        conn.exec_driver_sql(sql, values)
    else:  # pragma: no cover - Core orders an INSERT's parameters as given
        index = [columns.index(name) for name in order]
        conn.exec_driver_sql(sql, [tuple(v[i] for i in index) for v in values])


def _timestamp_binder(conn: Connection) -> Callable[[datetime | None], Any]:
    """What `UtcDateTime` would bind: UTC text on SQLite, an aware UTC datetime elsewhere."""
    if conn.dialect.name == "sqlite":
        return lambda v: None if v is None else sqlite_timestamp(v)
    return lambda v: None if v is None else v.astimezone(UTC)
