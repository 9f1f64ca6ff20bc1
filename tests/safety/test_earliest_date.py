"""A business date before PHONESYNC_EARLIEST_DATE (default 2022-01-01) is refused, exit 2.

`--date 1900-01-01` is a typo, not a night to sync: like a date after today it is refused before
any work, with one line naming the date, the floor and the setting. The floor itself and later
dates stay accepted; the setting moves it. The clock is injected (`main(..., now=…)`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from phonesync.cli import build_parser, business_date, main
from phonesync.errors import ConfigError
from phonesync.sandbox.local import LocalSandbox
from phonesync.settings import Settings

from .nights import (
    ONE_BIRTH,
    ONE_NIK,
    D,
    at,
    night_of,
    one_row_sandbox,
    run_ids,
)

BIRTH, NIK = ONE_BIRTH, ONE_NIK
KEY = "test-hash-key-of-the-date-tests"
TOO_OLD = "a business date that early is implausible (a typo?)"


@pytest.fixture
def sandbox(tmp_path: Path) -> LocalSandbox:
    return one_row_sandbox(tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--date", "1900-01-01"],
        ["run", "--date", "2021-12-31", "--dry-run"],
        ["plan", "--date", "1900-01-01", "--workers", "2"],
        ["worker", "--date", "1900-01-01"],
    ],
    ids=["run-1900", "run-dry-day-before-the-floor", "plan", "worker"],
)
def test_a_date_before_the_earliest_date_is_refused_with_exit_2_before_any_work(
    sandbox: LocalSandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Exit 2, one line naming the date, the floor and the setting; no sheet read, no FHIR
    request, no run recorded."""
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        code = main(["--env-file", env, *command], now=at(night_of(D)))
        assert (sb.fhir_requests(), sb.sheets_stats.read_requests) == (0, 0)
        if command[0] == "run":
            assert run_ids(sb) == []
    assert code == 2
    day = command[command.index("--date") + 1]
    assert capsys.readouterr().err.strip() == (
        f"phonesync: --date {day} is before the earliest business date 2022-01-01 "
        f"(PHONESYNC_EARLIEST_DATE): {TOO_OLD}"
    )


@pytest.mark.parametrize("command", [["run"], ["plan", "--workers", "2"], ["worker"]])
def test_a_refused_run_removes_a_stale_summary_file(
    sandbox: LocalSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`run|plan|worker --date 1900-01-01 --summary-json PATH`: an earlier night's file there
    is removed (it must not be read as this command's summary)."""
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        argv = [*command, "--date", "1900-01-01", "--summary-json", str(summary)]
        assert main(["--env-file", env, *argv], now=at(night_of(D))) == 2
    assert "PHONESYNC_EARLIEST_DATE" in capsys.readouterr().err
    assert not summary.exists()


def test_the_earliest_date_itself_is_accepted(
    sandbox: LocalSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--date 2022-01-01` (the default floor) runs."""
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        code = main(["--env-file", env, "run", "--date", "2022-01-01", "--dry-run"],
                    now=at(night_of(D)))  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_the_setting_moves_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """PHONESYNC_EARLIEST_DATE from the environment: earlier dates pass down to it, a date
    below it is refused naming it; a value that is not a date is a configuration error."""
    monkeypatch.setenv("PHONESYNC_EARLIEST_DATE", "2019-06-01")
    settings = Settings.load(env_file=None, hash_key=KEY)
    now = at(night_of(D))
    assert settings.earliest_date == date(2019, 6, 1)
    assert business_date(date(2019, 6, 1), settings, now=now) == date(2019, 6, 1)
    with pytest.raises(ConfigError) as refused:
        business_date(date(2019, 5, 31), settings, now=now)
    assert str(refused.value) == (
        "--date 2019-05-31 is before the earliest business date 2019-06-01 "
        f"(PHONESYNC_EARLIEST_DATE): {TOO_OLD}"
    )
    loaded = Settings.load(env_file=None, hash_key=KEY, earliest_date="2024-03-16")
    assert loaded.earliest_date == date(2024, 3, 16)
    monkeypatch.setenv("PHONESYNC_EARLIEST_DATE", "2022-13-01")
    with pytest.raises(ConfigError, match="PHONESYNC_EARLIEST_DATE: Input should be a valid date"):
        Settings.load(env_file=None, hash_key=KEY)


def test_the_default_floor_is_2022_01_01() -> None:
    settings = Settings.load(env_file=None, hash_key=KEY)
    assert settings.earliest_date == date(2022, 1, 1)
    with pytest.raises(ConfigError, match=r"--date 2021-12-31 is before .* 2022-01-01"):
        business_date(date(2021, 12, 31), settings, now=at(night_of(D)))


def test_a_floor_after_today_refuses_tonight_naming_the_setting() -> None:
    """A floor set in the future (a typo in the setting) stops even tonight's default date."""
    settings = Settings.load(env_file=None, hash_key=KEY, earliest_date="2025-01-01")
    with pytest.raises(ConfigError) as refused:
        business_date(None, settings, now=at(night_of(D)))
    assert str(refused.value) == (
        "today (2024-03-15 in Asia/Jakarta) is before the earliest business date 2025-01-01 "
        "(PHONESYNC_EARLIEST_DATE): check PHONESYNC_EARLIEST_DATE"
    )


def test_retry_of_a_run_dated_before_the_earliest_date_is_refused(
    sandbox: LocalSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run recorded before the floor was raised is not retried: exit 2, nothing sent."""
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        assert main(["--env-file", env, "run", "--date", "2024-03-15"], now=at(night_of(D))) == 0
        (run_id,) = run_ids(sb)
        requests = sb.fhir_requests()
        sb.settings = sb.settings.model_copy(update={"earliest_date": date(2024, 3, 16)})
        raised = str(sb.write_env(tmp_path / "raised.env"))
        capsys.readouterr()
        code = main(["--env-file", raised, "retry", run_id], now=at(night_of(date(2024, 3, 20))))
        assert sb.fhir_requests() == requests
        assert run_ids(sb) == [run_id]
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"phonesync: run {run_id} is for 2024-03-15, before the earliest business date "
        "2024-03-16 (PHONESYNC_EARLIEST_DATE): set PHONESYNC_EARLIEST_DATE earlier to retry it"
    )


@pytest.mark.parametrize("command", ["run", "plan", "worker"])
def test_help_names_the_earliest_date(command: str) -> None:
    """`COMMAND --help` says where --date stops; `phonesync --help` lists the setting."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(sub.choices[command].format_help().split())  # type: ignore[index]
    assert "today or earlier, not before PHONESYNC_EARLIEST_DATE" in text
    top = " ".join(parser.format_help().split())
    assert "PHONESYNC_EARLIEST_DATE" in top
    assert "[default: 2022-01-01]" in top
