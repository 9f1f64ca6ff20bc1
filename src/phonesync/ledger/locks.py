"""One run at a time per ledger, across processes and machines, on SQLite and PostgreSQL alike.

Not one per business date: a run for an older date that starts while a newer date's run is still
writing would plan before the newer run has recorded what it applied, and newer-wins could not
see it — the older number would land on top. So `Ledger` takes the lock under one key for every
date (`ANY_DATE`); the run that holds it names its own business date in `runs`.

The lock is a row in `run_locks` keyed by a date: the primary key makes the INSERT the
arbiter (exactly one of two racing inserts succeeds on both backends). A holder that stops
heartbeating for `stale_after_s` (killed, machine lost) may be taken over; the take-over is a
conditional UPDATE on the heartbeat value that was judged stale, so of two processes taking over at
once only one sees a changed row. A holder whose process ran here and is gone (`kill -9`) is taken
over at once — but not a scale-out run's lock: its plan step exits by design once the work is
queued and hands the lock to the run (`hand_over`, owner `scale-out run of N workers, …`), which
its workers heartbeat; no one PID stands for it, so only silence for `stale_after_s` frees it.

On SQLite, "database is locked" while taking the lock means another process is writing the same
file — most likely a run starting at the same moment: it is contention, not an unreachable
ledger. It is retried; if the file stays locked, the result is `RunInProgress` (exit 5).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from phonesync.errors import RunInProgress
from phonesync.ledger import runs
from phonesync.ledger.engine import is_sqlite_busy, read_transaction, write_transaction
from phonesync.ledger.records import LockRecord
from phonesync.ledger.schema import queue_runs, run_locks
from phonesync.ledger.schema import runs as runs_table

log = logging.getLogger(__name__)

#: The one key `Ledger` locks under, whatever the business date (see the module docstring).
ANY_DATE = date(1, 1, 1)

# Each attempt ends in: acquired, RunInProgress, or a row that changed under us (released or
# taken over in between) — a handful of rounds settles any realistic race.
_ATTEMPTS = 5
#: Pauses between rounds that found the SQLite file locked (each round already waited for
#: the busy timeout inside SQLite).
_BUSY_PAUSES_S = (0.05, 0.2, 0.5, 1.0)
#: How the owner of a scale-out run's lock starts once its plan step handed it over.
SCALEOUT_OWNER = "scale-out run"
#: `queue_runs.state` while the plan step still reads the sheet (`scaleout.queue.PLANNING`).
_PLANNING = "planning"
_OWNER_MAX = 255  # run_locks.owner


def _machine() -> str:
    """This host and PID namespace: a PID means the same process only under the same pair."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def owner_here(pid: int) -> str:
    """`host/pidns:pid` of a process on this machine, as recorded on the run lock."""
    return f"{_machine()}:{pid}"


def scaleout_owner(workers: int, planner: str) -> str:
    """The owner a scale-out run's lock records once queued: the run, not the plan's PID."""
    return f"{SCALEOUT_OWNER} of {workers} workers, planned by {planner}"[:_OWNER_MAX]


def holder_is_dead(owner: str) -> bool:
    """True only when the holder ran here (same host and PID namespace) and its process is gone.

    After `kill -9` the next run need not wait `stale_after_s`. Anything uncertain (another
    machine, an owner in an older format, a PID reused by a live process) counts as alive, and so
    does a scale-out run (`scaleout_owner`): its workers, not one process, keep it alive.
    """
    if owner.startswith(SCALEOUT_OWNER):
        return False
    machine, _, pid = owner.rpartition(":")
    if machine != _machine() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def lock_for(engine: Engine, business_date: date) -> LockRecord | None:
    """The current holder of the date's lock, if any."""
    query = sa.select(run_locks).where(run_locks.c.business_date == business_date)
    with read_transaction(engine) as conn:
        row = conn.execute(query).mappings().first()
    return LockRecord.from_mapping(row) if row else None


