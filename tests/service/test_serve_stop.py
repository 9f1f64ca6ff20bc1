"""`serve` stopping (SIGTERM to the pod) during a dashboard job: the CLI's shutdown grace, and
no row whose write may have landed is recorded "not attempted"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.service.conftest import DAY
from tests.sync.nights import results_by_row, run_night, written_yet_unfinished

from phonesync.ledger.store import Ledger
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.service import Service
from phonesync.sync import RunRequest

#: Writes take 0.3 s on the server: when the service stops, PUTs are on the wire.
SLOW_WRITES = FhirProfile(write_latency_ms=300, write_latency_p99_ms=400)


@pytest.fixture(scope="module")
def night_300() -> SandboxData:
    return generate(seed=7, patients=400, rows=300, business_date=DAY)


@pytest.fixture
def slow_sandbox(
    tmp_path: Path, night_300: SandboxData, request: pytest.FixtureRequest
) -> Iterator[LocalSandbox]:
    overrides = {
        "concurrency": 8,
        "pacing": "fixed",
        "catch_up_missed": False,
        "shutdown_grace_s": request.param,
    }
    with LocalSandbox(
        night_300.patients, night_300.values, tmp_path, profile=SLOW_WRITES, overrides=overrides
    ) as sb:
        yield sb


async def _stop_mid_job(sb: LocalSandbox, ledger: Ledger) -> tuple[float, str | None, str]:
    """Start a replay from the dashboard's jobs, stop the service after 20 writes."""
    service = Service(sb.settings, ledger)
    await service.start()
    job_id = service.jobs.start(RunRequest(DAY, trigger="manual"), actor="operator")
    deadline = time.monotonic() + 60
    while sb.store.writes < 20:
        assert time.monotonic() < deadline, "the job wrote too slowly"
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await service.stop()  # what the lifespan does when uvicorn gets SIGTERM
    took = time.monotonic() - started
    status = service.jobs.status(job_id)
    assert status is not None
    return took, status.run_id, status.state


@pytest.mark.parametrize("slow_sandbox", [10.0], indirect=True, ids=["grace-10s"])
def test_serve_stopping_gives_rows_in_flight_the_shutdown_grace(
    slow_sandbox: LocalSandbox, night_300: SandboxData
) -> None:
    """PHONESYNC_SHUTDOWN_GRACE_S applies to `serve`'s jobs too: no new rows, the rows in
    flight finish (recorded with their real outcome), the rest "not attempted", `aborted`."""
    sb = slow_sandbox
    with Ledger.open(sb.settings.database_url) as ledger:
        took, run_id, state = asyncio.run(_stop_mid_job(sb, ledger))
        assert run_id is not None
        run = ledger.get_run(run_id)
    time.sleep(1.0)  # anything still on the wire lands now
    first = results_by_row(sb, run_id)
    writes = sb.store.writes
    assert run is not None
    assert state == "finished"
    assert run.status == "aborted"
    assert run.summary is not None
    assert "interrupted by serve shutdown" in (run.error or "")
    assert set(first) == set(night_300.expected)
    assert took < 5.0  # the rows in flight finished well inside the grace
    assert [r for r in first.values() if "in flight" in str(r.reason)] == []
    assert writes == run.summary["outcomes"]["updated"]  # every write landed is recorded
    unstarted = [r for r in first.values() if r.reason and r.reason.startswith("not attempted")]
    assert unstarted
    assert {r.reason for r in unstarted} == {"not attempted: run aborted (serve shutdown)"}


@pytest.mark.parametrize("slow_sandbox", [0.0], indirect=True, ids=["grace-0s"])
def test_serve_stopping_without_grace_never_calls_a_row_in_flight_not_attempted(
    slow_sandbox: LocalSandbox, night_300: SandboxData
) -> None:
    """With no grace the rows in flight are cancelled: those whose PUT landed say their write
    may have landed (not "not attempted"); the re-run reads them and writes nobody twice."""
    sb = slow_sandbox
    with Ledger.open(sb.settings.database_url) as ledger:
        _took, run_id, state = asyncio.run(_stop_mid_job(sb, ledger))
        assert state == "finished"
        assert run_id is not None
        run = ledger.get_run(run_id)
    time.sleep(1.0)
    first = results_by_row(sb, run_id)
    sb.settings = sb.settings.model_copy(update={"concurrency": 64})
    second = run_night(sb)
    second_rows = results_by_row(sb, second.stats.run_id)
    versions = {pid: sb.store.version_count(pid) for pid in sb.store.ids()}
    assert run is not None
    assert run.status == "aborted"
    landed = written_yet_unfinished(first, second_rows, night_300.expected)
    assert landed  # PUTs on the wire when the service stopped reached the server
    assert [r for r in landed.values() if r.startswith("not attempted")] == []
    assert all("in flight" in r and "may have landed" in r for r in landed.values())
    assert max(versions.values()) <= 2
