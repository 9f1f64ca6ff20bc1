"""Read-only queries for browsing runs (the dashboard): filtered pages, reasons, progress.

Kept apart from `store.py`, which serves the run itself; these only read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phonesync.ledger import runs as run_queries
from phonesync.ledger.engine import read_transaction
from phonesync.ledger.records import ResultRecord, RunRecord
from phonesync.ledger.schema import row_results, runs
from phonesync.outcomes import Outcome


def _filtered(
    run_id: str, outcomes: Iterable[Outcome | str] | None, reason: str | None
) -> list[sa.ColumnElement[bool]]:
    where = [row_results.c.run_id == run_id]
    if outcomes is not None:
        where.append(row_results.c.outcome.in_([Outcome(o).value for o in outcomes]))
    if reason:
        escaped = reason.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(row_results.c.reason.ilike(f"%{escaped}%", escape="\\"))
    return where


def results_page(
    engine: Engine,
    run_id: str,
    *,
    outcomes: Iterable[Outcome | str] | None = None,
    reason: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[ResultRecord], int]:
    """One page of a run's rows in sheet order (optionally by outcome / reason text), and the
    number of rows matching the filters."""
    where = _filtered(run_id, list(outcomes) if outcomes is not None else None, reason)
    query = (
        sa.select(row_results).where(*where).order_by(row_results.c.row).offset(offset).limit(limit)
    )
    counting = sa.select(sa.func.count()).select_from(row_results).where(*where)
    with read_transaction(engine) as conn:
        found = [ResultRecord.from_mapping(m) for m in conn.execute(query).mappings()]
        total = conn.execute(counting).scalar_one()
    return found, int(total)


def reason_counts(engine: Engine, run_id: str, limit: int = 50) -> list[tuple[str, str, int]]:
    """`(outcome, reason, rows)` for a run's rows that carry a reason, most frequent first."""
    count = sa.func.count().label("n")
    query = (
        sa.select(row_results.c.outcome, row_results.c.reason, count)
        .where(row_results.c.run_id == run_id, row_results.c.reason.is_not(None))
        .group_by(row_results.c.outcome, row_results.c.reason)
        .order_by(count.desc(), row_results.c.outcome)
        .limit(limit)
    )
    with read_transaction(engine) as conn:
        return [(o, r, int(n)) for o, r, n in conn.execute(query)]


def progress_points(engine: Engine, run_id: str) -> list[tuple[datetime, int]]:
    """`(recorded_at, rows recorded then)` per checkpoint batch of a run, oldest first."""
    query = (
        sa.select(row_results.c.recorded_at, sa.func.count())
        .where(row_results.c.run_id == run_id)
        .group_by(row_results.c.recorded_at)
        .order_by(row_results.c.recorded_at)
    )
    with read_transaction(engine) as conn:
        return [(at, int(n)) for at, n in conn.execute(query)]


def results_for_nik(engine: Engine, nik_hash: str, limit: int = 200) -> list[ResultRecord]:
    """Every recorded row of one NIK (by keyed hash) across runs, newest run first."""
    query = (
        sa.select(row_results)
        .join(runs, runs.c.run_id == row_results.c.run_id)
        .where(row_results.c.nik_hash == nik_hash)
        .order_by(runs.c.started_at.desc(), row_results.c.row)
        .limit(limit)
    )
    with read_transaction(engine) as conn:
        return [ResultRecord.from_mapping(m) for m in conn.execute(query).mappings()]


def retries_of(engine: Engine, run_id: str) -> list[RunRecord]:
    """The retry runs started for `run_id`'s failed rows (not dry runs), newest first."""
    query = run_queries.newest_first(include_dry_run=False).where(runs.c.parent_run_id == run_id)
    return run_queries.fetch(engine, query)
