"""`BackgroundJobs`: runs started by the service (schedule, catch-up, dashboard) in its event loop.

Each job is one `run_observed` call in an asyncio task, with live progress (`JobStatus`: rows done
of the rows to apply, outcome counts, the run id as soon as the run exists). One job per business
date in this process — starting a date that is already running returns that job's id — and one
run at a time across replicas through the ledger's run lock (for any date): a job that finds it
held ends `failed` with "another run … is in progress" and is logged, never retried in a loop.

Only a run that stands for the night (`metrics.run_kind`) sets the run-level series of /metrics
(status, last success, duration, failure ratio, projection): a replay of an older date and a
preview (dry run) add to the counters only, so they never turn a failed night into a success.

`start()` may be called from the loop's thread (async handlers, the scheduler) or from any other
thread (Starlette runs sync endpoints in a thread pool); both schedule the task on the loop.

Previews (`start_preview`): the dashboard's dry runs, in the background too, so that a preview
of thousands of rows never holds an HTTP request. The same preview (same date, trigger and
retried run) already running is joined rather than run twice; at most `MAX_ACTIVE_PREVIEWS` run
at once. An ended preview keeps only its status and summary (its rows are in the ledger), for
`PREVIEW_KEEP_S` and at most `PREVIEW_KEEP` of them; older ones are forgotten. Previews are not
runs of a date: `status()`/`active()` and the one-job-per-date rule of `start()` ignore them
(a dry run takes no run lock), and they never affect what a confirmed run does.

`shutdown()` (the service stopping: SIGTERM to `serve`) stops running jobs as `phonesync run` stops
on SIGTERM: no new rows, the rows in flight get `PHONESYNC_SHUTDOWN_GRACE_S` to finish, then they
are cancelled; each run ends `aborted` with every row recorded (reason "… (serve shutdown)").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from phonesync.batch import kind_of, run_factory
from phonesync.errors import PhonesyncError, RunInProgress
from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics
from phonesync.notify import notify_run
from phonesync.outcomes import Outcome
from phonesync.report import report_row
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.source.rows import RowSource
from phonesync.sync import FhirFactory, RunRequest, StopRequest, run_sync
from phonesync.web.context import JobStatus, PreviewDone, PreviewJob

log = logging.getLogger(__name__)

ACTIVE_STATES = frozenset({"queued", "running"})
#: Finished jobs kept for `status()`; older ones are forgotten (the ledger keeps the runs).
KEEP_FINISHED = 200
#: The stop reason of jobs when the service stops (in the runs' error and row reasons).
SERVE_SHUTDOWN = "serve shutdown"
#: After the shutdown grace, how long a stopping job gets to record its rows before it is
#: cancelled outright (its rows are then recorded by the cancellation path).
SHUTDOWN_MARGIN_S = 5.0
#: Previews running at once in this process (distinct ones: the same preview is joined).
MAX_ACTIVE_PREVIEWS = 4
#: An ended preview is kept for `preview_job()` this long (seconds) ...
PREVIEW_KEEP_S = 30 * 60.0
#: ... and only the newest this many of them (each holds its status and summary, no rows).
PREVIEW_KEEP = 20


class PreviewRefused(PhonesyncError):
    """Too many previews are running already: wait for one to end (or open it)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunDeps:
    """What a job needs to run a sync; tests hand in a sandbox's settings and a clock."""

    settings: Settings
    ledger: Ledger
    metrics: Metrics
    source_factory: Callable[[Settings], RowSource] = open_source
    fhir_factory: FhirFactory | None = None
    now: Callable[[], datetime] = _utc_now


@dataclass
class _Job:
    status: JobStatus
    request: RunRequest
    actor: str
    task: asyncio.Future[None] | None = None
    created: asyncio.Event = field(default_factory=asyncio.Event)  # task exists (loop thread)
    summary: dict[str, Any] = field(default_factory=dict)
    stop: StopRequest = field(default_factory=StopRequest)  # asked by shutdown()
    preview: bool = False  # a dashboard preview (dry run), kept in `_previews`
    on_done: list[PreviewDone] = field(default_factory=list)  # previews: called once at the end
    ended_at: float | None = None  # previews: when it ended (`clock()`), for forgetting it


