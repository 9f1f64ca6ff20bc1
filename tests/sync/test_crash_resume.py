"""`kill -9` mid-run, then a second run: every row ends, and no patient is written twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from tests.sync.nights import DAY, results_by_row, run_night

from phonesync.fhir.updater import UNCHANGED_ON_RECORD
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData

KEY = {"x-api-key": "sandbox-key"}


def _wait_for_writes(sb: LocalSandbox, proc: subprocess.Popen[bytes], writes: int) -> None:
    deadline = time.monotonic() + 120
    while sb.store.writes < writes:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run wrote too slowly"
        time.sleep(0.01)


def _new_versions(sb: LocalSandbox, pid: str) -> int:
    """New versions since seeding, counted from `GET Patient/{id}/_history` (plain FHIR)."""
    url = f"{sb.settings.fhir_base_url}/Patient/{pid}/_history"
    bundle = requests.get(url, headers=KEY, timeout=10).json()
    return int(bundle["total"]) - 1


def test_kill_9_mid_run_then_rerun_never_writes_a_row_twice(
    tmp_path: Path, synth_small: SandboxData
) -> None:
    """SIGKILL after ≥100 writes (no checkpoint yet); the next run ends every row, no 2nd write."""
    profile = FhirProfile(latency_ms=4, latency_p99_ms=8)
    overrides = {"concurrency": 4, "pacing": "fixed", "lock_stale_s": 0.2}
    with LocalSandbox(
        synth_small.patients, synth_small.values, tmp_path, profile=profile, overrides=overrides
    ) as sb:
        env = sb.write_env(tmp_path / "run.env")
        command = [sys.executable, "-m", "phonesync", "--env-file", str(env), "run"]
        summary = tmp_path / "summary.json"
        summary.write_text('{"status": "succeeded"}')  # the previous night's
        proc = subprocess.Popen(
            [*command, "--date", DAY.isoformat(), "--summary-json", str(summary)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_writes(sb, proc, 100)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert not summary.exists()  # a killed night leaves no "succeeded" behind
        killed_writes = sb.store.writes
        written = {r.raw_path_qs.rsplit("/", 1)[-1] for r in sb.store.requests if r.method == "PUT"}
        time.sleep(0.25)  # the dead run's lock goes stale (lock_stale_s = 0.2)

        second = run_night(sb)

        outcomes = second.summary["outcomes"]
        assert second.stats.status in {"succeeded", "completed_with_failures"}
        assert sum(outcomes.values()) == len(synth_small.expected)
        assert sb.store.writes == killed_writes + outcomes["updated"]  # no row written again
        assert all(sb.store.version_count(pid) <= 2 for pid in sb.store.ids())
        assert {_new_versions(sb, pid) for pid in written} == {1}
        rows = results_by_row(sb, second.stats.run_id)
        for row, outcome in synth_small.expected.items():
            if outcome == "updated":  # written before the kill, or by the second run
                assert rows[row].outcome in {"updated", "unchanged"}
            if rows[row].outcome == "unchanged":  # read back from FHIR, or settled by the ledger
                reason = rows[row].reason or ""
                assert reason == UNCHANGED_ON_RECORD or reason.startswith("already applied by run")
