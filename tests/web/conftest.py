"""Fixtures for the dashboard: a real SQLite ledger with one recorded night, the real app, and
fakes only at the edge (`Jobs`, `Schedule`) for tests that do not run syncs."""

from __future__ import annotations

import asyncio
import re
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.exceptions import StarletteDeprecationWarning

from phonesync.ledger import Ledger, LedgerRow
from phonesync.masking import keyed_hash, mask_nik, mask_phone
from phonesync.outcomes import Outcome
from phonesync.settings import Settings
from phonesync.sync import FhirFactory, FhirSession, RunRequest
from phonesync.web.app import create_app
from phonesync.web.context import JobStatus, PreviewDone, PreviewJob, WebContext

with warnings.catch_warnings():
    # Starlette 1.x would like `httpx2` behind its TestClient; the locked `httpx` works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

HASH_KEY = "web-test-hash-key"
PASSWORD = "correct horse battery"
# Cheap argon2 parameters: the hash format (and so the code path) is the same as in production.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
USERS = f"olga:operator:{FAST.hash(PASSWORD)},victor:viewer:{FAST.hash(PASSWORD)}"
DAY = date(2024, 3, 15)
STARTED = datetime(2024, 3, 15, 16, 0, tzinfo=UTC)  # 23:00 in Jakarta
RUN_ID = "20240315T160000Z-abc123"
NIK = "3174014203950001"


def nik_of(i: int) -> str:
    return f"31740142039{i:05d}"


@dataclass
class FakeJobs:
    """Records what the dashboard asked for; never runs anything.

    A preview ends at once (2 rows would be updated; its rows are the fixture night's), unless
    `hold_previews` is set: then it stays running, and a second ask joins it, until
    `end_preview()`.
    """

    started: list[tuple[RunRequest, str]] = field(default_factory=list)
    previews: list[RunRequest] = field(default_factory=list)
    hold_previews: bool = False
    preview_jobs: dict[str, PreviewJob] = field(default_factory=dict)
    hooks: dict[str, list[PreviewDone]] = field(default_factory=dict)

    def start(self, request: RunRequest, *, actor: str) -> str:
        self.started.append((request, actor))
        return f"job{len(self.started)}"

    def status(self, job_id: str) -> JobStatus | None:
        if not job_id.startswith("job"):
            return None
        return JobStatus(job_id=job_id, state="running", run_id=RUN_ID, done=5, total=10)

    def active(self) -> list[JobStatus]:
        return []

    def start_preview(
        self, request: RunRequest, *, actor: str, on_done: PreviewDone | None = None
    ) -> tuple[str, bool]:
        hooks = [on_done] if on_done else []
        for job_id, job in self.preview_jobs.items():
            if job.request == request and job.status.state == "running":
                self.hooks[job_id] += hooks
                return job_id, True
        self.previews.append(request)
        job_id = f"pv{len(self.previews)}"
        status = JobStatus(job_id=job_id, state="running", run_id=RUN_ID, done=1, total=4)
        self.preview_jobs[job_id] = PreviewJob(status, request, actor)
        self.hooks[job_id] = hooks
        if not self.hold_previews:
            self.end_preview(job_id)
        return job_id, False

    def preview_job(self, job_id: str) -> PreviewJob | None:
        return self.preview_jobs.get(job_id)

    def end_preview(self, job_id: str, error: str | None = None) -> None:
        """The dry run ends: with a summary, or failed with `error` before it could start."""
        job = self.preview_jobs[job_id]
        if error is None:
            outcomes = dict.fromkeys((o.value for o in Outcome), 0) | {"updated": 2}
            job.summary = {"rows": {"in_scope": 2}, "outcomes": outcomes, "requests": {"total": 6}}
            job.status.state, job.status.status, job.status.done = "finished", "succeeded", 4
        else:
            job.status.state, job.status.error, job.status.run_id = "failed", error, None
        for hook in self.hooks.pop(job_id):
            hook(job)


