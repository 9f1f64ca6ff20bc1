"""The day's plan as a work queue in PostgreSQL, shared by the workers of one scale-out run.

    open_run(engine, run_id, day, workers, now)            # the plan step, before reading
    fill(engine, run_id, work, sealer, counts, owner=, now=)  # … after: items in, `ready`
    claim(engine, run_id, worker, batch, lease_s, now)     # FOR UPDATE SKIP LOCKED
    complete(engine, run_id, day, worker, rows, stats, now) -> remaining items of the run

`queue_items` keeps the NIK and phone of each item only sealed (`crypto.Sealer`), next to the keyed
hashes the ledger keeps anyway. An item is `pending`, `claimed` by a worker until `lease_until`
(renewed while the worker lives; a dead worker's items are claimed again after it), or `done` —
in the same transaction that records its outcome in `row_results`, so an item is recorded once.
`queue_runs.remaining` counts items not done; the `UPDATE … RETURNING` that brings it to zero
elects the process that finishes the run.

The run lock is the run's from `fill` on (`locks.hand_over`, in the same transaction that opens
the queue): the plan process exits, the workers heartbeat it. A run that lost its lock (taken
over once it was silent for the stale window) hands out no more items.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, RowMapping

from phonesync.crypto import Sealer
from phonesync.errors import RunInProgress
from phonesync.ledger import bulk, locks
from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import queue_items, queue_runs, queue_workers, run_locks, runs
from phonesync.ledger.store import LedgerRow
from phonesync.normalise.nik import Nik
from phonesync.outcomes import Outcome, RowResult
from phonesync.plan import WorkItem
from phonesync.recording import work_row

PENDING, CLAIMED, DONE = "pending", "claimed", "done"
PLANNING, READY, FINISHED = "planning", "ready", "finished"
_INSERT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class QueueRun:
    """One scale-out run's queue, with the status of its run in `runs`."""

    run_id: str
    business_date: date
    workers: int
    state: str
    rows_read: int
    in_scope: int
    items: int
    remaining: int
    sheet_requests: int
    error: str | None
    run_status: str
    #: the plan step's warnings on the sheet (`Counts.source_warnings`); () before 0007
    source_warnings: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, m: RowMapping) -> QueueRun:
        values = {f.name: m[f.name] for f in dataclasses.fields(cls)}
        values["source_warnings"] = tuple(m["source_warnings"] or ())
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Counts:
    """What the plan step learnt about the sheet.

    `source_warnings`: its checks on the sheet itself (`sync.source_anomalies`: no rows for the
    date, rows dated after tomorrow), computed when the plan was made and added by the finish
    to the run's warnings — whoever finishes never sees the plan. Dates, counts and row numbers
    only.
    """

    rows_read: int
    in_scope: int
    sheet_requests: int
    source_warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    """One worker's cumulative FHIR request counters (absolute values, not increments)."""

    requests_total: int = 0
    retries: int = 0
    by_status: Mapping[str, int] = dataclasses.field(default_factory=dict)


def open_run(engine: Engine, run_id: str, business_date: date, workers: int, now: datetime) -> None:
    """Announce the run's queue (state `planning`) so workers wait instead of planning again."""
    values = {
        "run_id": run_id, "business_date": business_date, "workers": workers, "state": PLANNING,
        "rows_read": 0, "in_scope": 0, "items": 0, "remaining": 0, "sheet_requests": 0,
        "created_at": now,
    }  # fmt: skip
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(queue_runs).values(values))


