"""Where the ledger is never depends on the working directory.

The old default `sqlite:///phonesync.sqlite3` was a file in whatever directory phonesync started
in: a run from one directory applied a newer number, a run of an older date from another found
a new, empty ledger and wrote the older number over it. Now the default is
`$XDG_STATE_HOME/phonesync/ledger.sqlite3` (else `~/.local/state/…`), an explicit SQLite URL with
a relative path is a configuration error (exit 2), and the first run of a ledger logs a WARNING
naming it (password hidden).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from phonesync import secrets
from phonesync.cli import main, settings_epilog
from phonesync.errors import ConfigError, LedgerUnavailable
from phonesync.ledger import Ledger
from phonesync.settings import Settings

KEY = "test-hash-key-of-the-location-tests"
ABSOLUTE_EXAMPLE = "sqlite:////var/lib/phonesync/ledger.sqlite3"
RELATIVE = [
    "sqlite:///relative.db",
    "sqlite:///var/ledger/phonesync.sqlite3",
    "sqlite+pysqlite:///ledger.sqlite3",
    "sqlite:///./ledger.sqlite3",
    "sqlite:///~/ledger.sqlite3",  # SQLite does not expand ~: ./~/ledger.sqlite3
    "sqlite:///file:ledger.sqlite3?uri=true",
]
NOW = datetime(2024, 3, 15, 16, 0, tzinfo=UTC)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PHONESYNC_* from outside; XDG_STATE_HOME under tmp_path; cwd an empty directory."""
    for name in list(os.environ):
        if name.startswith("PHONESYNC_"):
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return state


# --- the default ------------------------------------------------------------------------------
def test_the_default_is_under_xdg_state_home_whatever_the_working_directory(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two working directories, one default: `$XDG_STATE_HOME/phonesync/ledger.sqlite3`."""
    expected = f"sqlite:///{clean_env / 'phonesync' / 'ledger.sqlite3'}"
    seen = []
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        monkeypatch.chdir(tmp_path / where)
        seen.append(Settings.load(env_file=None, hash_key=KEY).database_url)
    assert seen == [expected, expected]
    assert expected.startswith("sqlite:////")


@pytest.mark.parametrize("xdg", [None, "", "relative/state"])
def test_without_an_absolute_xdg_state_home_it_is_under_the_home_directory(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    """Unset, empty or relative XDG_STATE_HOME (the XDG spec: ignore a relative one) →
    `~/.local/state/phonesync/ledger.sqlite3`, absolute."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME")
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    url = Settings.load(env_file=None, hash_key=KEY).database_url
    assert url == f"sqlite:///{home / '.local' / 'state' / 'phonesync' / 'ledger.sqlite3'}"


def test_no_home_and_no_xdg_state_home_is_a_configuration_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nowhere absolute for the default: exit 2 asking for PHONESYNC_DATABASE_URL."""
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # no HOME, no passwd entry
    with pytest.raises(ConfigError) as refused:
        Settings.load(env_file=None, hash_key=KEY)
    text = str(refused.value)
    assert "PHONESYNC_DATABASE_URL is not set" in text
    assert ABSOLUTE_EXAMPLE in text
    assert not list(Path.cwd().iterdir())  # nothing created in the working directory


def test_help_shows_the_default_of_this_machine(clean_env: Path) -> None:
    """`phonesync --help` lists the absolute default, not a relative file."""
    line = next(x for x in settings_epilog().splitlines() if "PHONESYNC_DATABASE_URL" in x)
    assert f"[default: sqlite:///{clean_env / 'phonesync' / 'ledger.sqlite3'}]" in line


def test_a_run_creates_the_default_ledger_and_its_directory(clean_env: Path) -> None:
    """The commands that write create `$XDG_STATE_HOME/phonesync/`; nothing lands in cwd."""
    settings = Settings.load(env_file=None, hash_key=KEY)
    with Ledger.open(settings.database_url) as ledger:
        ledger.create_run(run_id="r1", business_date=date(2024, 3, 15), trigger="manual",
                          config={}, dry_run=False, started_at=NOW)  # fmt: skip
    assert (clean_env / "phonesync" / "ledger.sqlite3").is_file()
    assert not list(Path.cwd().iterdir())


def test_an_old_default_ledger_in_the_working_directory_is_refused(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync.sqlite3` in cwd with no PHONESYNC_DATABASE_URL: exit 2 naming the setting and
    that file (an upgrade must not start a night on a new, empty ledger); set explicitly, the
    same directory is fine."""
    old = Path.cwd() / "phonesync.sqlite3"
    old.write_bytes(b"")
    assert main(["runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "PHONESYNC_DATABASE_URL is not set" in err
    assert f"PHONESYNC_DATABASE_URL=sqlite:///{old}" in err
    explicit = f"sqlite:///{old}"
    assert Settings.load(env_file=None, database_url=explicit).database_url == explicit


# --- relative SQLite URLs ---------------------------------------------------------------------
@pytest.mark.parametrize("url", RELATIVE)
def test_a_relative_sqlite_url_is_a_configuration_error(clean_env: Path, url: str) -> None:
    """Refused when the settings load: the setting, "relative to the working directory", and
    how to write an absolute path."""
    with pytest.raises(ConfigError) as refused:
        Settings.load(env_file=None, hash_key=KEY, database_url=url)
    text = str(refused.value)
    assert text.startswith("invalid configuration: PHONESYNC_DATABASE_URL: ")
    assert "relative to the working directory" in text
    assert ABSOLUTE_EXAMPLE in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "command",
    [["run", "--date", "2024-03-15"], ["retry", "latest"], ["runs"], ["report", "latest"]],
    ids=["run", "retry", "runs", "report"],
)
def test_the_commands_refuse_it_with_exit_2_and_one_line(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """From the environment: exit 2, one line, the password masked; no ledger file made."""
    monkeypatch.setenv("PHONESYNC_DATABASE_URL", "sqlite://ledger:hunter2-secret@/relative.db")
    monkeypatch.setenv("PHONESYNC_HASH_KEY", KEY)
    assert main(command, now=lambda: NOW) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phonesync: invalid configuration: PHONESYNC_DATABASE_URL: ")
    assert "relative to the working directory" in err
    assert ABSOLUTE_EXAMPLE in err
    assert len(err.splitlines()) == 1
    assert "hunter2-secret" not in err
    assert "sqlite://ledger:***@/relative.db" in err
    assert not list(Path.cwd().iterdir())


def test_a_reference_that_resolves_to_a_relative_url_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vault://…` is checked once resolved."""
    monkeypatch.setitem(secrets.RESOLVERS, "vault", lambda _text, _s: "sqlite:///relative.db")
    with pytest.raises(ConfigError, match="relative to the working directory"):
        Settings.load(env_file=None, hash_key=KEY, database_url="vault://secret/p#database_url")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/phonesync/ledger.sqlite3",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:/var/lib/phonesync/ledger.sqlite3?uri=true",
        "sqlite:///file:mem?mode=memory&uri=true",
        "postgresql+psycopg://phonesync@db:5432/phonesync",
    ],
)
def test_absolute_in_memory_and_server_urls_are_accepted(clean_env: Path, url: str) -> None:
    """In-memory SQLite (tests) is not a path relative to anything."""
    assert Settings.load(env_file=None, hash_key=KEY, database_url=url).database_url == url


