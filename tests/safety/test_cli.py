"""`phonesync keygen` and `phonesync run --dry-run --format json` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phonesync.cli import main
from phonesync.crypto import Sealer
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, D, nik_for, patient


def test_keygen_prints_a_working_fernet_key(capsys: pytest.CaptureFixture[str]) -> None:
    """One key per call, usable as PHONESYNC_SNAPSHOT_KEY; two calls never repeat."""
    assert main(["keygen"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keygen"]) == 0
    second = capsys.readouterr().out.strip()
    assert first != second
    assert Sealer(first).unseal(Sealer(first).seal(b"x")) == b"x"


def test_dry_run_json_is_one_document_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format json`: stdout parses as JSON with the summary and masked per-row changes."""
    nik = nik_for(D.replace(year=1995, month=3, day=2), "female", 1)
    patients = [
        patient("P1", nik, D.replace(year=1995, month=3, day=2), "female", "+6281111111111")
    ]
    sheet = [list(HEADER), [nik, "0822-2222-2222", "15/03/2024"]]
    with LocalSandbox(patients, sheet, tmp_path) as sb:
        env = sb.write_env(tmp_path / "sandbox.env")
        code = main(
            ["--env-file", str(env), "run", "--date", "2024-03-15", "--dry-run", "--format", "json"]
        )
        assert sb.store.version_count("P1") == 1
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["dry_run"] is True
    assert [(r["row"], r["old_phone"], r["new_phone"], r["would_write"]) for r in doc["rows"]] == [
        (2, "+62811****1111", "+62822****2222", True)
    ]


@pytest.mark.parametrize("command", ["run", "retry"])
def test_a_run_stopped_before_it_starts_still_prints_json_with_format_json(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """A configuration error with `--format json` (fresh-user test: stdout was empty): one JSON
    document on stdout with the status, the exit code and the error, as on stderr."""
    env = tmp_path / "bad.env"
    env.write_text(f"PHONESYNC_DATABASE_URL=sqlite:///{tmp_path / 'l.sqlite3'}\n")
    monkeypatch.setenv("PHONESYNC_CONCURRENCY", "abc")
    target = ["--date", "2024-03-15"] if command == "run" else ["latest"]
    code = main(["--env-file", str(env), command, *target, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    doc = json.loads(out)
    assert doc["status"] == "failed"
    assert doc["exit_code"] == 2
    assert "PHONESYNC_CONCURRENCY" in doc["error"]
    assert err.strip() == f"phonesync: {doc['error']}"
