"""`phonesync doctor` is read-only, and says which settings it checked.

It used to open a SQLite ledger that did not exist the way a run does — and SQLite creates the
file it is asked to open (and phonesync its directory): a pre-flight on a fresh machine left an
empty ledger behind, possibly under the wrong user or at a path the operator had mistyped. Now
a missing ledger file is a warning naming where the first run creates it (a failure when it
cannot), and nothing is created. The first line names the .env file read, or that none was.
Real subprocesses of `python -m phonesync`, the sandboxes of this package's conftest.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from tests.cli.isolated import isolated_phonesync

from phonesync.doctor import FAIL, WARN, check_database, exit_code, run_doctor
from phonesync.sandbox.local import LocalSandbox


def doctor(cwd: Path, *words: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m phonesync [WORDS] doctor` in `cwd`, with no PHONESYNC_* from outside but `env`."""
    cwd.mkdir(parents=True, exist_ok=True)
    return isolated_phonesync(
        cwd, (*words, "doctor"), home=cwd / "home", state=cwd / "xdg-state", env=env
    )


def line(output: str, check: str) -> str:
    found = [x for x in output.splitlines() if x[7:].startswith(f"{check} ")]
    assert len(found) == 1, output
    return found[0]


# --- a SQLite ledger that does not exist yet -------------------------------------------------
def test_a_missing_ledger_is_a_warning_and_no_file_or_directory_is_left_behind(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    """Everything else healthy, the ledger at a path two directories deep that is not there:
    exit 0, `[warn] database` naming the file the first run creates; afterwards neither the
    file nor either directory exists."""
    env = sandbox.write_env(tmp_path / "sandbox.env")
    ledger = tmp_path / "var" / "phonesync" / "ledger.sqlite3"
    url = f"sqlite:///{ledger}"
    done = doctor(tmp_path / "cwd", "--env-file", str(env), PHONESYNC_DATABASE_URL=url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done.stdout, "database") == (
        f"[warn] database       no ledger file yet; the first run creates it at {ledger} "
        f"(and its directory {ledger.parent})"
    )
    assert not (tmp_path / "var").exists()


def test_a_sqlite_url_with_a_password_fails_unshown_and_creates_nothing(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    """`sqlite://user:password@/…` is no URL a run can open: FAIL (not "the first run creates
    it"), the password nowhere in the output, no directory made for it."""
    env = sandbox.write_env(tmp_path / "sandbox.env")
    ledger = tmp_path / "var" / "phonesync" / "ledger.sqlite3"
    url = f"sqlite://ledger:hunter2-in-the-url@/{ledger}"
    done = doctor(tmp_path / "cwd", "--env-file", str(env), PHONESYNC_DATABASE_URL=url)
    assert done.returncode == 1
    assert line(done.stdout, "database") == (
        "[FAIL] database       PHONESYNC_DATABASE_URL is not a valid database URL"
    )
    assert "hunter2-in-the-url" not in done.stdout + done.stderr
    assert not (tmp_path / "var").exists()


def test_the_default_ledger_is_not_created_either(tmp_path: Path) -> None:
    """No PHONESYNC_DATABASE_URL: the default under XDG_STATE_HOME is named, not made (the
    other checks fail for want of settings; the database check still runs)."""
    done = doctor(tmp_path, PHONESYNC_HASH_KEY="a-hash-key-of-the-doctor-tests")
    default = tmp_path / "xdg-state" / "phonesync" / "ledger.sqlite3"
    assert f"[warn] database       no ledger file yet; the first run creates it at {default}" in (
        done.stdout
    )
    assert not (tmp_path / "xdg-state").exists()


def test_a_ledger_the_first_run_cannot_create_fails(sandbox: LocalSandbox, tmp_path: Path) -> None:
    """A file where the ledger's directory should be: FAIL naming it; nothing created."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    ledger = blocker / "phonesync" / "ledger.sqlite3"
    settings = sandbox.settings.model_copy(update={"database_url": f"sqlite:///{ledger}"})
    verdict = check_database(settings)
    assert (verdict.result, verdict.detail) == (
        FAIL,
        f"no ledger file at {ledger}, and the first run cannot create it: "
        f"{blocker} is not a directory",
    )
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")
def test_a_ledger_in_a_directory_this_user_cannot_write_fails(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    """The directory exists, read-only for us: FAIL, the run could not create the file."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        settings = sandbox.settings.model_copy(
            update={"database_url": f"sqlite:///{locked / 'ledger.sqlite3'}"}
        )
        verdict = check_database(settings)
    finally:
        locked.chmod(0o755)
    assert verdict.result == FAIL
    assert verdict.detail.endswith(f"{locked} is not writable by this user")
    assert list(locked.iterdir()) == []


def test_the_sandbox_ledger_before_its_first_run_is_a_warning(sandbox: LocalSandbox) -> None:
    """In process too: WARN, exit 0, and the sandbox's ledger file is still not there."""
    ledger = Path(sandbox.settings.database_url.removeprefix("sqlite:///"))
    assert not ledger.exists()
    verdicts = asyncio.run(run_doctor(sandbox.settings))
    database = next(v for v in verdicts if v.check == "database")
    assert (database.result, database.detail) == (
        WARN,
        f"no ledger file yet; the first run creates it at {ledger}",
    )
    assert exit_code(verdicts) == 0
    assert not ledger.exists()


def test_an_empty_ledger_file_is_a_warning_and_stays_as_it_was(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    """A ledger file that exists but was never migrated (0 bytes: `touch`, a provisioning
    step): WARN "at empty", and the file is not switched to WAL or otherwise written; no
    `-wal`/`-shm` files are left."""
    ledger = tmp_path / "ledger" / "ledger.sqlite3"
    ledger.parent.mkdir()
    ledger.touch()
    settings = sandbox.settings.model_copy(update={"database_url": f"sqlite:///{ledger}"})
    verdict = check_database(settings)
    assert (verdict.result, verdict.detail) == (WARN, "at empty; the next run migrates it to head")
    assert ledger.read_bytes() == b""
    assert [p.name for p in ledger.parent.iterdir()] == ["ledger.sqlite3"]


# --- which .env file ---------------------------------------------------------------------------
def test_doctor_shows_the_file_phonesync_env_file_names(tmp_path: Path) -> None:
    """The first line: the absolute path of the file read, and what chose it."""
    named = tmp_path / "etc" / "phonesync.env"
    named.parent.mkdir()
    named.write_text("PHONESYNC_SOURCE=file\n")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / ".env").write_text("PHONESYNC_SOURCE=sheets\n")  # not read
    done = doctor(tmp_path / "cwd", PHONESYNC_ENV_FILE=str(named))
    assert done.stdout.splitlines()[0] == f"[ ok ] env file       {named} (from PHONESYNC_ENV_FILE)"
    assert "source=sheets needs" not in done.stdout  # the sheet check read source=file


def test_doctor_shows_the_working_directorys_env_as_an_absolute_path(tmp_path: Path) -> None:
    here = tmp_path / "project"
    here.mkdir()
    (here / ".env").write_text("PHONESYNC_SOURCE=file\n")
    done = doctor(here)
    assert done.stdout.splitlines()[0] == f"[ ok ] env file       {here / '.env'} (from ./.env)"


def test_doctor_says_when_no_env_file_was_read(tmp_path: Path) -> None:
    done = doctor(tmp_path / "empty")
    assert done.stdout.splitlines()[0] == (
        "[ ok ] env file       none read (no --env-file, PHONESYNC_ENV_FILE not set, no .env "
        f"in {tmp_path / 'empty'})"
    )


def test_doctor_shows_the_env_file_option(sandbox: LocalSandbox, tmp_path: Path) -> None:
    """`--env-file` relative to where doctor starts: shown absolute; the rest stays healthy."""
    (tmp_path / "cwd").mkdir()
    sandbox.write_env(tmp_path / "cwd" / "sandbox.env")
    done = doctor(tmp_path / "cwd", "--env-file", "sandbox.env")
    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done.stdout, "env file") == (
        f"[ ok ] env file       {tmp_path / 'cwd' / 'sandbox.env'} (from --env-file)"
    )
    assert line(done.stdout, "configuration").startswith("[ ok ]")