def fill(
    engine: Engine,
    run_id: str,
    work: Sequence[WorkItem],
    sealer: Sealer,
    counts: Counts,
    *,
    owner: str,
    now: datetime,
) -> None:
    """Insert the work items (sealed), open the queue (`ready`), hand the lock to the run.

    One transaction: the lock gets `owner` (`locks.scaleout_owner`) and a fresh heartbeat, so no
    later process judges the run by the plan process's PID. Raises `RunInProgress` (and queues
    nothing) if the run no longer holds the lock.
    """
    with write_transaction(engine) as conn:
        if not locks.hand_over(conn, run_id, owner, now):
            raise RunInProgress(
                f"run {run_id} lost the run lock while planning (another run took it over); "
                "nothing was queued"
            )
        for chunk in _chunks(work, _INSERT_CHUNK):
            conn.execute(sa.insert(queue_items), [_item_values(run_id, w, sealer) for w in chunk])
        conn.execute(
            sa.update(queue_runs)
            .where(queue_runs.c.run_id == run_id)
            .values(
                state=READY,
                items=len(work),
                remaining=len(work),
                rows_read=counts.rows_read,
                in_scope=counts.in_scope,
                sheet_requests=counts.sheet_requests,
                source_warnings=list(counts.source_warnings),
            )
        )


def _item_values(run_id: str, item: WorkItem, sealer: Sealer) -> dict[str, Any]:
    secret = json.dumps({"nik": dataclasses.asdict(item.nik), "phone": item.phone})
    return {
        "run_id": run_id, "row": item.row, "nik_hash": item.nik_hash,
        "phone_hash": item.phone_hash, "moment": item.moment, "fingerprint": item.fingerprint,
        "sealed": sealer.seal(secret.encode()), "status": PENDING, "claims": 0,
    }  # fmt: skip


def _unseal(m: RowMapping, sealer: Sealer) -> WorkItem:
    secret = json.loads(sealer.unseal(bytes(m["sealed"])))
    return WorkItem(
        row=m["row"],
        nik=Nik(**secret["nik"]),
        phone=secret["phone"],
        moment=m["moment"],
        nik_hash=m["nik_hash"],
        phone_hash=m["phone_hash"],
        fingerprint=m["fingerprint"] or "",
    )


def _select_runs() -> sa.Select[Any]:
    return sa.select(*queue_runs.c, runs.c.status.label("run_status")).join(
        runs, runs.c.run_id == queue_runs.c.run_id
    )


def latest_for(engine: Engine, business_date: date) -> QueueRun | None:
    """The newest scale-out run of a business date, if any."""
    query = (
        _select_runs()
        .where(queue_runs.c.business_date == business_date)
        .order_by(queue_runs.c.created_at.desc(), queue_runs.c.run_id.desc())
        .limit(1)
    )
    with read_transaction(engine) as conn:
        m = conn.execute(query).mappings().first()
    return QueueRun.from_mapping(m) if m else None


def get(engine: Engine, run_id: str) -> QueueRun | None:
    with read_transaction(engine) as conn:
        m = conn.execute(_select_runs().where(queue_runs.c.run_id == run_id)).mappings().first()
    return QueueRun.from_mapping(m) if m else None


