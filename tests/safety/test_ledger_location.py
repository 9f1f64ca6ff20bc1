"""The user test that found it: two working directories, one ledger, newer wins.

With the old default `sqlite:///phonesync.sqlite3` (relative), `run --date 2024-03-16` from
/tmp/dirA applied the newer number, and `run --date 2024-03-15` from /tmp/dirB — same settings —
found a brand-new, empty ledger in dirB and wrote the older number over the newer one. A cron job
or systemd timer starting in $HOME or / does exactly that. Now the default ledger is
`$XDG_STATE_HOME/phonesync/ledger.sqlite3`: both runs share it and the older row is `superseded`.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path

import pytest
from tests.deploy.support import validate

from phonesync.cli import main
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, mobiles, night_of, nik_for, patient

BIRTH = date(1990, 7, 4)
NIK = nik_for(BIRTH, "male", 7)
OLD, NEW, BEFORE = "+6282211110001", "+6282299990002", "+6281100000009"


def _env_without_database_url(sb: LocalSandbox, path: Path) -> Path:
    """The sandbox's settings as an env file, PHONESYNC_DATABASE_URL left to its default."""
    sb.write_env(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(x for x in lines if not x.startswith("PHONESYNC_DATABASE_URL=")))
    return path


def test_an_older_date_run_from_another_directory_does_not_overwrite_a_newer_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """dirA: `run --date 2024-03-16` updates to the 16th's number; dirB: `run --date 2024-03-15`
    sees that in the same (default) ledger, so its older row is superseded by the ledger's
    record of it and FHIR keeps the newer number; nothing is left in either directory. Only
    the ledger's first run warns that it has no earlier runs."""
    for name in list(os.environ):
        if name.startswith("PHONESYNC_"):
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    patients = [patient("P1", NIK, BIRTH, "male", BEFORE)]
    sheet = [list(HEADER), [NIK, NEW, "16/03/2024"], [NIK, OLD, "15/03/2024"]]
    caplog.set_level(logging.WARNING)
    with LocalSandbox(patients, sheet, tmp_path / "sandbox") as sb:
        env = str(_env_without_database_url(sb, tmp_path / "no-url.env"))
        for where, day in (("dirA", "2024-03-16"), ("dirB", "2024-03-15")):
            (tmp_path / where).mkdir()
            monkeypatch.chdir(tmp_path / where)
            argv = ["--env-file", env, "run", "--date", day]
            assert main(argv, now=lambda: night_of(date(2024, 3, 16))) == 0
            # the 16th's row leaves the sheet (archived): only the ledger knows of it now (in
            # the same read, that later-dated row would hold the 15th's back by itself)
            sb.book.values[1] = []
        assert mobiles(sb, "P1") == [NEW]
        assert sb.store.version_count("P1") == 2  # one write: the 16th's
    ledger_file = state / "phonesync" / "ledger.sqlite3"
    with Ledger.open(f"sqlite:///{ledger_file}", create=False) as ledger:
        second, first = ledger.list_runs()
        assert [str(r.outcome) for r in ledger.results(first.run_id)] == ["updated"]
        # superseded because the ledger knew (not only because the record says so)
        assert [(str(r.outcome), r.reason) for r in ledger.results(second.run_id)] == [
            ("superseded", f"a newer update (2024-03-16) was already applied by run {first.run_id}")
        ]
    assert not list((tmp_path / "dirA").iterdir())
    assert not list((tmp_path / "dirB").iterdir())
    warned = [r.getMessage() for r in caplog.records if "has no earlier runs" in r.getMessage()]
    assert warned == [
        f"the ledger at sqlite:///{ledger_file} has no earlier runs: if phonesync ran on this "
        "machine before, PHONESYNC_DATABASE_URL points at the wrong ledger"
    ]


def test_the_image_default_ledger_is_in_its_only_writable_directory() -> None:
    """deploy/Dockerfile: the user has no home, so XDG_STATE_HOME puts the default ledger in
    the writable WORKDIR (/var/lib/phonesync), not under /nonexistent."""
    instructions = validate.dockerfile_instructions(validate.DOCKERFILE.read_text("utf-8"))
    env = " ".join(a for i, a in instructions if i == "ENV")
    workdir = [a for i, a in instructions if i == "WORKDIR"][-1]
    assert "XDG_STATE_HOME=/var/lib" in env.split()
    assert workdir == "/var/lib/phonesync"
