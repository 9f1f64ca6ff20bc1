"""`phonesync run/report/runs/retry` as an operator uses them: exit codes, files, reports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.sync.nights import DAY

from phonesync.cli import main
from phonesync.ledger.store import Ledger
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.sheets_server import SheetsFaults
from phonesync.sandbox.synth import SandboxData, generate

NIK_A = "3174014203950001"


def _sandbox(tmp_path: Path, data: SandboxData, **kwargs: object) -> LocalSandbox:
    return LocalSandbox(data.patients, data.values, tmp_path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny() -> SandboxData:
    """60 in-scope rows: enough for every path, quick to run."""
    return generate(seed=5, patients=80, rows=60, business_date=DAY)


def test_run_writes_summary_and_report_csv(
    tmp_path: Path, tiny: SandboxData, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0, the summary file of the contract, and one masked CSV line per in-scope row."""
    with _sandbox(tmp_path, tiny) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        summary_path = tmp_path / "summary.json"
        code = main(
            ["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(summary_path)]
        )
        assert code == 0
        summary = json.loads(summary_path.read_text())
        assert set(summary["outcomes"]) == {
            "updated",
            "unchanged",
            "superseded",
            "invalid_nik",
            "invalid_phone",
            "invalid_date",
            "patient_not_found",
            "ambiguous_patient",
            "identity_mismatch",
            "conflict",
            "failed",
        }
        assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"] == 60
        capsys.readouterr()
        assert main(["--env-file", env, "report", "latest", "--format", "csv"]) == 0
        out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 60
    assert {"row", "nik", "phone", "outcome", "reason", "patient_id"} <= set(rows[0])
    assert {r["row"] for r in rows} == {str(k) for k in tiny.expected}
    for r in rows:
        assert r["outcome"] == tiny.expected[int(r["row"])]
        assert not any(ch.isdigit() for ch in r["nik"][6:-4]), "NIK masked in the middle"


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        (SheetsFaults(token_error="invalid_grant"), "invalid_grant"),
        (SheetsFaults(permission_denied=True), "PERMISSION_DENIED"),
    ],
    ids=["invalid-grant", "permission-denied"],
)
def test_unreadable_sheet_fails_the_night_with_zero_fhir_requests(
    tmp_path: Path,
    tiny: SandboxData,
    faults: SheetsFaults,
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """C10 C/D: status failed, exit 3, the cause named, and not one FHIR request."""
    with _sandbox(tmp_path, tiny, sheets_faults=faults) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        summary_path = tmp_path / "s.json"
        code = main(
            ["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(summary_path)]
        )
        assert sb.fhir_requests() == 0
    summary = json.loads(summary_path.read_text())
    assert code == 3
    assert summary["status"] == "failed"
    assert needle in summary["error"]
    assert needle in capsys.readouterr().err


def test_duplicate_header_stops_before_any_fhir_call(tmp_path: Path) -> None:
    """C12 variant: two `No HP` columns → exit 3 naming the header, no FHIR request."""
    values = [
        ["NIK", "No HP", "last_updated_date", "No HP"],
        [NIK_A, "0812-3456-7890", "2024-03-15", "0813-1111-2222"],
    ]
    with LocalSandbox([], values, tmp_path) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        summary_path = tmp_path / "s.json"
        code = main(
            ["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(summary_path)]
        )
        assert sb.fhir_requests() == 0
    assert code == 3
    assert "No HP" in json.loads(summary_path.read_text())["error"]


def test_empty_sheet_is_not_a_quiet_success(tmp_path: Path) -> None:
    """A sheet with a header and no data rows fails the night (wrong tab?), exit 3."""
    with LocalSandbox([], [["NIK", "No HP", "last_updated_date"]], tmp_path) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        assert main(["--env-file", env, "run", "--date", "2024-03-15"]) == 3


def test_fhir_refusing_credentials_aborts_and_records_every_row(
    tmp_path: Path, tiny: SandboxData
) -> None:
    """C10: 401 on the first call → exit 4; rows to apply are recorded `failed`, not lost."""
    profile = FhirProfile(api_key="the-real-key")
    with _sandbox(tmp_path, tiny, profile=profile, overrides={"fhir_api_key": "wrong-key"}) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        summary_path = tmp_path / "s.json"
        code = main(
            ["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(summary_path)]
        )
        assert sb.store.writes == 0
        assert sb.fhir_requests() <= 4, "abort at once, not 60 rows one by one"
    summary = json.loads(summary_path.read_text())
    assert code == 4
    assert summary["status"] == "failed"
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"] == 60
    assert summary["outcomes"]["failed"] > 0


def _refuse_searches(sb: LocalSandbox, *, times: int) -> None:
    """The next `times` NIK searches are refused (422): those rows end `failed`."""
    sb.store.faults.push(
        method="GET",
        path_prefix="/Patient?",
        status=422,
        body={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": "rejected"}],
        },
        times=times,
    )


def test_retry_reprocesses_only_failed_rows(
    tmp_path: Path, tiny: SandboxData, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync retry RUN_ID` picks the failed rows of that run and nothing else."""
    with _sandbox(tmp_path, tiny) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        # every search fails for a while: the first rows end `failed` after bounded retries
        _refuse_searches(sb, times=5)
        first_path = tmp_path / "first.json"
        main(["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(first_path)])
        first = json.loads(first_path.read_text())
        failed = first["outcomes"]["failed"]
        assert failed >= 3  # the pre-flight search may take one of the five refusals
        writes = sb.store.writes
        retry_path = tmp_path / "retry.json"
        code = main(
            ["--env-file", env, "retry", first["run_id"], "--summary-json", str(retry_path)]
        )
        retry = json.loads(retry_path.read_text())
    assert code == 0
    assert retry["rows"]["in_scope"] == failed
    assert retry["outcomes"]["failed"] == 0
    assert sb.store.writes - writes == retry["outcomes"]["updated"]
    assert retry["trigger"] == "retry"


def test_retry_latest_skips_dry_runs(
    tmp_path: Path, tiny: SandboxData, capsys: pytest.CaptureFixture[str]
) -> None:
    """`retry latest` after a run and a later dry run retries the run, not the dry run."""
    with _sandbox(tmp_path, tiny) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        _refuse_searches(sb, times=5)  # the run has failed rows to retry
        first_path = tmp_path / "first.json"
        main(["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(first_path)])
        main(["--env-file", env, "run", "--date", "2024-03-15", "--dry-run"])
        retry_path = tmp_path / "retry.json"
        code = main(["--env-file", env, "retry", "latest", "--summary-json", str(retry_path)])
        retry = json.loads(retry_path.read_text())
        with Ledger.open(sb.settings.database_url) as ledger:
            record = ledger.get_run(retry["run_id"])
    assert code == 0
    assert retry["trigger"] == "retry"
    assert retry["dry_run"] is False
    assert record is not None
    assert record.parent_run_id == json.loads(first_path.read_text())["run_id"]


def test_retry_of_a_run_with_nothing_to_retry_is_refused_and_records_no_run(
    tmp_path: Path, tiny: SandboxData, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run without failed or conflict rows: `retry` exits 2 saying so, and no new empty
    "succeeded" run becomes the date's latest (the summary file is removed)."""
    with _sandbox(tmp_path, tiny) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        first_path = tmp_path / "first.json"
        main(["--env-file", env, "run", "--date", "2024-03-15", "--summary-json", str(first_path)])
        first = json.loads(first_path.read_text())
        assert first["outcomes"]["failed"] == first["outcomes"]["conflict"] == 0
        capsys.readouterr()
        retry_path = tmp_path / "retry.json"
        retry_path.write_text('{"status": "succeeded"}')
        code = main(
            ["--env-file", env, "retry", first["run_id"], "--summary-json", str(retry_path)]
        )
        err = capsys.readouterr().err
        with Ledger.open(sb.settings.database_url) as ledger:
            latest = ledger.get_run("latest")
    assert code == 2
    assert f"run {first['run_id']} has no failed or conflict rows: nothing to retry" in err
    assert "--from-source" in err
    assert not retry_path.exists()
    assert latest is not None
    assert latest.run_id == first["run_id"]


def test_two_processes_for_one_date_write_once(tmp_path: Path, tiny: SandboxData) -> None:
    """C8(C): two `phonesync run` processes for D at once → one writes, the other exits 5 or
    finds nothing to do; exactly one write per updated patient in total."""
    with _sandbox(tmp_path, tiny, profile=FhirProfile(latency_ms=5)) as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        cmd = [sys.executable, "-m", "phonesync", "--env-file", env, "run", "--date", "2024-03-15"]
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        codes = sorted(p.returncode for p in procs)
        updated_ids = {pid for pid in sb.store.ids() if sb.store.version_count(pid) > 1}
        assert all(sb.store.version_count(pid) == 2 for pid in updated_ids)
    assert codes in ([0, 0], [0, 5]), errors
    expected_updates = sum(1 for o in tiny.expected.values() if o == "updated")
    assert len(updated_ids) == expected_updates


def test_unreachable_ledger_database_exits_6(tmp_path: Path) -> None:
    """A ledger that cannot be reached stops `run` before any work, with exit code 6."""
    env = tmp_path / "x.env"
    env.write_text(
        "PHONESYNC_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:1/nowhere\n"
        "PHONESYNC_HASH_KEY=unreachable-ledger-key\n"
        "PHONESYNC_SOURCE=file\nPHONESYNC_SOURCE_FILE=x.csv\n"
        "PHONESYNC_FHIR_BASE_URL=http://127.0.0.1:1\nPHONESYNC_FHIR_API_KEY=k\n"
    )
    assert main(["--env-file", str(env), "run", "--date", "2024-03-15"]) == 6
