"""SIGTERM mid-run (Kubernetes's activeDeadlineSeconds): aborted, every row recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.sync.nights import DAY, results_by_row, run_night

from phonesync.cli import main
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData


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
