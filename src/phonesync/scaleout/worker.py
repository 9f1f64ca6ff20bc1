"""One scale-out worker (`phonesync worker`): claim items, apply them with the `Updater`, record.

A worker joins the newest open scale-out run of its business date (waiting for the plan step if
it has not queued the work yet), takes its share of the server's budget (`max_rate` and
`concurrency` divided by the run's number of workers), and claims batches until the queue is
empty. Every outcome is recorded in the same transaction that marks its item done; the worker
whose batch brings the run's remaining items to zero finishes the run.

A re-claimed item (its worker died, its lease ran out) goes through the `Updater` again: the
re-read shows the number already there and the row ends `unchanged` — never a second write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from phonesync.errors import FhirUnavailable, PhonesyncError, RunAborted, RunInProgress
from phonesync.ledger.store import Ledger, LedgerRow
from phonesync.outcomes import Outcome, RowResult
from phonesync.plan import WorkItem
from phonesync.recording import work_row
from phonesync.scaleout import queue
from phonesync.scaleout.coordinator import finish_run, require_postgres, sealer_for
from phonesync.settings import Settings
from phonesync.sync import MAY_HAVE_LANDED, FhirFactory, FhirSession, RowUpdater, check_hash_key

log = logging.getLogger("phonesync.scaleout")

#: Claims after which an item that never got an outcome is recorded `failed` instead.
MAX_CLAIMS = 3
POLL_S = 2.0
FLUSH_ROWS = 100


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerOutcome:
    """What one worker did; `summary` is set when this worker finished the run."""

    run_id: str | None
    rows: int = 0
    summary: dict[str, Any] | None = None
    run_status: str | None = None
    error: PhonesyncError | None = None


def worker_settings(settings: Settings, workers: int) -> Settings:
    """This worker's share of the budget: `max_rate` and `concurrency` divided by `workers`."""
    rate = settings.max_rate / workers if settings.max_rate is not None else None
    concurrency = max(1, settings.concurrency // workers)
    return settings.model_copy(update={"max_rate": rate, "concurrency": concurrency})


async def wait_for_run(
    ledger: Ledger,
    business_date: date,
    *,
    wait_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> queue.QueueRun | None:
    """The date's newest scale-out run once it is planned (or over); None after `wait_s`."""
    waited = 0.0
    while True:
        qrun = queue.latest_for(ledger.engine, business_date)
        if qrun is not None and (qrun.state != queue.PLANNING or qrun.run_status != "running"):
            return qrun
        if waited >= wait_s:
            return None
        await sleep(POLL_S)
        waited += POLL_S


@dataclass
class Worker:
    """The claim → apply → record loop of one worker process on one run."""

    settings: Settings
    ledger: Ledger
    qrun: queue.QueueRun
    worker_id: str
    now: Callable[[], datetime] = _now
    outcome: WorkerOutcome = field(init=False)
    local: deque[WorkItem] = field(default_factory=deque)
    results: list[LedgerRow] = field(default_factory=list)
    fhir: FhirSession | None = None
    stop: bool = False
    # rows handed to the updater whose result is not back: a request may have been sent
    in_flight: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.outcome = WorkerOutcome(run_id=self.qrun.run_id)
        self.sealer = sealer_for(self.settings)
        self.claim_lock = asyncio.Lock()

    async def run(self, fhir_factory: FhirFactory) -> WorkerOutcome:
        share = worker_settings(self.settings, self.qrun.workers)
        log.info("worker joins run %s as %s (max_rate %s/s, concurrency %d)", self.qrun.run_id,
                 self.worker_id, share.max_rate, share.concurrency)  # fmt: skip
        beat = asyncio.create_task(self.heartbeat())
        try:
            async with fhir_factory(share) as fhir:
                self.fhir = fhir
                await fhir.preflight()
                updater = fhir.updater(self.qrun.business_date)
                tasks = [asyncio.create_task(self.loop(updater)) for _ in range(share.concurrency)]
                await _gather_or_cancel(tasks)
                await self.flush()
        except FhirUnavailable as exc:
            self.abort_run(exc)
        except BaseException:
            self.give_back()
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        return self.outcome

    async def loop(self, updater: RowUpdater) -> None:
        while (item := await self.next_item()) is not None:
            self.in_flight.add(item.row)
            result = await updater.update(item)
            # not in a `finally`: a row whose update was cancelled or raised stays in flight
            self.in_flight.discard(item.row)
            self.results.append(work_row(item, result))
            self.outcome.rows += 1
            if len(self.results) >= FLUSH_ROWS:
                await self.flush()

    async def next_item(self) -> WorkItem | None:
        """The next item to apply; None once the run's queue is empty (or the run is over)."""
        async with self.claim_lock:
            while not self.local and not self.stop:
                # Database work off the event loop: a blocked loop would release the requests
                # the pacer spaced out all at once (a burst the gateway answers with 429).
                await self.flush()  # record what is done before holding more
                if await asyncio.to_thread(self.claim):
                    continue
                if await asyncio.to_thread(self.queue_over):
                    self.stop = True
                else:  # items under other workers' leases: theirs, or ours again once they lapse
                    await asyncio.sleep(POLL_S)
            if self.stop:  # also when the lock was lost while a claim was under way
                self.local.clear()
                return None
            return self.local.popleft() if self.local else None

    def claim(self) -> bool:
        claimed = queue.claim(self.ledger.engine, self.qrun.run_id, self.worker_id,
                              batch=self.settings.scaleout_batch,
                              lease_s=self.settings.scaleout_lease_s, now=self.now(),
                              sealer=self.sealer)  # fmt: skip
        for item, claims in claimed:
            if claims > MAX_CLAIMS:
                reason = f"claimed {claims - 1} times by workers that stopped before recording it"
                result = RowResult(row=item.row, outcome=Outcome.FAILED, reason=reason)
                self.results.append(work_row(item, result))
            else:
                self.local.append(item)
        return bool(claimed)

    def finished_by_another(self) -> bool:
        qrun = queue.get(self.ledger.engine, self.qrun.run_id)
        return qrun is not None and qrun.state == queue.FINISHED

    def queue_over(self) -> bool:
        qrun = queue.get(self.ledger.engine, self.qrun.run_id)
        return (
            qrun is None
            or qrun.remaining <= 0
            or qrun.error is not None
            or qrun.state == queue.FINISHED
            or qrun.run_status != "running"
        )

    async def flush(self) -> None:
        """Record the finished rows, from a thread: the event loop keeps pacing requests."""
        rows, self.results = self.results, []  # swapped on the loop, never in the thread
        if rows:
            await asyncio.to_thread(self.record, rows, self.totals())

    def flush_now(self) -> None:
        """Record the finished rows on this thread (the row tasks are over)."""
        rows, self.results = self.results, []
        if rows:
            self.record(rows, self.totals())

    def record(self, rows: list[LedgerRow], totals: queue.WorkerTotals) -> None:
        remaining = queue.complete(self.ledger.engine, self.qrun.run_id,
                                   self.qrun.business_date, self.worker_id, rows, totals,
                                   self.now())  # fmt: skip
        if remaining == 0:
            self.finish()

    def finish(self) -> None:
        summary = finish_run(self.ledger, self.settings, self.qrun.run_id, now=self.now)
        if summary is not None:
            self.outcome.summary = summary
            self.outcome.run_status = summary["status"]

    def totals(self) -> queue.WorkerTotals:
        if self.fhir is None:
            return queue.WorkerTotals()
        total, retries, by_status = self.fhir.request_stats()
        return queue.WorkerTotals(total, retries, by_status)

    def abort_run(self, exc: FhirUnavailable) -> None:
        """The FHIR server refuses us: the run cannot do its job (as in a single-process run).

        The rows nobody works on are recorded `failed`: "not attempted" only if no request can
        have been sent for them; this worker's rows cut off in flight, and rows a stopped worker
        had claimed, say that their write may have landed (the next run reads the record).
        """
        log.error("worker %s: %s; the run fails (%d rows in flight)", self.worker_id, exc,
                  len(self.in_flight))  # fmt: skip
        self.outcome.error = exc
        self.flush_now()
        queue.set_error(self.ledger.engine, self.qrun.run_id, str(exc))
        why = f"run aborted ({type(exc).__name__})"
        _, remaining = queue.fail_open(
            self.ledger.engine, self.qrun.run_id, self.qrun.business_date,
            reason=f"not attempted: {why}", worker=self.worker_id, sealer=self.sealer,
            now=self.now(), in_flight=frozenset(self.in_flight),
            in_flight_reason=f"interrupted: {why} while this row was in flight; {MAY_HAVE_LANDED}",
            claimed_reason=f"interrupted: {why}; this row may have been written by a worker that "
            "stopped: the next run checks the record (and ends it unchanged if so)",
        )  # fmt: skip
        if remaining == 0:
            self.finish()

    def give_back(self) -> None:
        """Stopping early (interrupted, internal error): record what is done, release the rest."""
        with contextlib.suppress(Exception):
            self.flush_now()
        released = queue.release(self.ledger.engine, self.qrun.run_id, self.worker_id)
        log.warning("worker %s stopped early; %d claimed items released", self.worker_id, released)

    async def heartbeat(self) -> None:
        """Keep the run lock and this worker's leases fresh while it lives, from its start.

        The lock is the run's (the plan step exited): without a beat from some worker for
        `PHONESYNC_LOCK_STALE_S` it may be taken over, so beat well inside that window too. If
        the run lost it (taken over, or released by whoever finished the run), stop: no new
        claims, and the claimed rows not started yet are dropped — rows in flight finish and
        are recorded (their writes happened), nothing else is written.
        """
        settings = self.settings
        every = min(30.0, settings.scaleout_lease_s / 3, settings.lock_stale_s / 3)
        while True:
            now = self.now()
            try:
                await asyncio.to_thread(self.ledger.heartbeat, self.qrun.business_date,
                                        self.qrun.run_id, now)  # fmt: skip
            except RunInProgress as exc:
                self.stop = True
                dropped = len(self.local)
                self.local.clear()
                if not self.finished_by_another():  # another run took the lock over
                    log.error("worker %s: %s (%d claimed rows not started)", self.worker_id,
                              exc, dropped)  # fmt: skip
                    self.outcome.error = exc
                return
            await asyncio.to_thread(queue.renew, self.ledger.engine, self.qrun.run_id,
                                    self.worker_id, lease_s=settings.scaleout_lease_s,
                                    now=now)  # fmt: skip
            await asyncio.sleep(every)


async def _gather_or_cancel(tasks: list[asyncio.Task[None]]) -> None:
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def run_worker(
    settings: Settings,
    ledger: Ledger,
    business_date: date,
    worker_id: str,
    fhir_factory: FhirFactory,
    *,
    wait_s: float = 600.0,
    now: Callable[[], datetime] = _now,
) -> WorkerOutcome:
    """Join the date's scale-out run and work until its queue is empty."""
    require_postgres(settings)
    sealer_for(settings)  # fail before waiting when the key is missing
    check_hash_key(settings, ledger, now())  # the key the ledger was written with, or exit 2
    qrun = await wait_for_run(ledger, business_date, wait_s=wait_s)
    if qrun is None:
        raise RunAborted(
            f"no scale-out run for {business_date} was planned within {wait_s:.0f} s "
            "(run `phonesync plan` first)"
        )
    if qrun.run_status != "running" or qrun.state == queue.FINISHED:
        log.info("run %s for %s is already %s; nothing to do", qrun.run_id, business_date,
                 qrun.run_status)  # fmt: skip
        return WorkerOutcome(run_id=qrun.run_id, run_status=qrun.run_status)
    return await Worker(settings, ledger, qrun, worker_id, now).run(fhir_factory)
