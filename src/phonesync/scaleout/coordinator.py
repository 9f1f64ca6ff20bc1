"""The two ends of a scale-out run: the plan step (`phonesync plan`) and the finish.

The plan step is the first half of an ordinary run (`sync.plan_and_record_early`: the sheet is
read once, validated, de-duplicated, settled against the ledger, early outcomes recorded) under
the run lock; the work items then go into the queue, sealed, and in the same transaction the lock
is handed to the run (`locks.hand_over`: owner `scale-out run of N workers, planned by host:pid`,
fresh heartbeat). It stays with the run until it finishes — the workers heartbeat it — and the
plan process, which exits by design, no longer stands for it: its dead PID frees nothing.
The finish is done once, by whoever completes the last item (or `phonesync plan --finish`):
outcome counts from `row_results`, FHIR request counters of every worker, the same status rules,
warnings and summary as a single-process run. The checks on the sheet itself ("no rows for D",
rows dated after tomorrow: `sync.source_anomalies`) need the plan, which the finishing process
never sees: the plan step computes them and stores their texts with the queued run
(`queue.Counts.source_warnings`), and the finish adds them after its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from phonesync.crypto import Sealer
from phonesync.errors import ConfigError, PhonesyncError, RunAborted, RunInProgress
from phonesync.ledger import locks
from phonesync.ledger.store import Ledger, default_owner, new_run_id
from phonesync.masking import redact
from phonesync.outcomes import Outcome
from phonesync.report import RunStats
from phonesync.scaleout import queue
from phonesync.settings import Settings
from phonesync.source.rows import RowSource
from phonesync.sync import (
    RunRequest,
    check_hash_key,
    plan_and_record_early,
    run_anomalies,
    run_verdict,
    source_anomalies,
    source_dates_for,
)

log = logging.getLogger("phonesync.scaleout")

#: Outcomes of rows whose patient look-up the FHIR server answered.
LOOKED_UP = (
    Outcome.UPDATED,
    Outcome.UNCHANGED,
    Outcome.PATIENT_NOT_FOUND,
    Outcome.AMBIGUOUS_PATIENT,
    Outcome.IDENTITY_MISMATCH,
)

HEARTBEAT_S = 30.0

#: `plan --finish`: the reason of an item no worker claimed, and of one a worker had claimed.
FINISHED_UNCLAIMED = "not attempted: run finished by an operator (phonesync plan --finish)"
FINISHED_CLAIMED = (
    "interrupted: run finished by an operator (phonesync plan --finish); this row may have been "
    "written by a worker that stopped: the next run checks the record (and ends it unchanged "
    "if so)"
)


def heartbeat_every(settings: Settings) -> float:
    """How often the plan step beats the run lock: well inside the stale window."""
    return min(HEARTBEAT_S, settings.lock_stale_s / 3)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PlanOutcome:
    """The plan step's result: the run, how many items were queued, and its summary if it ended."""

    run_id: str
    items: int
    summary: dict[str, Any] | None = None
    error: RunAborted | None = field(default=None)


def require_postgres(settings: Settings) -> None:
    """Scale-out coordinates through PostgreSQL row locks; SQLite has no SKIP LOCKED."""
    backend = sa.make_url(settings.database_url).get_backend_name()
    if backend != "postgresql":
        raise ConfigError(
            "scale-out (phonesync plan / worker) needs a PostgreSQL ledger "
            "(PHONESYNC_DATABASE_URL=postgresql+psycopg://…); with SQLite run one process: "
            "phonesync run"
        )


def sealer_for(settings: Settings) -> Sealer:
    if settings.snapshot_key is None:
        raise ConfigError(
            "scale-out stores the day's work items encrypted: set PHONESYNC_SNAPSHOT_KEY "
            "(make one with `phonesync keygen`), the same for the plan step and every worker"
        )
    return Sealer(settings.snapshot_key.get_secret_value())


