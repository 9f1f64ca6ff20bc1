"""Engines and transactions for the ledger: SQLite file (default) or PostgreSQL.

SQLite is made fit for two processes on one file: WAL (readers never block the writer), a busy
timeout (a writer waits for the other instead of failing), foreign keys on, and SQLAlchemy — not the
`sqlite3` module — emits BEGIN, so that DDL is transactional and write transactions start with
`BEGIN IMMEDIATE` (they take the write lock up front; a deferred transaction that reads first and
writes later can fail with "database is locked" without waiting).

Switching a fresh file to WAL is the one step SQLite's busy timeout does not cover: while another
connection is switching the same new file, `PRAGMA journal_mode = WAL` answers "database is
locked" at once. It is retried here for up to the busy timeout (two `phonesync run` started at the
same moment on a new ledger must end in one run and one exit 5, never in "cannot be reached").
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from phonesync.errors import LedgerUnavailable
from phonesync.masking import redact

#: How long a SQLite writer waits for another process's transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "phonesync_write"


#: How an absolute SQLite URL is written (four slashes), for messages and docs.
ABSOLUTE_SQLITE_EXAMPLE = "sqlite:////var/lib/phonesync/ledger.sqlite3"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None: another backend, memory, a `file:` URI."""
    parsed = sa.make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def relative_sqlite_path(url: str) -> str | None:
    """The database part of a SQLite URL whose file is relative to the working directory, or
    None: an absolute path, an in-memory database, another backend, not a URL at all.

    `sqlite:///ledger.sqlite3` (three slashes) is `ledger.sqlite3` in whatever directory the
    process starts in — a cron job in `$HOME` and a shell in `/srv` would each get their own
    ledger, and the second would not know what the first applied (newer-wins lost). SQLite does
    not expand `~` either: `sqlite:///~/x` is `./~/x`. In-memory databases (`sqlite://`,
    `sqlite:///:memory:`, a `file:` URI with `mode=memory`) are not files: not relative.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    path = database
    if database.startswith("file:") and str(parsed.query.get("uri", "")).lower() == "true":
        path = database.removeprefix("file:")  # file:/abs, file:///abs, file://host/abs
        if path in ("", ":memory:") or parsed.query.get("mode") == "memory":
            return None
    return None if os.path.isabs(path) else database


def relative_sqlite_problem(url: str) -> str | None:
    """Why a SQLite URL with a relative path cannot be the ledger (one line), or None.

    Shows the URL without its password and says how to write an absolute one.
    """
    database = relative_sqlite_path(url)
    if database is None:
        return None
    parsed = sa.make_url(url)
    shown = url if parsed.password is None else parsed.render_as_string(hide_password=True)
    tilde = " (SQLite does not expand ~)" if database.startswith("~") else ""
    return (
        f"{shown} is a path relative to the working directory{tilde}, so phonesync started "
        "in another directory (cron, a systemd timer) would use another, empty ledger and "
        "forget what was applied; write an absolute path, with four slashes: "
        f"{ABSOLUTE_SQLITE_EXAMPLE}"
    )


def make_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for `url`; creates the parent directory of a SQLite file unless `create=False`."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        # One shared connection, or every checkout would see its own empty database.
        engine = sa.create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        if create and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed)
    _configure_sqlite(engine, wal=database not in ("", ":memory:"))
    return engine


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_sqlite_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database is busy" (SQLITE_BUSY, SQLITE_LOCKED)."""
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(orig)
    return "database is locked" in text or "database is busy" in text


def is_unreachable(exc: BaseException) -> bool:
    """True for a database error that means the ledger cannot be reached or written: connection
    refused or lost, the server gone or restarting, a SQLite file that cannot be opened or
    written (read-only, disk full, still locked after the busy timeout) — not a wrong query."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def unreachable_error(exc: BaseException) -> LedgerUnavailable:
    """`LedgerUnavailable` (exit 6) for `exc`, in one line: the driver's text names host, port
    and database — never the password — and is masked like every other message."""
    text = str(getattr(exc, "orig", None) or exc)
    detail = " ".join(redact(text).split())[:200]
    return LedgerUnavailable(f"the ledger database cannot be reached ({detail})")


def enable_wal(
    cursor: Any,
    *,
    timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another connection holds the file's lock."""
    deadline = clock() + timeout_s
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_sqlite_busy(exc) or clock() >= deadline:
                raise
        sleep(delay)
        delay = min(delay * 2, 0.1)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that will write: committed on success, rolled back on any exception."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction (a consistent snapshot on both backends)."""
    with engine.connect() as conn, conn.begin():
        yield conn
