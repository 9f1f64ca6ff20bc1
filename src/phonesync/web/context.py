"""What the web app's pages and endpoints need from the running service, as small protocols.

`phonesync serve` builds one `WebContext` and hands it to `create_app`; tests build one with the
real ledger and a sandbox. The dashboard (web/dashboard/…) and the health/metrics endpoints only
talk to these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics
from phonesync.settings import Settings
from phonesync.sync import RunRequest


@dataclass
class JobStatus:
    """A background run as the dashboard shows it (live progress)."""

    job_id: str
    state: str  # queued | running | finished | failed
    run_id: str | None = None
    done: int = 0
    total: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    status: str | None = None  # the run's final status when finished
    error: str | None = None


class Jobs(Protocol):
    """Runs started from the service (schedule, dashboard), in the background, one per date."""

    def start(self, request: RunRequest, *, actor: str) -> str: ...
    def status(self, job_id: str) -> JobStatus | None: ...
    def active(self) -> list[JobStatus]: ...
    async def preview(self, request: RunRequest) -> dict[str, Any]: ...


class Schedule(Protocol):
    """The nightly trigger."""

    def next_run_time(self) -> datetime | None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    @property
    def paused(self) -> bool: ...


@dataclass
class WebContext:
    settings: Settings
    ledger: Ledger
    jobs: Jobs
    schedule: Schedule
    metrics: Metrics | None = None  # the service's registry, for /metrics
