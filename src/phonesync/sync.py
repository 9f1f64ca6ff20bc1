"""The story of one run: read → normalise → plan → apply → record → report.

`run_sync` is the only orchestrator. It takes its collaborators (settings, ledger, source, and a
factory for the FHIR client) from the caller so tests can hand in real ones pointed at loopback
sandboxes. Rows never raise: each ends as a `RowResult`. The run itself ends in one status; a
fatal problem (sheet unreadable, FHIR server refusing us) becomes `failed` with the reason, and
every in-scope row not yet done is recorded `failed` ("not attempted") so nothing is silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from phonesync import snapshot
from phonesync.catchup import catch_up_for
from phonesync.errors import PhonesyncError, RunAborted, RunInProgress, SourceUnavailable
from phonesync.fhir.patient_cache import CacheChanges, with_cached_ids
from phonesync.ledger.store import Ledger, LedgerRow, default_owner, new_run_id
from phonesync.logs import bind_row, bind_run
from phonesync.masking import keyed_hash, redact
from phonesync.metrics import NO_METRICS, RunMetrics
from phonesync.outcomes import RETRYABLE_OUTCOMES, Outcome, RowResult
from phonesync.plan import Plan, WorkItem, build_plan, settle_with_ledger
from phonesync.preview import PreviewRow, preview_row
from phonesync.projection import RunProjection
from phonesync.recording import early_row, work_row
from phonesync.report import RunStats
from phonesync.settings import Settings
from phonesync.source.rows import RowSource

log = logging.getLogger("phonesync.sync")

RECORD_BATCH = 500
HEARTBEAT_S = 30.0


class RowUpdater(Protocol):
    async def update(self, item: WorkItem, *, dry_run: bool = False) -> RowResult: ...


class FhirSession(Protocol):
    """What the orchestrator needs of the FHIR side: a pre-flight, an updater, statistics."""

    async def preflight(self) -> None: ...
    def updater(self, business_date: date) -> RowUpdater: ...
    def request_stats(self) -> tuple[int, int, dict[str, int]]: ...


FhirFactory = Callable[[Settings], AbstractAsyncContextManager[FhirSession]]


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, outcome: Outcome) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class RunRequest:
    """What to run: a business date, why, and whether to write."""

    business_date: date
    trigger: str = "manual"
    dry_run: bool = False
    retry_of: str | None = None
    from_source: bool = False  # re-read the sheet even when a frozen input exists (snapshot.py)


@dataclass
class RunOutcome:
    """The finished run: its statistics, and the fatal error if it failed."""

    stats: RunStats
    error: PhonesyncError | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    preview: list[PreviewRow] = field(default_factory=list)  # dry runs: what would change


def _now() -> datetime:
    return datetime.now(UTC)


async def run_sync(
    settings: Settings,
    ledger: Ledger,
    source: RowSource,
    request: RunRequest,
    fhir_factory: FhirFactory,
    *,
    progress: Progress | None = None,
    now: Callable[[], datetime] = _now,
    metrics: RunMetrics = NO_METRICS,
) -> RunOutcome:
    """Run one sync; returns when every in-scope row has a recorded outcome (or none were read)."""
    stats = RunStats(
        run_id=new_run_id(now()),
        business_date=request.business_date,
        trigger=request.trigger,
        started_at=now(),
        dry_run=request.dry_run,
    )
    ledger.mark_abandoned_runs(stale_after_s=settings.lock_stale_s, now=now())
    locked = not request.dry_run
    if locked:
        ledger.acquire_lock(
            request.business_date,
            stats.run_id,
            default_owner(),
            stale_after_s=settings.lock_stale_s,
            now=now(),
        )
    ledger.create_run(
        run_id=stats.run_id,
        business_date=request.business_date,
        trigger=request.trigger,
        config=settings.effective_config(),
        dry_run=request.dry_run,
        parent_run_id=request.retry_of,
        started_at=stats.started_at,
    )
    log.info(
        "run started",
        extra={
            "run_id": stats.run_id,
            "business_date": str(request.business_date),
            "trigger": request.trigger,
            "dry_run": request.dry_run,
        },
    )
    run = _Run(settings, ledger, source, request, fhir_factory, stats, progress, now, metrics)
    run.cpu_started = time.process_time()
    metrics.run_started(stats.run_id)
    heartbeat = asyncio.create_task(run.heartbeat(asyncio.current_task())) if locked else None
    try:
        with bind_run(stats.run_id):
            return await run.execute()
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        if locked:
            ledger.release_lock(request.business_date, stats.run_id)


async def plan_and_record_early(
    settings: Settings,
    ledger: Ledger,
    source: RowSource,
    request: RunRequest,
    stats: RunStats,
    *,
    now: Callable[[], datetime] = _now,
) -> Plan:
    """A run's first half on its own (scale-out's plan step): read, plan, record early outcomes.

    The run (`stats.run_id`) must exist in the ledger; `stats` gets the row counts.
    """

    def no_fhir(_settings: Settings) -> AbstractAsyncContextManager[FhirSession]:
        raise AssertionError("the plan step never talks to the FHIR server")

    run = _Run(settings, ledger, source, request, no_fhir, stats, None, now)
    return await run.read_and_plan()


def run_verdict(stats: RunStats, failure_threshold: float) -> str:
    """A completed run's status: `completed_with_failures` above the failure threshold."""
    ratio = stats.failure_ratio
    return "completed_with_failures" if ratio > failure_threshold else "succeeded"