def claim(
    engine: Engine,
    run_id: str,
    worker: str,
    *,
    batch: int,
    lease_s: float,
    now: datetime,
    sealer: Sealer,
) -> list[tuple[WorkItem, int]]:
    """Claim up to `batch` items: pending ones, or claimed ones whose lease ran out.

    Returns each item with how many times it has been claimed (this claim included). Rows
    another worker is claiming at this moment are skipped (SKIP LOCKED), never waited for.
    Nothing while the run does not hold the run lock (taken over, or released at the finish).
    """
    available = sa.or_(
        queue_items.c.status == PENDING,
        sa.and_(queue_items.c.status == CLAIMED, queue_items.c.lease_until < now),
    )
    locked = sa.exists().where(run_locks.c.run_id == run_id)
    pick = (
        sa.select(queue_items)
        .where(queue_items.c.run_id == run_id, available, locked)
        .order_by(queue_items.c.row)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    with write_transaction(engine) as conn:
        found = list(conn.execute(pick).mappings())
        if not found:
            return []
        conn.execute(
            sa.update(queue_items)
            .where(queue_items.c.run_id == run_id, queue_items.c.row.in_([m["row"] for m in found]))
            .values(
                status=CLAIMED,
                worker=worker,
                lease_until=now + timedelta(seconds=lease_s),
                claims=queue_items.c.claims + 1,
            )
        )
    return [(_unseal(m, sealer), m["claims"] + 1) for m in found]


def renew(engine: Engine, run_id: str, worker: str, *, lease_s: float, now: datetime) -> int:
    """Extend the leases of this worker's claimed items; returns how many it holds."""
    query = (
        sa.update(queue_items)
        .where(
            queue_items.c.run_id == run_id,
            queue_items.c.worker == worker,
            queue_items.c.status == CLAIMED,
        )
        .values(lease_until=now + timedelta(seconds=lease_s))
    )
    with write_transaction(engine) as conn:
        return conn.execute(query).rowcount


def release(engine: Engine, run_id: str, worker: str) -> int:
    """Give this worker's claimed items back (a clean stop); returns how many."""
    query = (
        sa.update(queue_items)
        .where(
            queue_items.c.run_id == run_id,
            queue_items.c.worker == worker,
            queue_items.c.status == CLAIMED,
        )
        .values(status=PENDING, worker=None, lease_until=None)
    )
    with write_transaction(engine) as conn:
        return conn.execute(query).rowcount


def complete(
    engine: Engine,
    run_id: str,
    business_date: date,
    worker: str,
    rows: Sequence[LedgerRow],
    totals: WorkerTotals,
    now: datetime,
) -> int:
    """Record outcomes of items this worker still holds, mark them done; returns `remaining`.

    Rows whose item is no longer this worker's (its lease ran out and another worker claimed
    it) are not recorded: that worker records them. One transaction for all of it.
    """
    with write_transaction(engine) as conn:
        mine = _mark_done(conn, run_id, [r.row for r in rows], worker=worker)
        kept = [r for r in rows if r.row in mine]
        _record(conn, run_id, business_date, kept, now)
        _save_totals(conn, run_id, worker, totals, len(kept), now)
        return _count_down(conn, run_id, len(mine))


def fail_open(
    engine: Engine,
    run_id: str,
    business_date: date,
    *,
    reason: str,
    worker: str | None,
    sealer: Sealer,
    now: datetime,
    claimed_reason: str | None = None,
    in_flight: Collection[int] = (),
    in_flight_reason: str | None = None,
) -> tuple[int, int]:
    """Record every item nobody is working on as `failed` (`reason`); returns (failed, remaining).

    Nobody is working on: pending items, items whose lease ran out, and `worker`'s own claims.
    Items under another live worker's lease are left to that worker. With `claimed_reason`,
    items some worker had claimed (and may have written before it stopped) get that instead.
    `worker`'s own claims are judged by what it knows: its rows in `in_flight` (handed to the
    updater, no result back: a request may have been sent) get `in_flight_reason` (or
    `claimed_reason`); the others it never started count only the claims before its own, so a
    row no one else had claimed keeps `reason` ("not attempted").
    """
    idle = sa.or_(
        queue_items.c.status == PENDING,
        sa.and_(queue_items.c.status == CLAIMED, queue_items.c.lease_until < now),
        sa.and_(queue_items.c.status == CLAIMED, queue_items.c.worker == worker),
    )
    pick = (
        sa.select(queue_items)
        .where(queue_items.c.run_id == run_id, idle)
        .with_for_update(skip_locked=True)
    )
    with write_transaction(engine) as conn:
        found = list(conn.execute(pick).mappings())
        items = [_unseal(m, sealer) for m in found]
        reasons = {
            m["row"]: _open_reason(
                m, worker, reason, claimed_reason, in_flight, in_flight_reason or claimed_reason
            )
            for m in found
        }
        failed = _mark_done(conn, run_id, [i.row for i in items], worker=None)
        rows = [
            work_row(i, RowResult(row=i.row, outcome=Outcome.FAILED, reason=reasons[i.row]))
            for i in items
            if i.row in failed
        ]
        _record(conn, run_id, business_date, rows, now)
        return len(failed), _count_down(conn, run_id, len(failed))


def _open_reason(
    m: RowMapping,
    worker: str | None,
    reason: str,
    claimed_reason: str | None,
    in_flight: Collection[int],
    in_flight_reason: str | None,
) -> str:
    """`fail_open`'s reason for one item: may a request have been sent for it?"""
    mine = worker is not None and m["status"] == CLAIMED and m["worker"] == worker
    if mine and m["row"] in in_flight:
        return in_flight_reason or reason
    earlier = m["claims"] - 1 if mine else m["claims"]  # claims before `worker`'s own
    return claimed_reason if claimed_reason is not None and earlier > 0 else reason


def _mark_done(conn: Connection, run_id: str, rows: list[int], *, worker: str | None) -> set[int]:
    done: set[int] = set()
    for chunk in _chunks(rows, _INSERT_CHUNK):
        query = sa.update(queue_items).where(
            queue_items.c.run_id == run_id,
            queue_items.c.row.in_(chunk),
            queue_items.c.status != DONE,
        )
        if worker is not None:
            query = query.where(queue_items.c.worker == worker, queue_items.c.status == CLAIMED)
        query = query.values(status=DONE, lease_until=None).returning(queue_items.c.row)
        done |= set(conn.execute(query).scalars())
    return done


def _record(
    conn: Connection, run_id: str, business_date: date, rows: Sequence[LedgerRow], at: datetime
) -> None:
    if rows:
        bulk.insert_results(conn, run_id, rows, at)
        bulk.move_applied(conn, run_id, business_date, rows, at)


def _save_totals(
    conn: Connection, run_id: str, worker: str, totals: WorkerTotals, rows: int, at: datetime
) -> None:
    values = {
        "run_id": run_id, "worker": worker, "rows": rows, "requests_total": totals.requests_total,
        "retries": totals.retries, "by_status": dict(totals.by_status), "updated_at": at,
    }  # fmt: skip
    insert = postgresql.insert(queue_workers).values(values)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[queue_workers.c.run_id, queue_workers.c.worker],
            set_={
                "rows": queue_workers.c.rows + rows,
                "requests_total": totals.requests_total,
                "retries": totals.retries,
                "by_status": dict(totals.by_status),
                "updated_at": at,
            },
        )
    )


