"""What the web app's pages and endpoints need from the running service, as small protocols.

`phonesync serve` builds one `WebContext` and hands it to `create_app`; tests build one with the
real ledger and a sandbox. The dashboard (web/dashboard/…) and the health/metrics endpoints only
talk to these protocols.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass
class PreviewJob:
    """A dry run started in the background for the dashboard's preview page.

    `status` is live while it runs (the same fields as a run's job); once it has ended,
    `summary` is the dry run's summary (empty if it could not start) and its rows are in the
    ledger under `status.run_id`.
    """

    status: JobStatus
    request: RunRequest  # the dry run (`dry_run=True`; a retry's keeps `retry_of`)
    actor: str  # who started it; later clicks for the same preview join it
    summary: dict[str, Any] = field(default_factory=dict)


#: Called once when a preview has ended (finished or failed), e.g. to write the audit entry.
PreviewDone = Callable[[PreviewJob], None]


class Jobs(Protocol):
    """Runs started from the service (schedule, dashboard), in the background, one per date."""

    def start(self, request: RunRequest, *, actor: str) -> str: ...
    def status(self, job_id: str) -> JobStatus | None: ...
    def active(self) -> list[JobStatus]: ...
    def start_preview(
        self, request: RunRequest, *, actor: str, on_done: PreviewDone | None = None
    ) -> tuple[str, bool]:
        """A dry run of `request` in the background: (its id, True if it joined a running one)."""
        ...

    def preview_job(self, job_id: str) -> PreviewJob | None: ...


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