@pytest.mark.parametrize("url", RELATIVE[:2])
def test_ledger_open_refuses_a_relative_url_and_creates_nothing(clean_env: Path, url: str) -> None:
    """Whoever opens the ledger: a ConfigError, no file or folder in the working directory."""
    with pytest.raises(ConfigError, match="relative to the working directory"):
        Ledger.open(url)
    with pytest.raises(ConfigError, match="relative to the working directory"):
        Ledger.open(url, create=False)
    assert not list(Path.cwd().iterdir())


# --- the first run of a ledger ----------------------------------------------------------------
def _start(ledger: Ledger, run_id: str, *, dry_run: bool = False) -> None:
    ledger.create_run(run_id=run_id, business_date=date(2024, 3, 15), trigger="manual",
                      config={}, dry_run=dry_run, started_at=NOW)  # fmt: skip


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "has no earlier runs" in r.getMessage()]


def test_the_first_run_of_a_ledger_logs_one_warning_naming_it(
    ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One WARNING at the ledger's first run (a dry run counts), none at the next; it names
    the ledger and says what an empty one means. The password is never shown."""
    parsed = sa.make_url(ledger_url)
    if parsed.get_backend_name() == "postgresql":  # trust auth: a password is not checked
        ledger_url = parsed.set(password="pa55-w0rd-in-the-url").render_as_string(False)
    caplog.set_level(logging.WARNING)
    with Ledger.open(ledger_url) as ledger:
        _start(ledger, "r1", dry_run=True)
        _start(ledger, "r2")
    with Ledger.open(ledger_url) as ledger:
        _start(ledger, "r3")
    found = _warnings(caplog)
    assert [(r.levelno, getattr(r, "run_id", None)) for r in found] == [(logging.WARNING, "r1")]
    message = found[0].getMessage()
    shown = sa.make_url(ledger_url).render_as_string(hide_password=True)
    assert message == (
        f"the ledger at {shown} has no earlier runs: if phonesync ran on this machine before, "
        "PHONESYNC_DATABASE_URL points at the wrong ledger"
    )
    assert "pa55-w0rd-in-the-url" not in caplog.text


def test_a_ledger_whose_directory_cannot_be_made_is_ledger_unavailable(tmp_path: Path) -> None:
    """A file where the SQLite file's directory should be (fresh-user test: a traceback and
    exit 1, "completed with failures"): `LedgerUnavailable` (exit 6), naming the URL and cause."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(LedgerUnavailable) as caught:
        Ledger.open(f"sqlite:///{blocker}/ledger.sqlite3")
    assert caught.value.exit_code == 6
    text = str(caught.value)
    assert text.startswith(f"the ledger database cannot be created: sqlite:///{blocker}/")
    assert "check PHONESYNC_DATABASE_URL" in text