async def plan_night(
    settings: Settings,
    ledger: Ledger,
    source: RowSource,
    request: RunRequest,
    workers: int,
    *,
    now: Callable[[], datetime] = _now,
) -> PlanOutcome:
    """Read and plan the night once, queue its work for `workers` workers; keep the run lock."""
    require_postgres(settings)
    sealer = sealer_for(settings)
    stats = RunStats(
        run_id=new_run_id(now()),
        business_date=request.business_date,
        trigger=request.trigger,
        started_at=now(),
    )
    day = request.business_date
    check_hash_key(settings, ledger, now())  # the key the ledger was written with, or exit 2
    ledger.mark_abandoned_runs(stale_after_s=settings.lock_stale_s, now=now())
    planner = default_owner()  # holds the lock while reading; the run's once queued (`fill`)
    ledger.acquire_lock(day, stats.run_id, planner, stale_after_s=settings.lock_stale_s,
                        now=now())  # fmt: skip
    config = settings.effective_config() | {"scaleout_workers": workers}
    ledger.create_run(run_id=stats.run_id, business_date=day, trigger=request.trigger,
                      config=config, dry_run=False, started_at=stats.started_at)  # fmt: skip
    queue.open_run(ledger.engine, stats.run_id, day, workers, now())
    log.info("scale-out run planning", extra={"run_id": stats.run_id, "workers": workers})
    every = heartbeat_every(settings)
    beat = asyncio.create_task(_heartbeat(ledger, day, stats.run_id, now, every))
    try:
        plan = await plan_and_record_early(settings, ledger, source, request, stats, now=now)
    except RunAborted as exc:
        log.error("the plan step failed: %s", redact(str(exc)), extra={"run_id": stats.run_id})
        return _failed(ledger, settings, stats.run_id, exc, now)
    except Exception as exc:
        log.exception("the plan step failed", extra={"run_id": stats.run_id})
        error = RunAborted(f"internal error: {type(exc).__name__}: {redact(str(exc))}")
        outcome = _failed(ledger, settings, stats.run_id, error, now)
        if isinstance(exc, PhonesyncError):
            raise  # e.g. a configuration error: its own exit code, the run is recorded failed
        return outcome
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    dates = source_dates_for(settings, request, plan, now())  # None for a retry
    checked = (
        [] if dates is None else source_anomalies(day, dates, quiet_nights=settings.quiet_nights)
    )
    for warning in checked:
        log.warning(
            "the sheet looks broken (the finish reports it): %s",
            warning,
            extra={"run_id": stats.run_id},
        )
    counts = queue.Counts(plan.rows_read, plan.in_scope, stats.sheet_requests, tuple(checked))
    owner = locks.scaleout_owner(workers, planner)
    queue.fill(ledger.engine, stats.run_id, plan.work, sealer, counts, owner=owner, now=now())
    log.info(
        "scale-out plan ready",
        extra={"run_id": stats.run_id, "in_scope": plan.in_scope, "to_apply": len(plan.work)},
    )
    summary = None if plan.work else finish_run(ledger, settings, stats.run_id, now=now)
    return PlanOutcome(stats.run_id, len(plan.work), summary)


def _failed(
    ledger: Ledger, settings: Settings, run_id: str, error: RunAborted, now: Callable[[], datetime]
) -> PlanOutcome:
    queue.set_error(ledger.engine, run_id, str(error))
    return PlanOutcome(run_id, 0, finish_run(ledger, settings, run_id, now=now), error)


async def _heartbeat(
    ledger: Ledger, day: date, run_id: str, now: Callable[[], datetime], every: float
) -> None:
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(ledger.heartbeat, day, run_id, now())


