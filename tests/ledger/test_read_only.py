"""`phonesync runs` and `phonesync report` only read: a mistyped SQLite URL creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonesync.cli import main
from phonesync.errors import LedgerUnavailable
from phonesync.ledger import Ledger

from .helpers import start_run


def _env(tmp_path: Path, url: str) -> str:
    env = tmp_path / "ro.env"
    env.write_text(f"PHONESYNC_DATABASE_URL={url}\n")
    return str(env)


@pytest.mark.parametrize(
    "command", [["runs"], ["runs", "--format", "json"], ["report", "latest"]], ids=" ".join
)
def test_a_missing_sqlite_file_is_exit_6_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A mistyped ledger path: exit 6 naming the URL; no file and no folder appear."""
    missing = tmp_path / "typo" / "ledgr.sqlite3"
    url = f"sqlite:///{missing}"
    assert main(["--env-file", _env(tmp_path, url), *command]) == 6
    captured = capsys.readouterr()
    assert f"the ledger database does not exist: {url}" in captured.err
    assert captured.out == ""
    assert not missing.exists()
    assert not missing.parent.exists()


def test_open_without_create_refuses_a_missing_file_but_reads_an_existing_one(
    tmp_path: Path,
) -> None:
    """`Ledger.open(url, create=False)`: LedgerUnavailable for no file, the runs of a real one."""
    path = tmp_path / "ledger.sqlite3"
    url = f"sqlite:///{path}"
    with pytest.raises(LedgerUnavailable, match="does not exist") as caught:
        Ledger.open(url, create=False)
    assert caught.value.exit_code == 6
    assert not path.exists()
    with Ledger.open(url) as ledger:
        start_run(ledger, "run-1")
    with Ledger.open(url, create=False) as ledger:
        assert [run.run_id for run in ledger.list_runs()] == ["run-1"]


def test_runs_and_report_read_an_existing_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same commands on the right path show the ledger's runs, exit 0."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    with Ledger.open(url) as ledger:
        start_run(ledger, "run-1")
    env = _env(tmp_path, url)
    assert main(["--env-file", env, "runs", "--format", "csv"]) == 0
    assert "run-1" in capsys.readouterr().out
    assert main(["--env-file", env, "report", "run-1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("row,nik,phone,outcome,reason,patient_id")
