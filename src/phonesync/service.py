"""`phonesync serve`: the long-running service — scheduler, background runs, one ASGI app.

    service = Service(settings, ledger)            # metrics registry, jobs, schedule, WebContext
    app = service.app()                            # /healthz /readyz /metrics + the dashboard
    uvicorn.Server(uvicorn.Config(app, …)).run()   # the app's lifespan starts and stops it all

On start (in the server's event loop): the scheduler starts, and when `catch_up_missed` is on, the
last scheduled night that has no run in the ledger is run right away. On stop: the scheduler stops,
running jobs stop as `phonesync run` does on SIGTERM — no new rows, rows in flight get
`PHONESYNC_SHUTDOWN_GRACE_S` to finish, then are cancelled (`BackgroundJobs.shutdown`); their runs
are recorded `aborted` with every row, their date lock released.
Tests build a `Service` with a sandbox's settings, an injected clock and FHIR factory, call
`await service.start()` themselves and drive the schedule with `await service.schedule.fire()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from starlette.applications import Starlette

from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics
from phonesync.scheduler import NightlySchedule
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.source.rows import RowSource
from phonesync.sync import FhirFactory
from phonesync.web.app import create_app
from phonesync.web.context import WebContext
from phonesync.web.jobs import BackgroundJobs, RunDeps

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Service:
    """Everything `serve` runs, wired once; `context` is what the web app sees."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        metrics: Metrics | None = None,
        now: Callable[[], datetime] = _utc_now,
        source_factory: Callable[[Settings], RowSource] = open_source,
        fhir_factory: FhirFactory | None = None,
    ) -> None:
        self.settings, self.ledger = settings, ledger
        self.metrics = metrics or Metrics()
        self.metrics.restore(ledger.list_runs(limit=50))  # not "never succeeded" after a restart
        deps = RunDeps(settings, ledger, self.metrics, source_factory, fhir_factory, now)
        self.jobs = BackgroundJobs(deps)
        self.schedule = NightlySchedule(settings, ledger, self.jobs, now=now)
        self.context = WebContext(settings, ledger, self.jobs, self.schedule, self.metrics)
        self.catch_up_job: str | None = None

    async def start(self) -> None:
        """Start the scheduler (and the catch-up run) in the running event loop."""
        self.jobs.attach(asyncio.get_running_loop())
        self.schedule.start()
        if self.settings.catch_up_missed:
            self.catch_up_job = self.schedule.catch_up()
        next_run = self.schedule.next_run_time()
        log.info("service started", extra={"next_run": next_run.isoformat() if next_run else None})

    async def stop(self) -> None:
        self.schedule.shutdown()
        await self.jobs.shutdown()
        log.info("service stopped")

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def app(self) -> Starlette:
        """The ASGI app, starting and stopping the service with the server."""
        return create_app(self.context, lifespan=self.lifespan)


def serve(settings: Settings) -> int:
    """Run the service until SIGINT/SIGTERM (uvicorn handles the signals)."""
    import uvicorn

    settings.require_for_run()
    ledger = Ledger.open(settings.database_url)
    try:
        service = Service(settings, ledger)
        config = uvicorn.Config(
            service.app(),
            host=settings.serve_host,
            port=settings.serve_port,
            lifespan="on",
            ws="none",  # no websockets: nothing to upgrade, fewer dependencies on the path
            access_log=False,  # request lines could carry query strings; our own logs suffice
            log_config=None,  # keep phonesync's masking log handler
        )
        uvicorn.Server(config).run()
    finally:
        ledger.close()
    return 0