def _count_down(conn: Connection, run_id: str, done: int) -> int:
    query = (
        sa.update(queue_runs)
        .where(queue_runs.c.run_id == run_id)
        .values(remaining=queue_runs.c.remaining - done)
        .returning(queue_runs.c.remaining)
    )
    return int(conn.execute(query).scalar_one())


def set_error(engine: Engine, run_id: str, error: str) -> None:
    """Remember why the run cannot complete (the first reason wins); workers stop claiming."""
    query = (
        sa.update(queue_runs)
        .where(queue_runs.c.run_id == run_id, queue_runs.c.error.is_(None))
        .values(error=error)
    )
    with write_transaction(engine) as conn:
        conn.execute(query)


def mark_finished(engine: Engine, run_id: str) -> bool:
    """Close the queue; true for exactly one caller (the one that finishes the run)."""
    query = (
        sa.update(queue_runs)
        .where(queue_runs.c.run_id == run_id, queue_runs.c.state != FINISHED)
        .values(state=FINISHED)
    )
    with write_transaction(engine) as conn:
        return conn.execute(query).rowcount == 1


def request_totals(engine: Engine, run_id: str) -> WorkerTotals:
    """The FHIR request counters of every worker of the run, added up."""
    query = sa.select(queue_workers).where(queue_workers.c.run_id == run_id)
    total, retries, by_status = 0, 0, dict[str, int]()
    with read_transaction(engine) as conn:
        for m in conn.execute(query).mappings():
            total += m["requests_total"]
            retries += m["retries"]
            for status, n in (m["by_status"] or {}).items():
                by_status[status] = by_status.get(status, 0) + n
    return WorkerTotals(total, retries, by_status)


def live_claims(engine: Engine, run_id: str, now: datetime) -> int:
    """Items claimed under a lease that has not run out."""
    query = sa.select(sa.func.count()).where(
        queue_items.c.run_id == run_id,
        queue_items.c.status == CLAIMED,
        queue_items.c.lease_until >= now,
    )
    with read_transaction(engine) as conn:
        return int(conn.execute(query).scalar_one())


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
