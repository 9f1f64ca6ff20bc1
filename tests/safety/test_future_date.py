"""A business date after today (in the job's zone) is refused, exit 2, before any work.

A future date would retire the old number with a `period.end` in the future and move the ledger's
"applied" forward on a night that has not happened; a typo (`2025` for `2024`) must not run.
Today and earlier stay accepted. The clock is injected (`main(..., now=…)`): no timing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from phonesync.cli import build_parser, business_date, main
from phonesync.errors import ConfigError
from phonesync.sandbox.local import LocalSandbox
from phonesync.settings import Settings

from .nights import (
    ONE_BIRTH,
    ONE_NIK,
    WIB,
    D,
    at,
    night_of,
    one_row_sandbox,
    run_ids,
)

BIRTH, NIK = ONE_BIRTH, ONE_NIK


@pytest.fixture
def sandbox(tmp_path: Path) -> LocalSandbox:
    return one_row_sandbox(tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--date", "2024-03-16"],
        ["run", "--date", "2099-01-01", "--dry-run"],
        ["plan", "--date", "2099-01-01", "--workers", "2"],
        ["worker", "--date", "2099-01-01"],
    ],
    ids=["run-tomorrow", "run-dry-2099", "plan", "worker"],
)
def test_a_date_after_today_is_refused_with_exit_2_before_any_work(
    sandbox: LocalSandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Exit 2, one line naming the date, today and the zone; no sheet read, no FHIR request."""
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        code = main(["--env-file", env, *command], now=at(night_of(D)))
        assert (sb.fhir_requests(), sb.sheets_stats.read_requests) == (0, 0)
    assert code == 2
    err = capsys.readouterr().err.strip()
    day = command[command.index("--date") + 1]
    assert err == (
        f"phonesync: --date {day} is after today (2024-03-15 in Asia/Jakarta): "
        "a business date cannot be in the future"
    )


def test_today_and_past_dates_are_accepted(
    sandbox: LocalSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--date` today (in Asia/Jakarta) and an earlier date both run; no date = today."""
    just_after_midnight = datetime(2024, 3, 15, 0, 5, tzinfo=WIB)  # still the 14th in UTC
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        for args in (["--date", "2024-03-15"], ["--date", "2024-03-01"], []):
            code = main(["--env-file", env, "run", "--dry-run", *args], now=at(just_after_midnight))
            assert code == 0, capsys.readouterr().err
        assert sb.store.writes == 0
    assert "2024-03-15" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("now_utc", "accepted"),
    [
        (datetime(2024, 3, 15, 16, 59, tzinfo=UTC), False),  # 23:59 on the 15th in Jakarta
        (datetime(2024, 3, 15, 17, 0, tzinfo=UTC), True),  # 00:00 on the 16th in Jakarta
    ],
)
def test_today_is_the_date_in_the_configured_zone(now_utc: datetime, accepted: bool) -> None:
    """2024-03-16 is "today" from 17:00 UTC on the 15th on: the zone decides, not UTC."""
    settings = Settings.load(env_file=None, hash_key="test-hash-key-of-the-date-tests")
    tomorrow = date(2024, 3, 16)
    if accepted:
        assert business_date(tomorrow, settings, now=at(now_utc)) == tomorrow
        assert business_date(None, settings, now=at(now_utc)) == tomorrow
    else:
        with pytest.raises(ConfigError, match=r"--date 2024-03-16 is after today \(2024-03-15 "):
            business_date(tomorrow, settings, now=at(now_utc))
        assert business_date(None, settings, now=at(now_utc)) == D


def test_retry_of_a_run_dated_after_today_is_refused(
    sandbox: LocalSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run recorded for a date that is still ahead (a clock set back) is not retried: exit 2."""
    with sandbox as sb:
        env = str(sb.write_env(tmp_path / "sb.env"))
        assert main(["--env-file", env, "run", "--date", "2024-03-15"], now=at(night_of(D))) == 0
        (run_id,) = run_ids(sb)
        requests = sb.fhir_requests()
        capsys.readouterr()
        code = main(["--env-file", env, "retry", run_id], now=at(night_of(date(2024, 3, 14))))
        assert sb.fhir_requests() == requests
        assert run_ids(sb) == [run_id]
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"phonesync: run {run_id} is for 2024-03-15, after today (2024-03-14 in Asia/Jakarta): "
        "a business date cannot be in the future"
    )


@pytest.mark.parametrize("command", ["run", "plan", "worker"])
def test_help_says_the_date_cannot_be_after_today(command: str) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices[command].format_help().split())  # type: ignore[index]
    assert "today or earlier" in text
