"""Re-running a past date replays its stored input: the command says so on stderr, not only in
an INFO log line, so that an operator who fixed cells knows why nothing changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from phonesync.cli import main
from phonesync.crypto import new_key
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.source.rows import Cell

NIK = "3174014203950001"  # a woman born 1995-03-02
NOTICE = re.compile(
    r"^phonesync: replaying the input stored for 2024-03-15 \(read \d{4}-\d\d-\d\d \d\d:\d\d WIB, "
    r"2 rows\): the sheet's current contents are not read; use --from-source to read it again$",
    re.MULTILINE,
)


def _patient() -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": "P1",
        "identifier": [{"system": "https://fhir.kemkes.go.id/id/nik", "value": NIK}],
        "name": [{"text": "Pasien P1"}],
        "telecom": [{"system": "phone", "value": "+6281111111111", "use": "mobile"}],
        "gender": "female",
        "birthDate": "1995-03-02",
    }


def _run(env: Path, capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, str]:
    code = main(["--env-file", str(env), "run", "--date", "2024-03-15", *words])
    return code, capsys.readouterr().err


def test_a_rerun_of_a_past_date_says_it_replays_the_stored_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet: list[list[Cell]] = [
        ["NIK", "No HP", "last_updated_date"],
        [NIK, "0822-2222-2222", "15/03/2024"],
        ["3174", "0812", "15/03/2024"],
    ]
    with LocalSandbox([_patient()], sheet, tmp_path, overrides={"snapshot_key": new_key()}) as sb:
        env = sb.write_env(tmp_path / "sandbox.env")
        code, said = _run(env, capsys)
        assert code == 0
        assert "replaying" not in said  # the first run read the sheet (and stored what it read)

        sb.book.values[1][1] = "0833-3333-3333"  # the operator fixes a cell, then re-runs
        code, said = _run(env, capsys)
        assert code == 0
        assert NOTICE.search(said), said
        assert sb.store.version_count("P1") == 2  # the fix was not read: nothing written

        code, said = _run(env, capsys, "--from-source", "--dry-run")
        assert code == 0
        assert "replaying" not in said

        code, said = _run(env, capsys, "--dry-run", "--format", "json")
        assert NOTICE.search(said), said  # dry runs replay too; stdout stays one JSON document

    ledger = Ledger.open(sb.settings.database_url)
    try:
        runs = list(reversed(ledger.list_runs(limit=4)))
        kinds = [(run.summary or {})["input"]["kind"] for run in runs]
    finally:
        ledger.close()
    assert kinds == ["live", "snapshot", "live", "snapshot"]  # the notice matches what ran


def test_without_stored_inputs_nothing_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Snapshots off (no key): a re-run reads the sheet; the warning about that stays a log line."""
    sheet: list[list[Cell]] = [
        ["NIK", "No HP", "last_updated_date"],
        [NIK, "0822-2222-2222", "15/03/2024"],
    ]
    with LocalSandbox([_patient()], sheet, tmp_path) as sb:
        env = sb.write_env(tmp_path / "sandbox.env")
        assert _run(env, capsys)[0] == 0
        code, said = _run(env, capsys)
    assert code == 0
    assert "replaying the input" not in said