def acquire(
    engine: Engine,
    business_date: date,
    run_id: str,
    owner: str,
    *,
    stale_after_s: float,
    now: datetime,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take the date's lock or raise `RunInProgress` naming the run that holds it."""
    holder: LockRecord | None = None
    busy = 0
    for _ in range(_ATTEMPTS + len(_BUSY_PAUSES_S)):
        try:
            if _insert(engine, business_date, run_id, owner, now):
                return
            holder = lock_for(engine, business_date)
            if holder is None:
                continue  # released between our insert and our read: try again
            fresh = _age_s(holder, now) <= stale_after_s and not _process_gone(engine, holder)
            if holder.run_id != run_id and fresh:
                raise RunInProgress(_busy_message(engine, holder, now, stale_after_s))
            if _replace(engine, holder, run_id, owner, now):
                if holder.run_id != run_id:
                    log.warning(
                        "took over the stale run lock%s from run %s (%s), silent for %.0f s",
                        _for(business_date),
                        holder.run_id,
                        holder.owner,
                        _age_s(holder, now),
                    )
                return
        except OperationalError as exc:
            if not is_sqlite_busy(exc):
                raise
            if busy == len(_BUSY_PAUSES_S):
                raise RunInProgress(_locked_message(business_date)) from None
            log.info("the ledger file is locked while taking the run lock; trying again")
            sleep(_BUSY_PAUSES_S[busy])
            busy += 1
    if holder is None:  # pragma: no cover - would need the lock to vanish five times in a row
        raise RunInProgress(f"could not take the run lock{_for(business_date)}: it kept changing")
    raise RunInProgress(_busy_message(engine, holder, now, stale_after_s))


def heartbeat(engine: Engine, business_date: date, run_id: str, now: datetime) -> None:
    """Prove the holder is alive; raise `RunInProgress` if the lock was lost to another run."""
    query = (
        sa.update(run_locks)
        .where(run_locks.c.business_date == business_date, run_locks.c.run_id == run_id)
        .values(heartbeat_at=now)
    )
    with write_transaction(engine) as conn:
        changed = conn.execute(query).rowcount
    if changed != 1:
        holder = lock_for(engine, business_date)
        who = f"run {holder.run_id} ({holder.owner}) holds it" if holder else "nobody holds it"
        raise RunInProgress(
            f"run {run_id} no longer holds the run lock{_for(business_date)}: {who}; stopping"
        )


def hand_over(conn: Connection, run_id: str, owner: str, now: datetime) -> bool:
    """Give `run_id`'s lock a new owner and a fresh heartbeat, in the caller's transaction.

    The scale-out plan step calls it in the transaction that queues the work: from then on the
    lock is the run's (its workers heartbeat it), not the plan process's. False if `run_id` does
    not hold the lock any more (taken over meanwhile): the caller must not queue anything.
    """
    query = (
        sa.update(run_locks)
        .where(run_locks.c.run_id == run_id)
        .values(owner=owner[:_OWNER_MAX], heartbeat_at=now)
    )
    return conn.execute(query).rowcount == 1


def release(engine: Engine, business_date: date, run_id: str) -> None:
    """Give the lock back; does nothing if `run_id` does not hold it (any more)."""
    query = sa.delete(run_locks).where(
        run_locks.c.business_date == business_date, run_locks.c.run_id == run_id
    )
    with write_transaction(engine) as conn:
        conn.execute(query)


def _insert(engine: Engine, business_date: date, run_id: str, owner: str, now: datetime) -> bool:
    values = {
        "business_date": business_date,
        "run_id": run_id,
        "owner": owner,
        "acquired_at": now,
        "heartbeat_at": now,
    }
    try:
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(run_locks).values(values))
    except IntegrityError:
        return False
    return True


def _replace(engine: Engine, old: LockRecord, run_id: str, owner: str, now: datetime) -> bool:
    """Take the lock over from `old` (or refresh our own) unless someone changed it meanwhile."""
    query = (
        sa.update(run_locks)
        .where(
            run_locks.c.business_date == old.business_date,
            run_locks.c.run_id == old.run_id,
            run_locks.c.heartbeat_at == old.heartbeat_at,
        )
        .values(run_id=run_id, owner=owner, heartbeat_at=now)
    )
    if old.run_id == run_id:
        with write_transaction(engine) as conn:
            return conn.execute(query).rowcount == 1
    with write_transaction(engine) as conn:
        if conn.execute(query.values(acquired_at=now)).rowcount != 1:
            return False
        # The silent holder is dead (or as good as): its run will never finish by itself.
        error = f"aborted: its stale run lock was taken over by run {run_id}"
        runs.abort(conn, [old.run_id], now, error)
        return True


def _process_gone(engine: Engine, holder: LockRecord) -> bool:
    """The dead-PID shortcut: the holder's process ran here and is gone — and it was the run.

    A scale-out run past planning is never its plan process (which exits by design), whatever
    owner its lock records (a lock handed over by an older version still names the plan's PID):
    only silence for the stale window frees it. While it is still planning, the plan process
    is the only one at work (workers wait for the queue), so its death frees the lock at once.
    """
    if not holder_is_dead(holder.owner):
        return False
    query = sa.select(queue_runs.c.state).where(queue_runs.c.run_id == holder.run_id)
    with read_transaction(engine) as conn:
        state = conn.execute(query).scalar_one_or_none()
    return state is None or state == _PLANNING


def _holder_date(engine: Engine, holder: LockRecord) -> str:
    """The business date of the run holding the lock (the lock's own key, if it is a date)."""
    if holder.business_date != ANY_DATE:
        return str(holder.business_date)
    found = runs.fetch(engine, runs.newest_first().where(runs_table.c.run_id == holder.run_id))
    return str(found[0].business_date) if found else "another date"


def _age_s(holder: LockRecord, now: datetime) -> float:
    return (now - holder.heartbeat_at).total_seconds()


def _for(key: date) -> str:
    """` for 2024-03-15` for a per-date key; nothing for the ledger-wide one."""
    return "" if key == ANY_DATE else f" for {key}"


def _locked_message(business_date: date) -> str:
    return (
        f"another run is probably starting{_for(business_date)}: the ledger file stayed locked "
        "(database is locked) while taking the run lock; try again when it is done"
    )


def _busy_message(engine: Engine, holder: LockRecord, now: datetime, stale_after_s: float) -> str:
    held = _holder_date(engine, holder)
    return (
        f"another run is in progress (for {held}): run {holder.run_id} "
        f"({holder.owner}) holds the lock, last heartbeat {_age_s(holder, now):.0f} s ago; "
        f"it can be taken over once it is silent for {stale_after_s:.0f} s"
    )