def finish_run(
    ledger: Ledger,
    settings: Settings,
    run_id: str,
    *,
    now: Callable[[], datetime] = _now,
    status: str | None = None,
) -> dict[str, Any] | None:
    """Finish the run once: status, summary, lock released; None if someone else already did."""
    if not queue.mark_finished(ledger.engine, run_id):
        return None
    qrun = queue.get(ledger.engine, run_id)
    run = ledger.get_run(run_id)
    if qrun is None or run is None:  # pragma: no cover - mark_finished found the row
        raise KeyError(f"no scale-out run {run_id!r}")
    totals = queue.request_totals(ledger.engine, run_id)
    stats = RunStats(
        run_id=run_id,
        business_date=run.business_date,
        trigger=run.trigger,
        started_at=run.started_at,
        rows_read=qrun.rows_read,
        in_scope=qrun.in_scope,
        outcomes=ledger.outcome_counts(run_id),
        requests_total=totals.requests_total,
        retries=totals.retries,
        by_status=dict(totals.by_status),
        sheet_requests=qrun.sheet_requests,
        error=qrun.error,
    )
    recorded = sum(stats.outcomes.values())
    if qrun.state != queue.PLANNING and recorded != qrun.in_scope:
        log.error("run %s: %d outcomes recorded for %d rows in scope", run_id, recorded,
                  qrun.in_scope)  # fmt: skip
    # Workers do not count searches: every row whose look-up the server answered ended in one
    # of these outcomes, which is what the not-found check needs.
    stats.searched = sum(stats.outcomes.get(o.value, 0) for o in LOOKED_UP)
    if status is None and not qrun.error:
        stats.warnings = run_anomalies(
            stats,
            not_found_threshold=settings.not_found_threshold,
            invalid_threshold=settings.invalid_threshold,
            repeated_not_found=ledger.repeated_not_found(run_id),
        ) + list(qrun.source_warnings)  # the plan step's checks on the sheet, as `run` adds them
        for warning in stats.warnings:
            log.warning("run completed with failures: %s", warning, extra={"run_id": run_id})
        stats.error = "; ".join(stats.warnings) or None
    failed = "failed" if qrun.error else None
    stats.status = status or failed or run_verdict(stats, settings.failure_threshold)
    stats.finished_at = now()
    summary = stats.as_summary()
    ledger.finish_run(run_id, status=stats.status, summary=summary,
                      finished_at=stats.finished_at, error=stats.error)  # fmt: skip
    ledger.release_lock(run.business_date, run_id)
    log.info(
        "run finished",
        extra={"run_id": run_id, "status": stats.status, "in_scope": stats.in_scope},
    )
    return summary


def finish_by_operator(
    ledger: Ledger, settings: Settings, business_date: date, *, now: Callable[[], datetime] = _now
) -> dict[str, Any]:
    """`phonesync plan --finish`: end the date's open scale-out run now.

    Items nobody works on (pending, or under a lease that ran out) are recorded `failed`; items
    under a live worker's lease make it refuse (`RunInProgress`) — wait for the worker, or for
    its lease to run out. An item no worker ever claimed is "not attempted"; one a worker had
    claimed may have been written before that worker stopped (killed mid-request), so its
    reason says so (`FINISHED_CLAIMED`): the next run reads the record before writing.
    """
    require_postgres(settings)
    qrun = queue.latest_for(ledger.engine, business_date)
    if qrun is None or qrun.run_status != "running" or qrun.state == queue.FINISHED:
        raise ConfigError(f"no open scale-out run for {business_date} (see `phonesync runs`)")
    live = queue.live_claims(ledger.engine, qrun.run_id, now())
    if live:
        raise RunInProgress(
            f"run {qrun.run_id}: workers still hold {live} items under a live lease; let them "
            f"finish or wait until their lease runs out (PHONESYNC_SCALEOUT_LEASE_S)"
        )
    failed, _ = queue.fail_open(
        ledger.engine, qrun.run_id, business_date, reason=FINISHED_UNCLAIMED, worker=None,
        sealer=sealer_for(settings), now=now(), claimed_reason=FINISHED_CLAIMED,
    )  # fmt: skip
    if failed:
        queue.set_error(ledger.engine, qrun.run_id, f"finished by an operator: {failed} rows "
                        "not done (not attempted, or claimed by workers that stopped)")  # fmt: skip
    summary = finish_run(ledger, settings, qrun.run_id, now=now,
                         status="aborted" if failed else None)  # fmt: skip
    if summary is None:
        raise RunInProgress(f"run {qrun.run_id} was finished by another process meanwhile")
    return summary
