"""`phonesync sandbox --patients-file --sheet-file` + `phonesync run` as a user would type them."""

from __future__ import annotations

import csv
import io
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PATIENT = {
    "resourceType": "Patient",
    "id": "P00000000001",
    "identifier": [{"system": "https://fhir.kemkes.go.id/id/nik", "value": "3174014203950001"}],
    "name": [{"text": "Siti Aminah"}],
    "gender": "female",
    "birthDate": "1995-03-02",
    "telecom": [{"system": "email", "value": "a@example.org"}],
}
SHEET = {
    "values": [
        ["NIK", "No HP", "last_updated_date"],
        ["3174014203950001", "0822-2222-2222", "15/03/2024"],
        [3174013112850002, "0813-3333-4444", "2024-03-15"],  # a numeric NIK cell
        ["3174013112850002", "12345", "2024-03-15"],
    ]
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phonesync(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phonesync", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_user_files_through_sandbox_run_and_report(tmp_path: Path) -> None:
    """The user's NDJSON patients and JSON sheet: one CSV report line per row, contract names."""
    (tmp_path / "patients.ndjson").write_text(json.dumps(PATIENT) + "\n")
    (tmp_path / "sheet.json").write_text(json.dumps(SHEET))
    env_file = tmp_path / "sandbox.env"
    log = (tmp_path / "sandbox.log").open("wb")
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phonesync",
            "sandbox",
            "--patients-file",
            "patients.ndjson",
            "--sheet-file",
            "sheet.json",
            "--fhir-port",
            str(_port()),
            "--sheets-port",
            str(_port()),
            "--state-dir",
            "state",
            "--write-env",
            str(env_file),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert sandbox.poll() is None, (tmp_path / "sandbox.log").read_text()
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        run = _phonesync("--env-file", str(env_file), "run", "--date", "2024-03-15", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        report = _phonesync(
            "--env-file", str(env_file), "report", "latest", "--format", "csv", cwd=tmp_path
        )
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait(timeout=30)
        log.close()
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(report.stdout))}
    assert {k: v["outcome"] for k, v in rows.items()} == {
        "2": "updated",
        "3": "invalid_nik",
        "4": "invalid_phone",
    }
    assert rows["2"]["patient_id"] == "P00000000001"
    assert "3174014203950001" not in report.stdout
    assert "82222222222" not in report.stdout
