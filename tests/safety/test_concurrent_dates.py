"""Runs for two dates at once: the older date's run is refused while the newer one writes.

A replay of D−1 started during night D would plan before D recorded what it applied, so
newer-wins could not see D's numbers and the older ones would land on top. One run lock per
ledger (any date) prevents it. Real sandboxes, real `phonesync run` processes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, D, mobiles, nik_for, patient

BIRTH = date(1990, 1, 20)
COUNT = 60


def _data() -> tuple[list[dict[str, Any]], list[list[Any]]]:
    niks = [nik_for(BIRTH, "female", n) for n in range(1, COUNT + 1)]
    patients = [
        patient(f"P{i:03d}", nik, BIRTH, "female", f"+6281100{i:05d}") for i, nik in enumerate(niks)
    ]
    rows: list[list[Any]] = [list(HEADER)]
    rows += [[nik, f"0812-2000-{i:04d}", "15/03/2024"] for i, nik in enumerate(niks)]  # D: newer
    rows += [[nik, f"0813-1000-{i:04d}", "14/03/2024"] for i, nik in enumerate(niks)]  # D−1
    return patients, rows


def _run(env: Path, day: date) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "phonesync", "--env-file", str(env), "run", "--date", str(day)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_an_older_date_cannot_run_while_a_newer_one_is_writing(tmp_path: Path) -> None:
    """D is writing when D−1 starts: D−1 exits 5, and every patient keeps D's number."""
    patients, rows = _data()
    profile = FhirProfile(latency_ms=40, write_latency_ms=60)
    overrides = {"concurrency": 4, "sync_mode": "daily"}
    with LocalSandbox(patients, rows, tmp_path, profile=profile, overrides=overrides) as sb:
        env = sb.write_env(tmp_path / "sb.env")
        newer = _run(env, D)
        deadline = time.monotonic() + 60
        while sb.store.writes == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sb.store.writes > 0, "night D never started writing"
        older = _run(env, D - timedelta(1))
        older_err = older.communicate(timeout=120)[1].decode()
        newer_err = newer.communicate(timeout=120)[1].decode()
        numbers = {p["id"]: mobiles(sb, p["id"]) for p in patients}
        versions = {p["id"]: sb.store.version_count(p["id"]) for p in patients}
    assert older.returncode == 5, older_err
    assert "another run is in progress (for 2024-03-15)" in older_err
    assert newer.returncode == 0, newer_err
    assert numbers == {f"P{i:03d}": [f"+62812200{i:05d}"] for i in range(COUNT)}
    assert set(versions.values()) == {2}