class _Tracker:
    """Progress + run observer for one job: keeps its `JobStatus` live, forwards to metrics."""

    def __init__(
        self, status: JobStatus, metrics: Metrics, *, night: bool = True, dry_run: bool = False
    ) -> None:
        self._status, self._metrics = status, metrics
        self._night = night  # False: a replay or dry run leaves the run-level series alone
        self._dry_run = dry_run  # a preview's rows are not outcomes: not in phonesync_rows_total

    # Progress (rows going to the FHIR server)
    def start(self, total: int) -> None:
        self._status.total = total

    def advance(self, outcome: Outcome) -> None:
        self._status.done += 1

    def stop(self) -> None:
        return None

    # RunMetrics (every row, and the run itself)
    def run_started(self, run_id: str) -> None:
        self._status.run_id = run_id
        if self._night:
            self._metrics.run_started(run_id)

    def planned(self, to_apply: int) -> None:
        if self._night:
            self._metrics.planned(to_apply)

    def row(self, outcome: Outcome, *, applied_work: bool = True) -> None:
        self._status.outcomes[outcome.value] = self._status.outcomes.get(outcome.value, 0) + 1
        if not self._dry_run:
            self._metrics.row(outcome, applied_work=applied_work and self._night)

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        if self._night:
            self._metrics.run_finished(summary)

    def fhir_request(self, method: str, status: int | None, seconds: float) -> None:
        self._metrics.fhir_request(method, status, seconds)

    def retry(self) -> None:
        self._metrics.retry()

    def in_flight(self, delta: int) -> None:
        self._metrics.in_flight(delta)

    def whatsapp_check(self, result: str) -> None:
        self._metrics.whatsapp_check(result)


