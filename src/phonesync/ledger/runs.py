"""Runs in the ledger: start, finish, look-ups, and the clean-up of runs left by dead processes."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.records import FINAL_STATUSES, TRIGGERS, RunRecord
from phonesync.ledger.schema import run_locks, runs
from phonesync.masking import redact

_ERROR_MAX = 4000


def create(
    engine: Engine,
    *,
    run_id: str,
    business_date: date,
    trigger: str,
    config: Mapping[str, Any],
    dry_run: bool,
    parent_run_id: str | None,
    started_at: datetime,
) -> bool:
    """Insert a run in status `running`, with this process's host and pid; True when it is the
    ledger's first run (no run of any kind, dry runs included, was recorded before)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}; expected one of {sorted(TRIGGERS)}")
    if trigger == "retry" and parent_run_id is None:
        raise ValueError("a retry run needs parent_run_id")
    values = {
        "run_id": run_id,
        "business_date": business_date,
        "trigger": trigger,
        "parent_run_id": parent_run_id,
        "status": "running",
        "dry_run": dry_run,
        "started_at": started_at,
        "config": dict(config),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    with write_transaction(engine) as conn:
        first = conn.execute(sa.select(runs.c.run_id).limit(1)).first() is None
        conn.execute(sa.insert(runs).values(values))
    return first


def finish(
    engine: Engine,
    run_id: str,
    *,
    status: str,
    summary: Mapping[str, Any],
    finished_at: datetime,
    error: str | None,
) -> None:
    """Set a run's final status, summary and (masked) error."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"a run finishes as one of {sorted(FINAL_STATUSES)}, not {status!r}")
    values = {
        "status": status,
        "summary": dict(summary),
        "finished_at": finished_at,
        "error": redact(error)[:_ERROR_MAX] if error else None,
    }
    query = sa.update(runs).where(runs.c.run_id == run_id).values(values)
    with write_transaction(engine) as conn:
        changed = conn.execute(query).rowcount
    if changed != 1:
        raise KeyError(f"no run {run_id!r} in the ledger")


def newest_first(*, include_dry_run: bool = True) -> sa.Select[Any]:
    """All runs, most recently started first (ties: the larger, i.e. later, run id)."""
    query = sa.select(runs)
    if not include_dry_run:
        query = query.where(runs.c.dry_run.is_(False))
    return query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc())


def fetch(engine: Engine, query: sa.Select[Any]) -> list[RunRecord]:
    with read_transaction(engine) as conn:
        return [RunRecord.from_mapping(m) for m in conn.execute(query).mappings()]


def mark_abandoned(
    engine: Engine, *, stale_after_s: float, unlocked_after_s: float, now: datetime
) -> list[str]:
    """Mark `aborted` the `running` runs nobody runs any more; returns their ids, sorted."""
    cutoff = now - timedelta(seconds=stale_after_s)
    joined = runs.outerjoin(run_locks, run_locks.c.run_id == runs.c.run_id)
    stale = sa.or_(
        run_locks.c.heartbeat_at < cutoff,
        sa.and_(
            run_locks.c.run_id.is_(None),
            runs.c.started_at < now - timedelta(seconds=unlocked_after_s),
        ),
    )
    query = sa.select(runs.c.run_id).select_from(joined).where(runs.c.status == "running", stale)
    with write_transaction(engine) as conn:
        ids = sorted(conn.execute(query).scalars())
        if ids:
            abort(conn, ids, now, "abandoned: its process stopped without finishing the run")
            conn.execute(
                sa.delete(run_locks).where(
                    run_locks.c.run_id.in_(ids), run_locks.c.heartbeat_at < cutoff
                )
            )
    return ids


def abort(conn: Connection, run_ids: list[str], now: datetime, error: str) -> None:
    """Mark runs that are still `running` as `aborted` (inside the caller's transaction)."""
    conn.execute(
        sa.update(runs)
        .where(runs.c.run_id.in_(run_ids), runs.c.status == "running")
        .values(status="aborted", finished_at=now, error=error)
    )
