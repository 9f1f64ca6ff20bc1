"""The story of one run: read → normalise → plan → apply → record → report.

`run_sync` is the only orchestrator. It takes its collaborators (settings, ledger, source, and a
factory for the FHIR client) from the caller so tests can hand in real ones pointed at loopback
sandboxes. Rows never raise: each ends as a `RowResult`. The run itself ends in one status; a
fatal problem (sheet unreadable, FHIR server refusing us) becomes `failed` with the reason, and
every in-scope row not yet done is recorded `failed` ("not attempted") so nothing is silent.
A completed run whose rows look like a broken configuration (most searched NIKs not found, most
rows invalid) or whose source looks stale (data rows, but none for the date: `source_anomalies`)
is `completed_with_failures` with the reason in `warnings` (`run_anomalies`). A
`StopRequest` (SIGTERM/SIGINT in `phonesync run`) ends the run `aborted`: no new rows are started,
rows in flight get `PHONESYNC_SHUTDOWN_GRACE_S` to finish, every row not done is recorded `failed`.

However a run ends early, a row is "not attempted" only if it never reached the updater. A row
that was in flight (a request may have been sent: its write may have landed) is recorded
"interrupted: … while this row was in flight" with `MAY_HAVE_LANDED`: the next run or retry reads
the record first and ends it `unchanged` if the write landed (`in_flight`, `fail_remaining`).

The ledger unreachable (`ledger.engine.is_unreachable`): a checkpoint waits up to
`LEDGER_BLIP_S` for it (a restart, a fail-over); longer, the run stops like an outage abort —
`failed`, `LedgerUnavailable` (exit 6), rows not done recorded `failed` — and keeps trying for
`PHONESYNC_LEDGER_WAIT_S` to record its rows and its end (`record_when_back`). If the ledger stays
away the run is left `running` there, and the next run marks it `aborted` (stale lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from phonesync import snapshot
from phonesync.admission import RowGate
from phonesync.catchup import catch_up_for
from phonesync.errors import (
    LedgerUnavailable,
    PhonesyncError,
    RunAborted,
    RunInProgress,
    SourceUnavailable,
)
from phonesync.fhir.patient_cache import CacheChanges, with_cached_ids
from phonesync.ledger.engine import is_unreachable, unreachable_error
from phonesync.ledger.store import Ledger, LedgerRow, default_owner, new_run_id
from phonesync.logs import bind_row, bind_run
from phonesync.masking import keyed_hash, redact
from phonesync.metrics import NO_METRICS, RunMetrics
from phonesync.outcomes import INVALID_OUTCOMES, RETRYABLE_OUTCOMES, Outcome, RowResult
from phonesync.plan import FIRST_ROWS_KEPT, Plan, WorkItem, build_plan, settle_with_ledger
from phonesync.preview import PreviewRow, preview_row
from phonesync.projection import RunProjection
from phonesync.recording import early_row, work_row
from phonesync.report import RunStats
from phonesync.settings import Settings
from phonesync.source.rows import RowSource

log = logging.getLogger("phonesync.sync")
#: Outcomes that say the FHIR server answered a row's patient look-up without a patient id.
_LOOKUP_ANSWERS = frozenset({Outcome.PATIENT_NOT_FOUND, Outcome.AMBIGUOUS_PATIENT})

RECORD_BATCH = 500
#: ... or once this many seconds have passed since the last checkpoint, so that a slow night
#: (a rate limit) loses little finished work to a crash: what is not recorded is done again.
CHECKPOINT_S = 1.0
HEARTBEAT_S = 30.0
#: A checkpoint finding the ledger unreachable tries again for this long before the run stops.
LEDGER_BLIP_S = 3.0
#: How often a run that lost its ledger tries again to record its rows and its end.
LEDGER_RETRY_S = 1.0
#: What the reason of a row cut off in flight adds: it is not "not attempted".
MAY_HAVE_LANDED = (
    "its write may have landed: the next run or retry reads the record first "
    "(and ends it unchanged if so)"
)
#: The anomaly checks apply only from these sizes on (a handful of rows proves nothing).
NOT_FOUND_MIN_SEARCHED = 20
INVALID_MIN_IN_SCOPE = 10
#: What most often makes most rows of a night invalid, by the dominant invalid outcome.
INVALID_HINTS = {
    Outcome.INVALID_NIK: "a NIK column formatted as Number?",
    Outcome.INVALID_PHONE: (
        "phones shown as 6.28E+12, a phone column formatted as Number? or another column under "
        "the phone header?"
    ),
    Outcome.INVALID_DATE: (
        "dates written month first (MM/DD/YYYY) or with a two-digit year, the sheet's locale "
        "changed? or another column under the date header?"
    ),
}
#: Rows dated up to this many days after today are not the future yet: the next night takes
#: them (a clock in WIT, 2 h ahead of WIB, already shows tomorrow before the 23:00 WIB run).
FUTURE_GRACE_DAYS = 1


class RowUpdater(Protocol):
    async def update(self, item: WorkItem, *, dry_run: bool = False) -> RowResult: ...


class FhirSession(Protocol):
    """What the orchestrator needs of the FHIR side: a pre-flight, an updater, statistics."""

    async def preflight(self) -> None: ...
    def updater(self, business_date: date) -> RowUpdater: ...
    def request_stats(self) -> tuple[int, int, dict[str, int]]: ...
    def batch_stats(self) -> tuple[int, int]: ...
    def useful_rows(self) -> int | None: ...


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


class StopRequest:
    """Ask a run to stop early: what `phonesync run`/`retry` do on SIGTERM or SIGINT.

    The first request stops the run from starting new rows and gives the rows in flight
    `PHONESYNC_SHUTDOWN_GRACE_S` to finish; when the grace ends, or on a second request, the rows
    still in flight are cancelled. Either way the run ends `aborted` with every row recorded.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._asked = asyncio.Event()
        self._forced = asyncio.Event()

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Ask to stop (`reason`: e.g. "SIGTERM"); a second call cancels the rows in flight."""
        if self.reason is None:
            self.reason = reason
            self._asked.set()
        else:
            self._forced.set()

    async def wait(self) -> None:
        await self._asked.wait()

    async def wait_forced(self, grace_s: float) -> None:
        """Return after `grace_s` seconds, or at once on a second request."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._forced.wait(), grace_s)


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
    stop: StopRequest | None = None,
) -> RunOutcome:
    """Run one sync; returns when every in-scope row has a recorded outcome (or none were read).

    `stop`: a `StopRequest` the caller may trigger (signals); the run then ends `aborted`.
    """
    stats = RunStats(
        run_id=new_run_id(now()),
        business_date=request.business_date,
        trigger=request.trigger,
        started_at=now(),
        dry_run=request.dry_run,
    )
    locked = not request.dry_run
    try:
        _open_run(settings, ledger, request, stats, now(), locked=locked)
    except Exception as exc:
        if is_unreachable(exc):  # nothing was done: nothing could be recorded (exit 6)
            raise unreachable_error(exc) from None
        raise
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
    run.stop = stop
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
            try:
                ledger.release_lock(request.business_date, stats.run_id)
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                log.warning(  # no traceback: the run's own error already says why
                    "could not release the run lock (%s); it goes stale after "
                    "PHONESYNC_LOCK_STALE_S and the next run takes it over",
                    unreachable_error(exc),
                    extra={"run_id": stats.run_id},
                )


