"""The nightly trigger of `phonesync serve`: APScheduler 3 on the service's event loop.

    schedule = NightlySchedule(settings, ledger, jobs, now=clock)
    schedule.start()          # inside the running loop; honours a pause stored in the ledger
    await schedule.fire()     # what the cron trigger calls: today's date in the zone → a job
    schedule.missed_date()    # the last scheduled night with no run recorded (catch-up)

The cron expression (`PHONESYNC_SCHEDULE`, default `0 23 * * *`) is read in `PHONESYNC_TIMEZONE`
(default Asia/Jakarta): 23:00 WIB is 16:00 UTC whatever the machine's zone. A fire for a date that
is already running — here or on another replica — is skipped by the ledger's run lock.

Pause/resume is kept in the ledger (`service_state`), so it survives restarts and is seen by every
replica: `fire()` re-reads it before starting anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from phonesync.errors import ConfigError
from phonesync.ledger import service_state
from phonesync.ledger.store import Ledger
from phonesync.settings import Settings
from phonesync.sync import RunRequest
from phonesync.web.context import Jobs

log = logging.getLogger(__name__)

JOB_ID = "nightly"
#: How far back start-up looks for a missed night.
CATCH_UP_LOOKBACK = timedelta(hours=48)
#: A fire that comes this late (the loop was blocked, the host slept) still runs.
MISFIRE_GRACE_S = 3600


def _utc_now() -> datetime:
    return datetime.now(UTC)


def cron_trigger(settings: Settings) -> CronTrigger | None:
    """`settings.schedule` as a trigger in `settings.zone`; a bad expression is a ConfigError.

    `off` means no built-in schedule (a Kubernetes CronJob or Cloud Scheduler starts the runs;
    `serve` then only hosts the dashboard, health and metrics).
    """
    if settings.schedule.strip().lower() == "off":
        return None
    try:
        return CronTrigger.from_crontab(settings.schedule, timezone=settings.zone)
    except ValueError as exc:
        raise ConfigError(
            f"PHONESYNC_SCHEDULE {settings.schedule!r} is not a cron: {exc}"
        ) from None


def last_fire_before(trigger: CronTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """The trigger's latest fire time at or before `now`, looking back at most `lookback`."""
    last: datetime | None = None
    fire = trigger.get_next_fire_time(None, now - lookback)
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


class NightlySchedule:
    """Implements `web.context.Schedule`."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        jobs: Jobs,
        *,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._settings, self._ledger, self._jobs, self._now = settings, ledger, jobs, now
        self.trigger = cron_trigger(settings)
        self._scheduler = AsyncIOScheduler(timezone=settings.zone)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start the scheduler in the running event loop (no job when the schedule is off)."""
        if self.trigger is None:
            self._scheduler.start(paused=False)
            log.info("built-in schedule is off (PHONESYNC_SCHEDULE=off)")
            return
        self._scheduler.add_job(
            self.fire,
            self.trigger,
            id=JOB_ID,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=MISFIRE_GRACE_S,
        )
        self._scheduler.start(paused=False)
        if self.paused:
            self._scheduler.pause_job(JOB_ID)
        log.info("schedule started", extra={"schedule": self._settings.schedule})

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def fire(self) -> str | None:
        """The cron's job: a run for today's date in the zone, unless paused. Returns the job id."""
        if self.paused:
            log.info("schedule fired while paused: nothing started")
            return None
        today = self._now().astimezone(self._settings.zone).date()
        return self._jobs.start(RunRequest(today, trigger="schedule"), actor="schedule")

    def missed_date(self) -> date | None:
        """The business date of the last scheduled night if no run was recorded for it."""
        now = self._now()
        if self.trigger is None:
            return None
        last = last_fire_before(self.trigger, now, CATCH_UP_LOOKBACK)
        if last is None:
            return None
        day = last.astimezone(self._settings.zone).date()
        if self._ledger.latest_run_for(day, include_dry_run=False) is not None:
            return None
        return day

    def catch_up(self) -> str | None:
        """Start the missed night, if any and not paused; returns the job id."""
        day = self.missed_date()
        if day is None or self.paused:
            return None
        log.warning("the scheduled run for %s was missed: running it now", day)
        return self._jobs.start(RunRequest(day, trigger="schedule"), actor="catch-up")

    # --- Schedule protocol ------------------------------------------------------------------
    def next_run_time(self) -> datetime | None:
        if self.paused or self.trigger is None:
            return None
        fire: datetime | None = self.trigger.get_next_fire_time(None, self._now())
        return fire

    def pause(self) -> None:
        self._store_paused(True)

    def resume(self) -> None:
        self._store_paused(False)

    @property
    def paused(self) -> bool:
        return service_state.get(self._ledger.engine, service_state.SCHEDULE_PAUSED) == "true"

    def _store_paused(self, paused: bool) -> None:
        service_state.put(
            self._ledger.engine,
            service_state.SCHEDULE_PAUSED,
            "true" if paused else "false",
            now=self._now(),
        )
        if self._scheduler.running and self._scheduler.get_job(JOB_ID) is not None:
            (self._scheduler.pause_job if paused else self._scheduler.resume_job)(JOB_ID)
        log.info("schedule %s", "paused" if paused else "resumed")