class BackgroundJobs:
    """Implements `web.context.Jobs`."""

    def __init__(self, deps: RunDeps, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._deps = deps
        self._clock = clock  # seconds, for how long ended previews are kept
        self._jobs: dict[str, _Job] = {}
        self._previews: dict[str, _Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop jobs run in (the service's)."""
        self._loop = loop

    def start(self, request: RunRequest, *, actor: str) -> str:
        """Start a run in the background; an active job for the same date is returned instead."""
        if not request.dry_run:
            for job in self._jobs.values():
                same = job.request.business_date == request.business_date
                if same and not job.request.dry_run and job.status.state in ACTIVE_STATES:
                    return job.status.job_id
        job_id = secrets.token_hex(6)
        job = _Job(JobStatus(job_id=job_id, state="queued"), request, actor)
        self._jobs[job_id] = job
        self._forget_old()
        self._schedule(job)
        log.info(
            "job queued",
            extra={"job_id": job_id, "business_date": str(request.business_date), "actor": actor},
        )
        return job_id

    def _schedule(self, job: _Job) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop = self._loop or running
        if loop is None:
            raise RuntimeError("BackgroundJobs is not attached to an event loop")
        if running is loop:
            self._create_task(job)
        else:  # a worker thread (sync endpoint): hand over to the loop's thread
            loop.call_soon_threadsafe(self._create_task, job)

    def _create_task(self, job: _Job) -> None:
        assert self._loop is not None  # noqa: S101 - set by _schedule before this runs
        work = self._execute_preview(job) if job.preview else self._execute(job)
        job.task = self._loop.create_task(work)
        job.created.set()

    def status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id)
        return job.status if job else None

    def active(self) -> list[JobStatus]:
        return [j.status for j in self._jobs.values() if j.status.state in ACTIVE_STATES]

    def summary(self, job_id: str) -> dict[str, Any]:
        """The finished run's summary (empty while running)."""
        job = self._jobs.get(job_id)
        return dict(job.summary) if job else {}

    async def wait(self, job_id: str) -> JobStatus | None:
        """Until the job has ended (tests, shutdown)."""
        job = self._jobs.get(job_id) or self._previews.get(job_id)
        if job is not None:
            await job.created.wait()  # started from another thread: the task comes next turn
        if job is not None and job.task is not None:
            await asyncio.wait({job.task})
        return job.status if job is not None else None

    # --- previews (dry runs for the dashboard) ----------------------------------------------
    def start_preview(
        self, request: RunRequest, *, actor: str, on_done: PreviewDone | None = None
    ) -> tuple[str, bool]:
        """Start a dry run of `request` in the background, or join the same one running.

        Returns the preview's id and whether it joined one already running (same business
        date, trigger and retried run). `on_done(preview)` is called once when the preview has
        ended, for every caller that gave one (joined or not). More than `MAX_ACTIVE_PREVIEWS`
        distinct previews at once are refused (`PreviewRefused`). Call it from the loop's thread
        (async handlers), as the dashboard does.
        """
        # keep retry_of: a retry's preview covers only that run's failed rows
        dry = replace(request, dry_run=True)
        self._forget_old_previews()
        running = [j for j in self._previews.values() if j.status.state in ACTIVE_STATES]
        for job in running:
            if job.request == dry:
                if on_done is not None:
                    job.on_done.append(on_done)
                log.info(
                    "preview joined",
                    extra={"job_id": job.status.job_id, "actor": actor},
                )
                return job.status.job_id, True
        if len(running) >= MAX_ACTIVE_PREVIEWS:
            raise PreviewRefused(
                f"{len(running)} previews are running already; wait for one of them to end"
            )
        job_id = secrets.token_hex(6)
        job = _Job(JobStatus(job_id=job_id, state="queued"), dry, actor, preview=True)
        if on_done is not None:
            job.on_done.append(on_done)
        self._previews[job_id] = job
        self._schedule(job)
        log.info(
            "preview queued",
            extra={"job_id": job_id, "business_date": str(dry.business_date), "actor": actor},
        )
        return job_id, False

    def preview_job(self, job_id: str) -> PreviewJob | None:
        """A preview, running or ended; None once forgotten (or never started here)."""
        self._forget_old_previews()
        job = self._previews.get(job_id)
        return _view(job) if job is not None else None

    def previews_active(self) -> list[PreviewJob]:
        """The previews running now."""
        return [_view(j) for j in self._previews.values() if j.status.state in ACTIVE_STATES]

    async def preview(self, request: RunRequest) -> dict[str, Any]:
        """A dry run, awaited: its summary and what it would do to every row (masked)."""
        job_id, _ = self.start_preview(request, actor="preview")
        job = self._previews[job_id]
        await self.wait(job_id)
        if job.status.state != "finished" or job.status.run_id is None:
            return {"summary": {}, "changes": [], "error": job.status.error}
        rows = self._deps.ledger.results(job.status.run_id)
        return {"summary": job.summary, "changes": [report_row(r) for r in rows], "error": None}

    async def _execute_preview(self, job: _Job) -> None:
        try:
            await self._execute(job)
        finally:
            if job.status.state in ACTIVE_STATES:  # cancelled: the service is stopping
                job.status.state = "failed"
                job.status.error = job.status.error or f"stopped ({SERVE_SHUTDOWN})"
            job.ended_at = self._clock()
            hooks, job.on_done = job.on_done, []
            view = _view(job)
            for hook in hooks:
                try:
                    hook(view)
                except Exception:
                    log.exception(
                        "a preview's end hook failed", extra={"job_id": view.status.job_id}
                    )
            self._forget_old_previews()

    def _forget_old_previews(self) -> None:
        """Ended previews older than `PREVIEW_KEEP_S`, and all but the newest `PREVIEW_KEEP`."""
        now = self._clock()
        ended = sorted(
            ((j.ended_at, k) for k, j in self._previews.items() if j.ended_at is not None),
            reverse=True,  # newest first
        )
        for rank, (ended_at, key) in enumerate(ended):
            if rank >= PREVIEW_KEEP or now - ended_at >= PREVIEW_KEEP_S:
                del self._previews[key]

    async def shutdown(self) -> None:
        """Stop running jobs like SIGTERM stops `phonesync run`, and wait for them.

        No new rows; rows in flight get `PHONESYNC_SHUTDOWN_GRACE_S` to finish, then the run
        cancels them; each run ends `aborted` with every row recorded. A job not over
        `SHUTDOWN_MARGIN_S` after the grace is cancelled (still recorded `aborted`).
        """
        every = [*self._jobs.values(), *self._previews.values()]
        running = [j for j in every if j.task and not j.task.done()]
        for job in running:
            job.stop.request(SERVE_SHUTDOWN)
        tasks = [j.task for j in running if j.task is not None]
        if not tasks:
            return
        grace = self._deps.settings.shutdown_grace_s
        _, late = await asyncio.wait(tasks, timeout=grace + SHUTDOWN_MARGIN_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one job ----------------------------------------------------------------------------
    async def _execute(self, job: _Job) -> None:
        deps, status = self._deps, job.status
        status.state = "running"
        night = await asyncio.to_thread(kind_of, deps.ledger, job.request) == "night"
        tracker = _Tracker(status, deps.metrics, night=night, dry_run=job.request.dry_run)
        try:
            outcome = await run_sync(
                deps.settings,
                deps.ledger,
                deps.source_factory(deps.settings),
                job.request,
                deps.fhir_factory or run_factory(deps.settings, deps.metrics),
                progress=tracker,
                now=deps.now,
                metrics=tracker,
                stop=job.stop,
            )
        except RunInProgress as exc:
            status.state, status.error = "failed", str(exc)
            log.warning("run skipped: %s", exc, extra={"job_id": status.job_id})
        except PhonesyncError as exc:
            status.state, status.error = "failed", str(exc)
            log.error("run could not start: %s", exc, extra={"job_id": status.job_id})
        except Exception as exc:
            status.state, status.error = "failed", f"internal error: {type(exc).__name__}"
            log.exception("job failed", extra={"job_id": status.job_id})
        else:
            job.summary = dict(outcome.summary)
            status.state = "finished"
            status.status, status.error = outcome.stats.status, outcome.stats.error
            await notify_run(outcome.summary, deps.settings)

    def _forget_old(self) -> None:
        ended = [k for k, j in self._jobs.items() if j.status.state not in ACTIVE_STATES]
        for key in ended[: max(0, len(ended) - KEEP_FINISHED)]:
            del self._jobs[key]


def _view(job: _Job) -> PreviewJob:
    return PreviewJob(status=job.status, request=job.request, actor=job.actor, summary=job.summary)