def _open_run(
    settings: Settings,
    ledger: Ledger,
    request: RunRequest,
    stats: RunStats,
    now: datetime,
    *,
    locked: bool,
) -> None:
    """The run's first ledger writes: hash key check, abandoned runs, the lock, the run row."""
    check_hash_key(settings, ledger, now)  # another key would forget newer-wins: exit 2
    ledger.mark_abandoned_runs(stale_after_s=settings.lock_stale_s, now=now)
    if locked:
        ledger.acquire_lock(
            request.business_date,
            stats.run_id,
            default_owner(),
            stale_after_s=settings.lock_stale_s,
            now=now,
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


def check_hash_key(settings: Settings, ledger: Ledger, now: datetime) -> None:
    """Refuse a PHONESYNC_HASH_KEY the ledger was not written with (`HashKeyMismatch`, exit 2).

    Called by every sync (run, retry, serve, scale-out plan and worker) before it reads or
    writes anything keyed by NIK hash; the first sync on a ledger records the key's check value.
    """
    if settings.hash_key is not None:  # missing: require_for_run() / hash_key() refuse it
        ledger.check_hash_key(settings.hash_key.get_secret_value().encode(), now=now)


def run_verdict(stats: RunStats, failure_threshold: float) -> str:
    """A completed run's status: `completed_with_failures` above the failure threshold, or with
    anomaly warnings (`run_anomalies`, in `stats.warnings`)."""
    ratio = stats.failure_ratio
    broken = ratio > failure_threshold or bool(stats.warnings)
    return "completed_with_failures" if broken else "succeeded"


def _rows(count: int, noun: str = "row") -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _percent(share: float) -> str:
    return f"{100 * share:.1f}".removesuffix(".0") + " %"


@dataclass(frozen=True)
class SourceDates:
    """What the source held besides the rows in scope: the readable date of every data row read
    (with the first few sheet rows of each), for the checks on the sheet itself."""

    rows_read: int
    dates: Mapping[date, int]
    first_rows: Mapping[date, Sequence[int]]
    today: date  # in PHONESYNC_TIMEZONE, on the run's clock
    zone: str

    @classmethod
    def of(cls, plan: Plan, today: date, zone: str) -> SourceDates:
        return cls(plan.rows_read, plan.dates, plan.first_rows, today, zone)


def source_dates_for(
    settings: Settings, request: RunRequest, plan: Plan, now: datetime
) -> SourceDates | None:
    """The source's dates for its checks (`source_anomalies`), "today" taken from `now` in
    PHONESYNC_TIMEZONE: None for a retry (it replays its parent's input and takes only its
    failed rows). A run asks at its verdict; scale-out's plan step when it has read the sheet
    (the finish happens later, in another process, without the plan)."""
    if request.retry_of is not None:
        return None
    today = now.astimezone(settings.zone).date()
    return SourceDates.of(plan, today, settings.timezone)


def source_anomalies(
    business_date: date, source: SourceDates, *, quiet_nights: bool = False
) -> list[str]:
    """Why the source looks broken although every row in scope may have gone well.

    - data rows, but none dated the business date nor later (up to tomorrow): a tab that
      stopped receiving rows would otherwise "succeed" every night with nothing in scope. Catch-up
      rows and rows with an unreadable date (in every night's scope) do not count: a stale tab
      has them too. A date with no rows while later rows exist (a replay of a day nobody sent
      updates on) is quiet, not broken; `quiet_nights` (PHONESYNC_QUIET_NIGHTS) turns the check
      off. A sheet with no
      data rows at all never gets here: it fails the run (exit 3).
    - rows dated after tomorrow (`FUTURE_GRACE_DAYS`) in the run's zone: a typo in the year
      (`04/12/2027`). No night takes such a row before its date, nobody sees an outcome for it,
      and on that date newer-wins lets it overwrite whatever was set meanwhile. Rows dated
      tomorrow are tomorrow night's rows, not a typo to report.

    Counts, dates and row numbers only: never a NIK or a number.
    """
    warnings: list[str] = []
    horizon = source.today + timedelta(days=FUTURE_GRACE_DAYS)
    dated = [day for day in source.dates if day <= horizon]
    quiet = source.dates.get(business_date, 0) == 0 and not any(d > business_date for d in dated)
    if source.rows_read and quiet and not quiet_nights:
        newest = max(dated, default=None)
        held = (
            f"the newest dated {newest}"
            if newest
            else "all dated after tomorrow"
            if source.dates
            else "none with a readable date"
        )
        warnings.append(
            f"no rows for {business_date}: the sheet has {_rows(source.rows_read, 'data row')}, "
            f"{held}: is the sheet still being filled, or PHONESYNC_SHEET_RANGE pointing at the "
            "old tab?"
        )
    future = sorted(day for day in source.dates if day > horizon)
    if future:
        count = sum(source.dates[day] for day in future)
        rows = sorted(r for day in future for r in source.first_rows.get(day, ()))
        shown = ", ".join(str(r) for r in rows[:FIRST_ROWS_KEPT])
        shown = f"sheet row {shown}" if count == 1 else f"sheet rows {shown}"
        more = ", …" if count > FIRST_ROWS_KEPT else ""
        warnings.append(
            f"{_rows(count)} {'is' if count == 1 else 'are'} dated after tomorrow (today is "
            f"{source.today} in {source.zone}), the furthest {future[-1]} ({shown}{more}): a "
            "typo in the year? No night takes such a row before its date, and then it "
            "overwrites what was set meanwhile (newer wins): fix the date in the sheet"
        )
    return warnings


def run_anomalies(
    stats: RunStats,
    *,
    not_found_threshold: float,
    invalid_threshold: float,
    repeated_not_found: int = 0,
    source: SourceDates | None = None,
    quiet_nights: bool = False,
) -> list[str]:
    """Why a completed run's rows look like a broken night rather than a quiet one.

    - `patient_not_found` above `not_found_threshold` of the rows whose patient look-up was
      answered (once `NOT_FOUND_MIN_SEARCHED` were): a wrong NIK identifier system or server.
      Rows not found again (`repeated_not_found`: an earlier run had already not found that row
      content; catch-up searches them every night) count in neither, so a small night is not
      drowned by last week's unknown NIKs;
    - `invalid_*` above `invalid_threshold` of the rows in scope (once `INVALID_MIN_IN_SCOPE`
      are): a reformatted sheet column (e.g. the NIK column turned into Number);
    - with `source` (a run, not a retry: a retry replays its parent's input and takes only its
      failed rows), the source's own checks (`source_anomalies`).

    The invalid warning's hint fits its dominant outcome (`INVALID_HINTS`).

    Counts and shares only: never a NIK or number.
    """
    warnings: list[str] = []
    not_found = stats.outcomes[Outcome.PATIENT_NOT_FOUND.value] - repeated_not_found
    searched = stats.searched - repeated_not_found
    if searched >= NOT_FOUND_MIN_SEARCHED and not_found / searched > not_found_threshold:
        warnings.append(
            f"{_percent(not_found / searched)} of searched NIKs were not found "
            f"({not_found:,} of {searched:,}; PHONESYNC_NOT_FOUND_THRESHOLD "
            f"{_percent(not_found_threshold)}): check PHONESYNC_NIK_SYSTEM and "
            "PHONESYNC_FHIR_BASE_URL"
        )
    in_scope = stats.in_scope
    invalid = {o: stats.outcomes[o.value] for o in INVALID_OUTCOMES}
    total = sum(invalid.values())
    if in_scope >= INVALID_MIN_IN_SCOPE and total / in_scope > invalid_threshold:
        dominant = max(INVALID_OUTCOMES, key=lambda o: invalid[o])
        share = _percent(total / in_scope)
        warnings.append(
            f"{_percent(invalid[dominant] / in_scope)} of the rows in scope are {dominant} "
            f"({invalid[dominant]:,} of {in_scope:,}; all invalid outcomes {share}, "
            f"PHONESYNC_INVALID_THRESHOLD {_percent(invalid_threshold)}): check the sheet's "
            f"columns and their format ({INVALID_HINTS[dominant]})"
        )
    if source is not None:
        warnings += source_anomalies(stats.business_date, source, quiet_nights=quiet_nights)
    return warnings


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
    flushed_at: float = field(default_factory=time.monotonic)  # last checkpoint (CHECKPOINT_S)
    cpu_started: float = 0.0
    done_rows: set[int] = field(default_factory=set)
    catch_up_rows: set[int] = field(default_factory=set)
    preview: list[PreviewRow] = field(default_factory=list)
    patient_ids: CacheChanges = field(default_factory=CacheChanges)  # fhir/patient_cache.py
    projection: RunProjection | None = None  # set in apply(); warns when the window overruns
    plan: Plan | None = None  # set once read_and_plan() has it
    stop: StopRequest | None = None  # signals (`phonesync run`): stop early, end `aborted`
    # rows handed to the updater whose result is not back: while running, the rows in flight;
    # once the work has stopped (cancelled, or aborted by an exception), the rows cut off in it
    in_flight: set[int] = field(default_factory=set)
    ledger_error: LedgerUnavailable | None = None  # the ledger went away mid-run
    recorded: bool = False  # the run's end is in the ledger
    ledger_waiting: bool = False  # a checkpoint is waiting for the ledger (a blip)

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
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                log.warning(  # a checkpoint or the run's end says more, if it lasts
                    "could not refresh the run lock: %s; trying again in %.0f s",
                    unreachable_error(exc),
                    HEARTBEAT_S,
                    extra={"run_id": self.stats.run_id},
                )

    async def execute(self) -> RunOutcome:
        error: PhonesyncError | None = None
        try:
            await self.phases()
            if self.stop is not None and self.stop.requested:
                self.record_stop()
            else:
                await self.checkpoint()
                self.stats.status = self.verdict()
        except RunAborted as exc:
            error = exc
            self.stats.status = "failed"
            self.stats.error = redact(str(exc))
            log.error("run failed: %s", self.stats.error, extra={"run_id": self.stats.run_id})
            if self.plan is not None:
                self.fail_remaining(self.plan, f"run aborted ({type(exc).__name__})")
        except PhonesyncError:
            raise
        except Exception as exc:
            if is_unreachable(exc):  # one line, no traceback: exit 6
                error = self.lose_ledger(exc)
                log.error(
                    "run failed: %s; stopping the run", error, extra={"run_id": self.stats.run_id}
                )
                if self.plan is not None:
                    self.fail_remaining(self.plan, f"run aborted ({type(error).__name__})")
            else:
                error = RunAborted(f"internal error: {type(exc).__name__}: {redact(str(exc))}")
                self.stats.status = "failed"
                self.stats.error = str(error)
                log.exception(
                    "run failed with an internal error", extra={"run_id": self.stats.run_id}
                )
                if self.plan is not None:
                    self.fail_remaining(self.plan, "run aborted (internal error)")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            ours = self.stop is not None and self.stop.requested
            if not ours or (task is not None and task.cancelling()):
                self.interrupted()  # cancelled from outside (serve shutting down, lock lost)
                raise
            self.record_stop()  # the stop's grace ran out: rows in flight were cancelled
        except KeyboardInterrupt:
            self.interrupted()
            raise
        self.finish()
        if self.ledger_error is not None:
            if not self.recorded:
                await self.record_when_back()
            error = self.ledger_error  # nothing (more) could be recorded: exit 6 wins
        summary = self.stats.as_summary()
        return RunOutcome(stats=self.stats, error=error, summary=summary, preview=self.preview)

    async def phases(self) -> None:
        """Read, plan, apply; with a `StopRequest`, cancelled when its grace runs out."""
        if self.stop is None:
            await self.read_plan_apply()
            return
        work = asyncio.create_task(self.read_plan_apply())
        guard = asyncio.create_task(self.cancel_after_grace(work, self.stop))
        try:
            await work
        finally:
            guard.cancel()

    async def read_plan_apply(self) -> None:
        plan = await self.read_and_plan()
        if self.stop is not None and self.stop.requested:
            return
        await self.apply(plan)

    async def cancel_after_grace(self, work: asyncio.Task[None], stop: StopRequest) -> None:
        await stop.wait()
        grace = self.settings.shutdown_grace_s
        log.warning(
            "%s received: starting no new rows; %d rows in flight get %.0f s to finish",
            stop.reason,
            len(self.in_flight),
            grace,
            extra={"run_id": self.stats.run_id},
        )
        await stop.wait_forced(grace)
        if not work.done():
            log.warning(
                "cancelling the run's work (%d rows in flight)",
                len(self.in_flight),
                extra={"run_id": self.stats.run_id},
            )
            work.cancel()

    def record_stop(self) -> None:
        """A stopped run: `aborted`, every row not done recorded `failed` for a retry."""
        assert self.stop is not None  # noqa: S101 - only called after a stop request
        why = self.stop.reason or "stop request"
        self.stats.status = "aborted"
        plan = self.plan
        if plan is None:
            self.stats.error = f"interrupted by {why} before the plan was ready: no row attempted"
        else:
            left, cut = self.fail_remaining(plan, f"run aborted ({why})")
            self.stats.error = (
                f"interrupted by {why}: {left - cut:,} rows not attempted, "
                f"{cut:,} cancelled in flight (`phonesync retry {self.stats.run_id}` "
                "takes them)"
            )
        log.error("run aborted: %s", self.stats.error, extra={"run_id": self.stats.run_id})

    def interrupted(self) -> None:
        self.stats.status = "aborted"
        self.stats.error = "interrupted"
        if self.plan is not None:
            self.fail_remaining(self.plan, "run interrupted")
        self.finish()

    def verdict(self) -> str:
        self.flush()  # the repeat count below reads this run's rows from the ledger
        warnings = run_anomalies(
            self.stats,
            not_found_threshold=self.settings.not_found_threshold,
            invalid_threshold=self.settings.invalid_threshold,
            repeated_not_found=self.ledger.repeated_not_found(self.stats.run_id),
            source=self.source_dates(),
            quiet_nights=self.settings.quiet_nights,
        )
        for warning in warnings:
            log.warning("run completed with failures: %s", warning)
        if warnings:
            self.stats.warnings = warnings
            self.stats.error = "; ".join(warnings)
        return run_verdict(self.stats, self.settings.failure_threshold)

    def source_dates(self) -> SourceDates | None:
        """The source's dates for its checks: None for a retry (it replays its parent's input)."""
        if self.plan is None:
            return None
        return source_dates_for(self.settings, self.request, self.plan, self.now())

    def finish(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            if is_unreachable(exc):
                self.lose_ledger(exc)
            else:
                log.exception("could not record the last rows", extra={"run_id": self.stats.run_id})
                self.pending = []
                self.stats.status = "failed"
                self.stats.error = self.stats.error or "internal error while recording rows"
        self.stats.finished_at = self.now()
        self.stats.cpu_s = time.process_time() - self.cpu_started
        if self.ledger_error is None:
            try:
                self.record_end()
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                self.lose_ledger(exc)
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

    def record_end(self) -> None:
        """Record the rows not recorded yet, then the run's end (status, summary, error)."""
        self.flush()
        self.ledger.finish_run(
            self.stats.run_id,
            status=self.stats.status,
            summary=self.stats.as_summary(),
            finished_at=self.stats.finished_at or self.now(),
            error=self.stats.error,
        )
        self.recorded = True

    # --- the ledger unreachable -----------------------------------------------------------------
    def lose_ledger(self, exc: BaseException) -> LedgerUnavailable:
        """The ledger cannot be reached: the run is `failed` with `LedgerUnavailable` (exit 6)."""
        if self.ledger_error is None:
            self.ledger_error = unreachable_error(exc)
        self.stats.status = "failed"
        self.stats.error = (
            f"{self.ledger_error}: the run stopped; the rows not done are recorded failed "
            f"(`phonesync retry {self.stats.run_id}` takes them)"
        )
        return self.ledger_error

    async def record_when_back(self) -> None:
        """Try for `PHONESYNC_LEDGER_WAIT_S` to record the rows not recorded and the run's end.

        From a thread, every `LEDGER_RETRY_S`: `serve`'s event loop keeps answering. If the
        ledger stays away, the run stays `running` there; the next run marks it `aborted` once
        its lock is stale (`mark_abandoned_runs`), and `stats.error` says so.
        """
        wait = self.settings.ledger_wait_s
        deadline = time.monotonic() + wait
        log.warning(
            "trying for %g s (PHONESYNC_LEDGER_WAIT_S) to record %d rows and the run's end",
            wait,
            len(self.pending),
            extra={"run_id": self.stats.run_id},
        )
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(LEDGER_RETRY_S, left))
            try:
                await asyncio.to_thread(self.record_end)
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                continue
            log.warning(
                "the ledger is reachable again: the run is recorded failed, with every row",
                extra={"run_id": self.stats.run_id},
            )
            return
        self.stats.error = (
            f"{self.ledger_error}: the run stopped, and the ledger stayed unreachable for "
            f"PHONESYNC_LEDGER_WAIT_S ({wait:g} s): {len(self.pending):,} row outcomes and the "
            "run's end are not recorded; the run stays `running` in the ledger and the next run "
            "marks it aborted (once its lock is stale, PHONESYNC_LOCK_STALE_S)"
        )

    async def checkpoint(self) -> None:
        """Record the rows done so far; an unreachable ledger is waited for `LEDGER_BLIP_S`."""
        deadline = time.monotonic() + LEDGER_BLIP_S
        while True:
            try:
                self.flush()
            except Exception as exc:
                if not is_unreachable(exc) or time.monotonic() >= deadline:
                    raise
                if not self.ledger_waiting:  # once per blip, not once per row task
                    self.ledger_waiting = True
                    log.warning(
                        "%s; waiting up to %g s for it",
                        unreachable_error(exc),
                        LEDGER_BLIP_S,
                        extra={"run_id": self.stats.run_id},
                    )
            else:
                if self.ledger_waiting:
                    self.ledger_waiting = False
                    log.info("the ledger is reachable again", extra={"run_id": self.stats.run_id})
                return
            await asyncio.sleep(0.25)

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
        self.plan = plan
        for early in plan.early:
            self.add(early_row(early), early.result.outcome, applied_work=False)
        await self.checkpoint()
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
        """The pre-flight always (a dead server or a refused key must fail even a night with
        nothing to write), then every work item."""
        if plan.work:
            if self.progress is not None:
                self.progress.start(len(plan.work))
            self.projection = RunProjection(self.settings.run_window_s)
            self.projection.planned(len(plan.work))
        async with self.fhir_factory(self.settings) as fhir:
            try:
                await fhir.preflight()
                if not plan.work or (self.stop is not None and self.stop.requested):
                    return
                updater = fhir.updater(self.request.business_date)
                await self.apply_all(updater, plan.work, RowGate(fhir.useful_rows))
            finally:
                total, retries, by_status = fhir.request_stats()
                self.stats.requests_total = total
                self.stats.retries = retries
                self.stats.by_status = dict(by_status)
                self.stats.batches, self.stats.batched = fhir.batch_stats()

    async def apply_all(self, updater: RowUpdater, work: Sequence[WorkItem], gate: RowGate) -> None:
        """Every work item, by `concurrency` workers; `gate` says how many rows may be in
        progress at once (admission.py)."""
        queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)
        workers = [
            asyncio.create_task(self.worker(updater, queue, gate))
            for _ in range(min(self.settings.concurrency, len(work)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def worker(
        self, updater: RowUpdater, queue: asyncio.Queue[WorkItem], gate: RowGate
    ) -> None:
        while not queue.empty() and not self.stopping():
            await gate.enter()
            if queue.empty() or self.stopping():  # while we waited for room
                gate.leave()
                break
            item = queue.get_nowait()
            self.in_flight.add(item.row)
            try:
                with bind_row(item.row):
                    result = await updater.update(item, dry_run=self.request.dry_run)
            finally:
                gate.leave()
            # not in a `finally`: a row whose update was cancelled or raised stays in flight
            self.in_flight.discard(item.row)
            if result.patient_id is not None or result.outcome in _LOOKUP_ANSWERS:
                self.stats.searched += 1
            self.add(work_row(item, result), result.outcome, old_phone=result.old_phone)
            self.patient_ids.learn(item, result)
            if self.projection is not None:
                self.projection.advance()
            if (
                len(self.pending) >= RECORD_BATCH
                or time.monotonic() - self.flushed_at >= CHECKPOINT_S
            ):
                await self.checkpoint()

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.requested

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
            try:
                self._record(self.pending)
            except ValueError:
                # Some are recorded already: a batch whose commit landed while the ledger went
                # away, its answer lost. Record the rest; a real duplicate raises again.
                recorded = self.ledger.recorded_rows(self.stats.run_id)
                rest = [r for r in self.pending if r.row not in recorded]
                if len(rest) == len(self.pending):
                    raise
                self._record(rest)
            self.pending = []
        if self.patient_ids:
            found, gone = self.patient_ids.take()
            self.ledger.update_patient_ids(found, gone, seen_at=self.now())
        self.flushed_at = time.monotonic()

    def _record(self, rows: list[LedgerRow]) -> None:
        if rows:
            self.ledger.record_results(
                self.stats.run_id,
                rows,
                apply=not self.request.dry_run,
                recorded_at=self.now(),  # the injected clock: newer-wins compares with it
            )

    def fail_remaining(self, plan: Plan, why: str) -> tuple[int, int]:
        """Record every work item not done `failed`; `why`: e.g. "run aborted (SIGTERM)".

        Rows never handed to the updater are "not attempted: {why}"; rows cut off in flight
        (`in_flight`: a request may have been sent) say so, and that their write may have
        landed. Returns (rows recorded, of which in flight).
        """
        not_attempted = f"not attempted: {why}"
        cut_off = f"interrupted: {why} while this row was in flight"
        if not self.request.dry_run:
            cut_off = f"{cut_off}; {MAY_HAVE_LANDED}"
        left = cut = 0
        for item in plan.work:
            if item.row not in self.done_rows:
                in_flight = item.row in self.in_flight
                reason = cut_off if in_flight else not_attempted
                result = RowResult(row=item.row, outcome=Outcome.FAILED, reason=reason)
                self.add(work_row(item, result), Outcome.FAILED)
                left, cut = left + 1, cut + in_flight
        return left, cut
