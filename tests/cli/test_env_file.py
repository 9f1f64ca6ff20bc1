"""Which .env file is read never depends on the working directory alone.

`./.env` is read when present (a shell in the project), but cron or a systemd timer starts in
`$HOME` or `/`: there `./.env` is another file or none, and the job used to run silently with
other settings. `PHONESYNC_ENV_FILE=/abs/path` names the file wherever phonesync starts; a file
it names that does not exist, or a relative path, is a configuration error (exit 2), never a
night run without it. `--env-file PATH` still wins over both. Real subprocesses of
`python -m phonesync`, real SQLite ledgers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.cli.isolated import isolated_phonesync

from phonesync.ledger.store import Ledger

KEY = "test-hash-key-of-the-env-file-tests"


def phonesync(cwd: Path, *words: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m phonesync WORDS` in `cwd`, with no PHONESYNC_* from outside but `env`."""
    return isolated_phonesync(
        cwd, words, home=cwd.parent / "home", state=cwd.parent / "state", env=env
    )


def ledger_at(path: Path) -> str:
    """An existing, migrated (empty) SQLite ledger at `path`; its URL."""
    url = f"sqlite:///{path}"
    Ledger.open(url).close()
    return url


def env_file(path: Path, database_url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"PHONESYNC_DATABASE_URL={database_url}\nPHONESYNC_HASH_KEY={KEY}\n")
    return path


@pytest.fixture
def cron_dir(tmp_path: Path) -> Path:
    """Where cron starts the job: its `.env` is someone else's, naming a ledger that is not
    there (a command reading it would exit 6 naming decoy.sqlite3)."""
    where = tmp_path / "cron-cwd"
    env_file(where / ".env", f"sqlite:///{tmp_path / 'decoy.sqlite3'}")
    return where


def test_the_file_phonesync_env_file_names_is_read_wherever_the_job_starts(
    tmp_path: Path, cron_dir: Path
) -> None:
    """PHONESYNC_ENV_FILE wins over ./.env: `runs` reads the ledger that file names."""
    named = env_file(tmp_path / "etc" / "phonesync.env", ledger_at(tmp_path / "named.sqlite3"))
    done = phonesync(cron_dir, "runs", "--format", "json", PHONESYNC_ENV_FILE=str(named))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert not (tmp_path / "decoy.sqlite3").exists()


@pytest.mark.parametrize(
    "words",
    [["run", "--date", "2024-03-15"], ["runs"], ["serve"]],
    ids=["run", "runs", "serve"],
)
def test_a_missing_phonesync_env_file_is_exit_2_naming_the_variable(
    tmp_path: Path, cron_dir: Path, words: list[str]
) -> None:
    """A file PHONESYNC_ENV_FILE names but that is not there (an unmounted volume, a typo):
    exit 2, one line naming the variable and the path; ./.env is not read instead, nothing
    is created (no ledger, no state directory)."""
    missing = tmp_path / "etc" / "phonesync.env"
    done = phonesync(cron_dir, *words, PHONESYNC_ENV_FILE=str(missing))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"phonesync: PHONESYNC_ENV_FILE={missing}: no such file"
    assert not (tmp_path / "decoy.sqlite3").exists()
    assert not (tmp_path / "state").exists()


def test_a_relative_phonesync_env_file_is_exit_2(tmp_path: Path, cron_dir: Path) -> None:
    """Relative to the working directory, it would be as fragile as ./.env: refused, even
    when the file is there from this directory."""
    env_file(cron_dir / "conf" / "phonesync.env", ledger_at(tmp_path / "named.sqlite3"))
    done = phonesync(cron_dir, "runs", PHONESYNC_ENV_FILE="conf/phonesync.env")
    assert done.returncode == 2
    err = done.stderr.strip()
    assert err.startswith("phonesync: PHONESYNC_ENV_FILE=conf/phonesync.env is a path relative")
    assert "/etc/phonesync/phonesync.env" in err  # how to write it
    assert len(err.splitlines()) == 1


def test_the_env_file_option_wins_over_the_variable(tmp_path: Path, cron_dir: Path) -> None:
    """`--env-file` (a command line) over PHONESYNC_ENV_FILE (the environment), even one that
    names a missing file."""
    option = env_file(tmp_path / "option.env", ledger_at(tmp_path / "option.sqlite3"))
    done = phonesync(
        cron_dir,
        "--env-file",
        str(option),
        "runs",
        "--format",
        "json",
        PHONESYNC_ENV_FILE=str(tmp_path / "missing.env"),
    )
    assert done.returncode == 0, done.stderr


def test_without_either_the_working_directorys_env_is_read(tmp_path: Path) -> None:
    """The convenience stays: ./.env when neither names a file (an empty variable is unset)."""
    here = tmp_path / "project"
    env_file(here / ".env", ledger_at(tmp_path / "local.sqlite3"))
    done = phonesync(here, "runs", "--format", "json", PHONESYNC_ENV_FILE="")
    assert done.returncode == 0, done.stderr


def test_help_names_the_variable(tmp_path: Path) -> None:
    """`--help` says where settings come from, PHONESYNC_ENV_FILE included."""
    tmp_path.joinpath("cwd").mkdir()
    done = phonesync(tmp_path / "cwd", "--help")
    assert done.returncode == 0
    assert "PHONESYNC_ENV_FILE" in done.stdout
