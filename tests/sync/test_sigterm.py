"""SIGTERM mid-run (Kubernetes's activeDeadlineSeconds): aborted, every row recorded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.sync.nights import DAY, results_by_row, run_night, written_yet_unfinished

from phonesync.cli import main
from phonesync.errors import FhirUnavailable
from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.source import open_source
from phonesync.sync import RunRequest, run_sync

#: Writes take 0.3 s on the server: whenever a run stops, PUTs are on the wire, and they land.
SLOW_WRITES = FhirProfile(write_latency_ms=300, write_latency_p99_ms=400)
MAY_HAVE_LANDED = "its write may have landed"


def _terminate_after_writes(sb: LocalSandbox, env: Path, summary: Path, writes: int) -> int:
    """Start `phonesync run` as a process, SIGTERM it after `writes` writes; its exit code."""
    command = [sys.executable, "-m", "phonesync", "--env-file", str(env), "run"]
    proc = subprocess.Popen(
        [*command, "--date", DAY.isoformat(), "--summary-json", str(summary)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while sb.store.writes < writes:
            assert proc.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline, "the run wrote too slowly"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGTERM)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _runs(env: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["--env-file", str(env), "runs", "--format", "json"]) == 0
    runs: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return runs


@pytest.mark.parametrize(
    ("grace_s", "latency_ms"), [(10.0, 4), (0.0, 150)], ids=["rows-finish", "rows-cancelled"]
)
def test_sigterm_mid_run_aborts_records_every_row_and_a_rerun_writes_nobody_twice(
    tmp_path: Path,
    synth_small: SandboxData,
    capsys: pytest.CaptureFixture[str],
    grace_s: float,
    latency_ms: int,
) -> None:
    """SIGTERM after ≥100 writes → exit 1, `aborted` in runs, summary file, a ledger record per
    row in scope; the re-run ends every row and sends no second write to any patient."""
    profile = FhirProfile(latency_ms=latency_ms, latency_p99_ms=2 * latency_ms)
    overrides = {"concurrency": 8, "pacing": "fixed", "shutdown_grace_s": grace_s}
    with LocalSandbox(
        synth_small.patients, synth_small.values, tmp_path, profile=profile, overrides=overrides
    ) as sb:
        env = sb.write_env(tmp_path / "run.env")
        summary_path = tmp_path / "summary.json"
        code = _terminate_after_writes(sb, env, summary_path, 100)
        stopped_writes = sb.store.writes
        time.sleep(1.0)  # any PUT still on the wire lands now
        landed_writes = sb.store.writes
        summary = json.loads(summary_path.read_text())
        [stopped] = _runs(env, capsys)
        rows = results_by_row(sb, summary["run_id"])

        sb.settings = sb.settings.model_copy(update={"concurrency": 64})  # a quicker re-run
        second = run_night(sb)

        second_rows = results_by_row(sb, second.stats.run_id)
        versions = {pid: sb.store.version_count(pid) for pid in sb.store.ids()}
    assert code == 1
    assert summary["status"] == stopped["status"] == "aborted"
    assert "interrupted by SIGTERM" in stopped["error"]
    assert set(rows) == set(synth_small.expected)  # one record per row in scope
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"] == len(rows)
    not_done = [r for r in rows.values() if r.reason and "run aborted (SIGTERM)" in r.reason]
    assert not_done
    assert all(r.outcome == "failed" for r in not_done)
    assert summary["outcomes"]["updated"] <= stopped_writes <= landed_writes
    if grace_s == 0.0:
        assert any("in flight" in str(r.reason) for r in not_done)
    assert second.stats.status in {"succeeded", "completed_with_failures"}
    assert set(second_rows) == set(synth_small.expected)
    assert sb.store.writes == landed_writes + second.summary["outcomes"]["updated"]
    assert max(versions.values()) <= 2  # never a second write to a patient


@pytest.fixture(scope="module")
def synth_300() -> SandboxData:
    """300 in-scope rows, most of them due an update."""
    return generate(seed=7, patients=400, rows=300, business_date=DAY)


def _slow_sandbox(tmp_path: Path, data: SandboxData) -> LocalSandbox:
    overrides = {"concurrency": 8, "pacing": "fixed"}
    return LocalSandbox(
        data.patients, data.values, tmp_path, profile=SLOW_WRITES, overrides=overrides
    )


async def _until_writes(sb: LocalSandbox, writes: int) -> None:
    deadline = time.monotonic() + 60
    while sb.store.writes < writes:
        assert time.monotonic() < deadline, "the run wrote too slowly"
        await asyncio.sleep(0.01)


def _rerun(sb: LocalSandbox) -> dict[int, Any]:
    """A quick re-run of the night after the writes on the wire have landed; its rows."""
    time.sleep(1.0)
    sb.settings = sb.settings.model_copy(update={"concurrency": 64})
    second = run_night(sb)
    assert second.stats.status in {"succeeded", "completed_with_failures"}
    return results_by_row(sb, second.stats.run_id)


def _assert_in_flight_rows_are_not_called_unattempted(
    first: dict[int, Any], second: dict[int, Any], expected: dict[int, str]
) -> dict[int, str]:
    landed = written_yet_unfinished(first, second, expected)
    assert set(first) == set(expected)  # one record per row in scope
    assert [r for r in landed.values() if r.startswith("not attempted")] == []
    assert all(MAY_HAVE_LANDED in r for r in landed.values()), landed
    unstarted = [r for r in first.values() if str(r.reason).startswith("not attempted")]
    assert unstarted  # rows never started keep "not attempted"
    return landed


def test_a_run_cancelled_from_outside_says_its_rows_in_flight_may_have_been_written(
    tmp_path: Path, synth_300: SandboxData
) -> None:
    """`serve` shutting down or a lost lock cancels the run's task: rows whose PUT was on the
    wire are recorded "interrupted … in flight" (write may have landed), never "not attempted";
    the re-run reads those records and ends them `unchanged` without a second write."""
    with _slow_sandbox(tmp_path, synth_300) as sb:
        ledger = Ledger.open(sb.settings.database_url)

        async def cancel_mid_run() -> None:
            sync = run_sync(
                sb.settings, ledger, open_source(sb.settings), RunRequest(DAY), open_fhir
            )
            task = asyncio.create_task(sync)
            await _until_writes(sb, 20)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        try:
            asyncio.run(cancel_mid_run())
            run = ledger.get_run("latest")
        finally:
            ledger.close()
        assert run is not None
        first = results_by_row(sb, run.run_id)
        second = _rerun(sb)
        versions = {pid: sb.store.version_count(pid) for pid in sb.store.ids()}
    assert run.status == "aborted"
    landed = _assert_in_flight_rows_are_not_called_unattempted(first, second, synth_300.expected)
    assert landed  # PUTs on the wire when the task was cancelled reached the server
    assert all(r.startswith("interrupted: run interrupted while") for r in landed.values())
    assert max(versions.values()) <= 2  # never a second write to a patient


def test_an_outage_abort_says_its_rows_in_flight_may_have_been_written(
    tmp_path: Path, synth_300: SandboxData
) -> None:
    """FhirUnavailable mid-run (credentials refused on one search, exit 4): the rows whose
    writes were in flight in the other tasks are not "not attempted"."""
    nik_col = synth_300.values[0].index("NIK")
    due = [r for r, o in sorted(synth_300.expected.items()) if o == "updated"]
    niks = [str(synth_300.values[r - 1][nik_col]) for r in due[60:]]
    nik = next(n for n in niks if n.isdigit() and len(n) == 16)
    with _slow_sandbox(tmp_path, synth_300) as sb:
        sb.store.faults.push(
            method="GET",
            path_prefix=f"/Patient?identifier=https://fhir.kemkes.go.id/id/nik|{nik}",
            status=401,
            body={"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]},
            times=2,  # the search, and its retry after re-authentication
        )
        stopped = run_night(sb)
        first = results_by_row(sb, stopped.stats.run_id)
        second = _rerun(sb)
    assert isinstance(stopped.error, FhirUnavailable)
    assert stopped.error.exit_code == 4
    assert stopped.stats.status == "failed"
    landed = _assert_in_flight_rows_are_not_called_unattempted(first, second, synth_300.expected)
    assert landed
    assert all(r.startswith("interrupted: run aborted (FhirUnavailable)") for r in landed.values())
