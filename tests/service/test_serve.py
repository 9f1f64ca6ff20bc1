"""`phonesync serve`: a scheduled night through the real app on loopback, catch-up, the lock."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from tests.service.conftest import DAY, JAKARTA, NIGHT

from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.service import Service
from phonesync.sync import RunRequest
from phonesync.web.app import create_app


@asynccontextmanager
async def served(service: Service) -> AsyncIterator[str]:
    """The service's app under uvicorn on a loopback socket; yields the base URL."""
    started = asyncio.Event()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with service.lifespan(app):
            started.set()
            yield

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    app = create_app(service.context, lifespan=lifespan)
    config = uvicorn.Config(app, lifespan="on", ws="none", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await started.wait()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_a_scheduled_night_runs_and_metrics_show_its_counts(
    sandbox: LocalSandbox, ledger: Ledger, night: SandboxData
) -> None:
    """The 23:00 WIB fire runs that date against the sandbox; /metrics counts rows by outcome."""
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    async with served(service) as base, aiohttp.ClientSession() as http:
        job_id = await service.schedule.fire()
        assert job_id is not None
        status = await service.jobs.wait(job_id)
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            metrics = samples(await resp.text())
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["checks"] == {"ledger": "ok", "scheduler": "running"}
    assert status is not None
    assert status.state == "finished"
    assert status.status == "succeeded"
    run = ledger.get_run(status.run_id or "")
    assert run is not None
    assert run.business_date == DAY
    assert run.trigger == "schedule"
    expected = Counter(night.expected.values())
    for outcome, count in expected.items():
        assert metrics[("phonesync_rows_total", (("outcome", outcome),))] == count
    assert status.outcomes == dict(expected)
    assert status.done == status.total > 0
    assert metrics[("phonesync_run_status", (("status", "succeeded"),))] == 1
    assert metrics[("phonesync_last_success_timestamp_seconds", ())] > 0
    fhir = sum(v for (name, _), v in metrics.items() if name == "phonesync_fhir_requests_total")
    assert fhir == sandbox.fhir_requests()
    assert sandbox.store.writes == expected["updated"]


async def test_a_restarted_serve_shows_the_ledgers_last_night_not_zero(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """A fresh `serve` (a restart, a new pod) reads the ledger: /metrics shows the last night's
    status and its finish as the last success, not 0 and no status (fresh-user test)."""
    first = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    async with served(first):
        job_id = await first.schedule.fire()
        assert job_id is not None
        done = await first.jobs.wait(job_id)
    assert done is not None
    assert done.status == "succeeded"
    run = ledger.get_run(done.run_id or "")
    assert run is not None
    assert run.finished_at is not None
    restarted = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    async with (
        served(restarted) as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics") as resp,
    ):
        metrics = samples(await resp.text())
    assert metrics[("phonesync_run_status", (("status", "succeeded"),))] == 1
    assert metrics[("phonesync_run_status", (("status", "failed"),))] == 0
    last = metrics[("phonesync_last_success_timestamp_seconds", ())]
    assert last == pytest.approx(run.finished_at.timestamp())


def test_the_next_fire_is_23_00_in_jakarta_which_is_16_00_utc(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """Default schedule `0 23 * * *` in Asia/Jakarta: the next fire after noon is 16:00 UTC."""
    noon = datetime(2024, 3, 15, 12, 0, tzinfo=JAKARTA)
    service = Service(sandbox.settings, ledger, now=lambda: noon)
    assert service.schedule.next_run_time() == datetime(2024, 3, 15, 16, 0, tzinfo=UTC)
    late = noon + timedelta(hours=11, minutes=30)  # 23:30 WIB: tomorrow's 23:00
    service = Service(sandbox.settings, ledger, now=lambda: late)
    assert service.schedule.next_run_time() == datetime(2024, 3, 16, 16, 0, tzinfo=UTC)


def test_schedule_off_leaves_runs_to_an_external_trigger(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """`PHONESYNC_SCHEDULE=off`: no next run and no catch-up (a CronJob starts the nights)."""
    settings = sandbox.settings.model_copy(update={"schedule": "off"})
    noon = datetime(2024, 3, 15, 12, 0, tzinfo=JAKARTA)
    service = Service(settings, ledger, now=lambda: noon)
    assert service.schedule.next_run_time() is None
    assert service.schedule.missed_date() is None


async def test_a_night_missed_while_down_is_run_on_start_up_once(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """Started at 06:00 WIB after a missed 23:00, the service runs the previous date, then not."""
    morning = datetime(2024, 3, 16, 6, 0, tzinfo=JAKARTA)
    settings = sandbox.settings.model_copy(update={"catch_up_missed": True})
    service = Service(settings, ledger, now=lambda: morning)
    await service.start()
    try:
        assert service.catch_up_job is not None
        status = await service.jobs.wait(service.catch_up_job)
    finally:
        await service.stop()
    assert status is not None
    assert status.state == "finished"
    run = ledger.get_run(status.run_id or "")
    assert run is not None
    assert run.business_date == DAY
    assert run.trigger == "schedule"
    again = Service(settings, ledger, now=lambda: morning)
    await again.start()
    await again.stop()
    assert again.catch_up_job is None


async def test_a_date_locked_by_another_replica_is_skipped_without_writes(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """The ledger lock held elsewhere: the fire logs and skips; nothing is written."""
    ledger.acquire_lock(DAY, "other-run", "replica-b:1", stale_after_s=300, now=NIGHT)
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    await service.start()
    try:
        job_id = await service.schedule.fire()
        assert job_id is not None
        status = await service.jobs.wait(job_id)
    finally:
        await service.stop()
    assert status is not None
    assert status.state == "failed"
    assert "other-run" in (status.error or "")
    assert sandbox.store.writes == 0


async def test_one_job_per_date_in_one_process(sandbox: LocalSandbox, ledger: Ledger) -> None:
    """Starting a date that is already running returns the running job."""
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    await service.start()
    try:
        first = service.jobs.start(RunRequest(DAY, trigger="manual"), actor="a")
        second = service.jobs.start(RunRequest(DAY, trigger="manual"), actor="b")
        assert first == second
        assert [j.job_id for j in service.jobs.active()] == [first]
        await service.jobs.wait(first)
    finally:
        await service.stop()
    assert service.jobs.active() == []


async def test_preview_is_a_dry_run_with_the_per_row_changes(
    sandbox: LocalSandbox, ledger: Ledger, night: SandboxData
) -> None:
    """preview() writes nothing and returns the summary and every row's masked outcome."""
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    result = await service.jobs.preview(RunRequest(DAY))
    assert result["error"] is None
    assert result["summary"]["dry_run"] is True
    assert {c["row"]: c["outcome"] for c in result["changes"]} == night.expected
    assert all("*" in c["nik"] for c in result["changes"] if c["nik"])
    assert sandbox.store.writes == 0


async def test_pause_is_kept_in_the_ledger_across_restarts(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """A paused schedule stays paused for a new service; a fire then starts nothing."""
    first = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    first.schedule.pause()
    second = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    assert second.schedule.paused is True
    assert second.schedule.next_run_time() is None
    assert await second.schedule.fire() is None
    second.schedule.resume()
    assert first.schedule.paused is False
    assert first.schedule.next_run_time() is not None


def test_pause_state_on_postgresql(empty_postgres_url: str, sandbox: LocalSandbox) -> None:
    """The service_state table works on PostgreSQL too (pause, reopen, resume)."""
    settings = sandbox.settings.model_copy(update={"database_url": empty_postgres_url})
    with Ledger.open(empty_postgres_url) as pg:
        Service(settings, pg, now=lambda: NIGHT).schedule.pause()
    with Ledger.open(empty_postgres_url) as pg:
        schedule = Service(settings, pg, now=lambda: NIGHT).schedule
        assert schedule.paused is True
        schedule.resume()
        assert schedule.paused is False


async def test_readyz_fails_while_the_scheduler_is_not_running(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """Without a started scheduler /readyz answers 503 and says why; /healthz stays 200."""
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    transport = httpx.ASGITransport(app=create_app(service.context))  # no lifespan: not started
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["scheduler"] == "not running"
        assert (await client.get("/healthz")).status_code == 200


async def test_a_job_can_be_started_from_a_worker_thread(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """Sync endpoints run in a thread pool: start() from there runs the job on the loop."""
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    await service.start()
    try:
        job_id = await asyncio.to_thread(service.jobs.start, RunRequest(DAY), actor="thread")
        status = await service.jobs.wait(job_id)
    finally:
        await service.stop()
    assert status is not None
    assert status.state == "finished"


async def test_a_replay_or_preview_in_serve_leaves_the_nights_status_alone(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """The night after DAY failed: a good replay of DAY, and a preview, do not turn /metrics'
    run status to succeeded nor set the last success (PhonesyncRunFailed keeps firing)."""
    later = DAY + timedelta(days=1)
    started = datetime(2024, 3, 16, 16, 0, tzinfo=UTC)
    ledger.create_run(
        run_id="later-failed",
        business_date=later,
        trigger="schedule",
        config={},
        dry_run=False,
        started_at=started,
    )
    ledger.finish_run("later-failed", status="failed", summary={}, finished_at=started)
    service = Service(sandbox.settings, ledger, now=lambda: NIGHT)
    service.metrics.run_finished({"status": "failed"})  # what serve's own failed night left
    registry = service.metrics.registry
    await service.start()
    try:
        job = service.jobs.start(RunRequest(DAY, trigger="replay"), actor="olga")
        status = await service.jobs.wait(job)
        assert status is not None
        assert status.status == "succeeded"
        await service.jobs.preview(RunRequest(later))
    finally:
        await service.stop()
    assert registry.get_sample_value("phonesync_run_status", {"status": "failed"}) == 1
    assert registry.get_sample_value("phonesync_run_status", {"status": "succeeded"}) == 0
    assert registry.get_sample_value("phonesync_last_success_timestamp_seconds") == 0