@dataclass
class _Run:
    settings: Settings
    ledger: Ledger
    source: RowSource
    request: RunRequest
    fhir_factory: FhirFactory
    stats: RunStats
    progress: Progress | None
    now: Callable[[], datetime]
    metrics: RunMetrics = NO_METRICS
    pending: list[LedgerRow] = field(default_factory=list)
    cpu_started: float = 0.0
    done_rows: set[int] = field(default_factory=set)
    catch_up_rows: set[int] = field(default_factory=set)
    preview: list[PreviewRow] = field(default_factory=list)
    patient_ids: CacheChanges = field(default_factory=CacheChanges)  # fhir/patient_cache.py
    projection: RunProjection | None = None  # set in apply(); warns when the window overruns

    async def heartbeat(self, main: asyncio.Task[Any] | None) -> None:
        """Keep the date's lock fresh; if another process took it over, stop this run at once."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                self.ledger.heartbeat(self.request.business_date, self.stats.run_id, self.now())
            except RunInProgress:
                log.error(
                    "run lock lost to another process; stopping",
                    extra={"run_id": self.stats.run_id},
                )
                if main is not None:
                    main.cancel()
                return

    async def execute(self) -> RunOutcome:
        error: PhonesyncError | None = None
        plan: Plan | None = None
        try:
            plan = await self.read_and_plan()
            await self.apply(plan)
            self.stats.status = self.verdict()
        except RunAborted as exc:
            error = exc
            self.stats.status = "failed"
            self.stats.error = redact(str(exc))
            log.error("run failed: %s", self.stats.error, extra={"run_id": self.stats.run_id})
            if plan is not None:
                self.fail_remaining(plan, f"not attempted: run aborted ({type(exc).__name__})")
        except PhonesyncError:
            raise
        except Exception as exc:
            error = RunAborted(f"internal error: {type(exc).__name__}: {redact(str(exc))}")
            self.stats.status = "failed"
            self.stats.error = str(error)
            log.exception("run failed with an internal error", extra={"run_id": self.stats.run_id})
            if plan is not None:
                self.fail_remaining(plan, "not attempted: run aborted (internal error)")
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.stats.status = "aborted"
            self.stats.error = "interrupted"
            self.finish()
            raise
        self.finish()
        summary = self.stats.as_summary()
        return RunOutcome(stats=self.stats, error=error, summary=summary, preview=self.preview)

    def verdict(self) -> str:
        return run_verdict(self.stats, self.settings.failure_threshold)

    def finish(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("could not record the last rows", extra={"run_id": self.stats.run_id})
            self.pending = []
            self.stats.status = "failed"
            self.stats.error = self.stats.error or "internal error while recording rows"
        self.stats.finished_at = self.now()
        self.stats.cpu_s = time.process_time() - self.cpu_started
        self.ledger.finish_run(
            self.stats.run_id,
            status=self.stats.status,
            summary=self.stats.as_summary(),
            finished_at=self.stats.finished_at,
            error=self.stats.error,
        )
        self.metrics.run_finished(self.stats.as_summary())
        if self.progress is not None:
            self.progress.stop()
        log.info(
            "run finished",
            extra={
                "run_id": self.stats.run_id,
                "status": self.stats.status,
                "in_scope": self.stats.in_scope,
                "duration_s": self.stats.duration_s,
            },
        )

    # --- read, normalise, plan -------------------------------------------------------------
    async def read_and_plan(self) -> Plan:
        only_rows = self.retry_rows() if self.request.retry_of else None
        key = self.hash_key()
        started = time.monotonic()
        chosen = snapshot.open_input(
            self.settings, self.ledger, self.source, self.request, self.now()
        )
        day = self.request.business_date
        catch_up = None if only_rows else catch_up_for(self.settings, self.ledger, day)
        try:
            plan = await asyncio.to_thread(
                lambda: build_plan(
                    chosen.read(),
                    business_date=day,
                    zone=self.settings.zone,
                    hash_key=key,
                    only_rows=only_rows,
                    catch_up=catch_up,
                )
            )
        finally:
            self.stats.sheet_requests = chosen.source.requests
        self.stats.rows_read = plan.rows_read
        if plan.rows_read == 0 and only_rows is None:
            raise SourceUnavailable(
                "the sheet has no data rows (wrong sheet id, tab or range?); refusing to report "
                "an empty night as a success"
            )
        snapshot.keep(self.settings, self.ledger, chosen, self.stats.run_id, day)
        self.stats.input = chosen.describe()
        applied = self.ledger.applied_for(item.nik_hash for item in plan.work)
        settle_with_ledger(plan, applied, read_at=chosen.read_at)
        if self.settings.patient_id_cache:  # known patients skip the search
            cached = self.ledger.patient_ids_for(item.nik_hash for item in plan.work)
            plan.work = with_cached_ids(plan.work, cached)
        self.stats.in_scope = plan.in_scope
        self.stats.from_catch_up = len(plan.catch_up_rows)
        self.catch_up_rows = plan.catch_up_rows
        self.metrics.planned(len(plan.work))
        log.info(
            "plan ready",
            extra={
                "run_id": self.stats.run_id,
                "rows_read": plan.rows_read,
                "in_scope": plan.in_scope,
                "to_apply": len(plan.work),
                "read_s": round(time.monotonic() - started, 3),
            },
        )
        for early in plan.early:
            self.add(early_row(early), early.result.outcome, applied_work=False)
        self.flush()
        return plan

    def retry_rows(self) -> dict[int, str]:
        assert self.request.retry_of is not None  # noqa: S101 - only called for retries
        records = self.ledger.results(self.request.retry_of, outcomes=set(RETRYABLE_OUTCOMES))
        return {r.row: r.nik_hash for r in records if r.nik_hash}

    def hash_key(self) -> bytes:
        secret = self.settings.hash_key
        if secret is None:  # require_for_run() was called by the entry point
            raise RunAborted("PHONESYNC_HASH_KEY is not set")
        return secret.get_secret_value().encode()

    # --- apply ------------------------------------------------------------------------------
    async def apply(self, plan: Plan) -> None:
        if not plan.work:
            return
        if self.progress is not None:
            self.progress.start(len(plan.work))
        self.projection = RunProjection(self.settings.run_window_s)
        self.projection.planned(len(plan.work))
        async with self.fhir_factory(self.settings) as fhir:
            try:
                await fhir.preflight()
                updater = fhir.updater(self.request.business_date)
                await self.apply_all(updater, plan.work)
            finally:
                total, retries, by_status = fhir.request_stats()
                self.stats.requests_total = total
                self.stats.retries = retries
                self.stats.by_status = dict(by_status)

    async def apply_all(self, updater: RowUpdater, work: Sequence[WorkItem]) -> None:
        queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)
        workers = [
            asyncio.create_task(self.worker(updater, queue))
            for _ in range(min(self.settings.concurrency, len(work)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def worker(self, updater: RowUpdater, queue: asyncio.Queue[WorkItem]) -> None:
        while not queue.empty():
            item = queue.get_nowait()
            with bind_row(item.row):
                result = await updater.update(item, dry_run=self.request.dry_run)
            self.add(work_row(item, result), result.outcome, old_phone=result.old_phone)
            self.patient_ids.learn(item, result)
            if self.projection is not None:
                self.projection.advance()
            if len(self.pending) >= RECORD_BATCH:
                self.flush()

    # --- record -----------------------------------------------------------------------------
    def add(
        self,
        row: LedgerRow,
        outcome: Outcome,
        *,
        applied_work: bool = True,
        old_phone: str | None = None,
    ) -> None:
        if self.request.dry_run:
            old_hash = keyed_hash(old_phone, self.hash_key()) if old_phone else None
            catch_up = row.row in self.catch_up_rows
            self.preview.append(preview_row(row, old_phone, catch_up, old_hash=old_hash))
        self.pending.append(row)
        self.done_rows.add(row.row)
        self.stats.count(outcome)
        self.metrics.row(outcome, applied_work=applied_work)
        if self.progress is not None and applied_work:
            self.progress.advance(outcome)

    def flush(self) -> None:
        if self.pending:
            self.ledger.record_results(
                self.stats.run_id,
                self.pending,
                apply=not self.request.dry_run,
                recorded_at=self.now(),  # the injected clock: newer-wins compares with it
            )
            self.pending = []
        if self.patient_ids:
            found, gone = self.patient_ids.take()
            self.ledger.update_patient_ids(found, gone, seen_at=self.now())

    def fail_remaining(self, plan: Plan, reason: str) -> None:
        for item in plan.work:
            if item.row not in self.done_rows:
                result = RowResult(row=item.row, outcome=Outcome.FAILED, reason=reason)
                self.add(work_row(item, result), Outcome.FAILED)