class Gate:
    """A FHIR factory that holds every run at the FHIR door while the test keeps it closed.

    A run (a preview's dry run) that reaches it cannot end until `closed()` is left: the test,
    not the clock, decides when it may go on. `closed(fail=exc)` makes the next run raise `exc`
    there instead, as an unreachable FHIR server would. `arrived` counts the runs that came.
    Works across threads (uvicorn's loop in one, the test in another).
    """

    def __init__(self, factory: FhirFactory) -> None:
        self._factory = factory
        self._open = threading.Event()
        self._open.set()
        self.arrived = 0
        self.fail: Exception | None = None

    @contextmanager
    def closed(self, fail: Exception | None = None) -> Iterator[None]:
        self._open.clear()
        self.fail = fail
        try:
            yield
        finally:
            self._open.set()

    @asynccontextmanager
    async def fhir(self, settings: Settings) -> AsyncIterator[FhirSession]:
        self.arrived += 1
        await asyncio.to_thread(self._open.wait)  # returns at once while open
        failure, self.fail = self.fail, None
        if failure is not None:
            raise failure
        async with self._factory(settings) as session:
            yield session


@dataclass
class FakeSchedule:
    paused: bool = False

    def next_run_time(self) -> datetime | None:
        return None if self.paused else datetime(2024, 3, 16, 16, 0, tzinfo=UTC)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


def record_night(ledger: Ledger, run_id: str = RUN_ID, failed: int = 3, rows: int = 20) -> None:
    """One finished night: `rows` rows, the last `failed` of them `failed`."""
    ledger.create_run(
        run_id=run_id,
        business_date=DAY,
        trigger="schedule",
        config={"x": 1},
        dry_run=False,
        started_at=STARTED,
    )
    batch = []
    for i in range(rows):
        nik, phone = nik_of(i), f"+62812345{i:05d}"
        outcome = Outcome.FAILED if i >= rows - failed else Outcome.UPDATED
        batch.append(
            LedgerRow(
                row=i + 2,
                outcome=outcome,
                nik_hash=keyed_hash(nik, HASH_KEY.encode()),
                nik_masked=mask_nik(nik),
                phone_hash=keyed_hash(phone, HASH_KEY.encode()),
                phone_masked=mask_phone(phone),
                moment=STARTED,
                reason="PUT rejected: 422 invalid" if outcome is Outcome.FAILED else None,
            )
        )
    ledger.record_results(run_id, batch, recorded_at=STARTED + timedelta(seconds=5))
    outcomes = ledger.outcome_counts(run_id)
    summary = {
        "run_id": run_id,
        "rows": {"in_scope": rows, "read": rows},
        "outcomes": outcomes,
        "duration_s": 12.5,
        "failure_ratio": failed / rows,
        "requests": {"total": 60, "retries": 2, "by_status": {"200": 57, "429": 3}},
    }
    status = "completed_with_failures" if failed / rows > 0.01 else "succeeded"
    ledger.finish_run(
        run_id, status=status, summary=summary, finished_at=STARTED + timedelta(seconds=12.5)
    )


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "hash_key": HASH_KEY,
        "dashboard_users": USERS,
        "dashboard_session_key": "test-session-key-0123456789",
        "dashboard_cookie_secure": False,
    }
    return Settings.load(env_file=None, **(values | overrides))


@dataclass
class Site:
    """The real app over a real ledger, with fake jobs/schedule, and a client."""

    ctx: WebContext
    jobs: FakeJobs
    schedule: FakeSchedule
    client: TestClient

    def login(self, name: str, password: str = PASSWORD) -> Any:
        token = csrf_from(self.client.get("/login").text)
        return self.client.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": token},
            follow_redirects=False,
        )

    def token(self, path: str = "/") -> str:
        return csrf_from(self.client.get(path).text)


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def build_site(tmp_path: Path, **overrides: Any) -> Iterator[Site]:
    settings = settings_for(tmp_path, **overrides)
    ledger = Ledger.open(settings.database_url)
    try:
        record_night(ledger)
        jobs, schedule = FakeJobs(), FakeSchedule()
        ctx = WebContext(settings, ledger, jobs, schedule)
        with TestClient(create_app(ctx), base_url="http://127.0.0.1") as client:
            yield Site(ctx, jobs, schedule, client)
    finally:
        ledger.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The dashboard with one recorded night (3 of 20 rows failed), nobody signed in."""
    yield from build_site(tmp_path)
