"""Pure parts of the dashboard: users, overview alerts, charts, number formats, hash-password."""

from __future__ import annotations

import argparse
import dataclasses
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher
from tests.web.conftest import FAST, PASSWORD

from phonesync.errors import ConfigError
from phonesync.ledger.records import RunRecord
from phonesync.web.dashboard import overview
from phonesync.web.dashboard.charts import Night, nights_chart, throughput_chart
from phonesync.web.dashboard.render import duration, number, percent
from phonesync.web.dashboard.users import PasswordCheck, cmd_hash_password, parse_users

JAKARTA = ZoneInfo("Asia/Jakarta")
NOW = datetime(2024, 3, 16, 9, 0, tzinfo=JAKARTA)


def _run(day: date, status: str = "succeeded", **summary: object) -> RunRecord:
    start = datetime.combine(day, datetime.min.time(), JAKARTA) + timedelta(hours=23)
    return RunRecord(
        run_id=f"r{day}",
        business_date=day,
        trigger="schedule",
        parent_run_id=None,
        status=status,
        dry_run=False,
        started_at=start,
        finished_at=None,
        config={},
        summary=dict(summary),
        error=None,
        host="h",
        pid=1,
    )


def test_users_split_on_commas_between_entries_only() -> None:
    """Commas inside argon2 hashes (m=…,t=…,p=…) never split an entry."""
    hashed = FAST.hash(PASSWORD)
    users = parse_users(f"a:operator:{hashed}, b:viewer:{hashed};c:viewer:{hashed}\n")
    assert sorted(users) == ["a", "b", "c"]
    assert users["a"].role == "operator"
    assert users["b"].password_hash == hashed


@pytest.mark.parametrize("text", ["a:admin:$argon2id$x", "a:viewer:plaintext", "justaname"])
def test_bad_user_entries_are_refused_without_echoing_them(text: str) -> None:
    """A malformed entry is a ConfigError that names its position, never its content."""
    with pytest.raises(ConfigError) as caught:
        parse_users(text)
    assert "entry 1" in str(caught.value)
    assert "plaintext" not in str(caught.value)


def test_password_check_accepts_only_the_right_password() -> None:
    """Right password → the user; wrong password or unknown user → None."""
    check = PasswordCheck(parse_users(f"a:viewer:{FAST.hash(PASSWORD)}"))
    assert check.verify("A", PASSWORD) is not None
    assert check.verify("a", "wrong") is None
    assert check.verify("nobody", PASSWORD) is None


def test_hash_password_prints_a_usable_entry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync hash-password --user u --role operator` prints an entry that verifies."""
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cmd_hash_password(argparse.Namespace(user="u", role="operator")) == 0
    entry = capsys.readouterr().out.strip()
    assert PASSWORD not in entry
    user = parse_users(entry)["u"]
    assert user.role == "operator"
    assert PasswordHasher().verify(user.password_hash, PASSWORD)


def test_expected_night_follows_the_schedule() -> None:
    """With a 23:00 schedule, at 09:00 the expected night is yesterday's date."""
    next_run = datetime(2024, 3, 16, 23, 0, tzinfo=JAKARTA)
    assert overview.expected_night(NOW, next_run, JAKARTA) == date(2024, 3, 15)
    assert overview.expected_night(NOW, None, JAKARTA) == date(2024, 3, 15)


def test_alerts_fire_for_failures_slowness_and_a_missed_night() -> None:
    """Each alert fires on its own condition, and none fires for a good night."""
    good = _run(date(2024, 3, 15), failure_ratio=0.0, duration_s=60)
    runs = {good.business_date: good}
    quiet = overview.alerts(
        good, date(2024, 3, 15), runs, now=NOW, failure_threshold=0.01, slow_run_s=1800
    )
    assert quiet == []
    bad = _run(date(2024, 3, 14), "completed_with_failures", failure_ratio=0.2, duration_s=4000)
    names = [
        a.name
        for a in overview.alerts(
            bad,
            date(2024, 3, 15),
            {bad.business_date: bad},
            now=NOW,
            failure_threshold=0.01,
            slow_run_s=1800,
        )
    ]
    assert names == ["missed night", "failure ratio", "slow run"]


def test_last_nights_has_gaps_and_skips_retries() -> None:
    """Fourteen slots ending at the given date; a retry run never stands for its night."""
    night = _run(date(2024, 3, 15), outcomes={"updated": 5})
    nights = overview.last_nights(overview.night_runs([night]), date(2024, 3, 15))
    assert len(nights) == 14
    assert nights[-1].run_id == night.run_id
    assert nights[0].run_id is None


def test_nights_chart_draws_bars_with_escaped_tooltips() -> None:
    """Stacked rectangles per group, duration dots, and no raw markup from the data."""
    nights = [
        Night(date(2024, 3, 14), None, None, {}, None),
        Night(date(2024, 3, 15), "r", "<b>", {"updated": 5, "failed": 1}, 90.0),
    ]
    svg = str(nights_chart(nights))
    assert svg.count("<rect") == 2
    assert "<circle" in svg
    assert "<b>" not in svg
    assert "no run" in svg
    assert "90 s" in svg


def test_throughput_chart_needs_two_checkpoints() -> None:
    """One batch cannot make a line; two can."""
    start = datetime(2024, 3, 15, 16, 0, tzinfo=UTC)
    assert throughput_chart([(start, 10)], start) is None
    svg = str(
        throughput_chart(
            [(start + timedelta(seconds=5), 500), (start + timedelta(seconds=10), 500)], start
        )
    )
    assert "1,000 rows recorded in 10 s" in svg


@pytest.mark.parametrize(
    ("value", "shown"), [(1234, "1,234"), (None, "—"), (2.5, "2.5"), (1_000_000.0, "1,000,000")]
)
def test_numbers_are_formatted_for_people(value: object, shown: str) -> None:
    """Thousands separators, a dash for nothing."""
    assert number(value) == shown


def test_percent_and_duration() -> None:
    """Shares with one decimal (and <0.1 %), durations in s / min / h."""
    assert (percent(1, 8), percent(1, 10_000), percent(1, 0)) == ("12.5 %", "<0.1 %", "—")
    shown = (duration(0.42), duration(41.2), duration(723), duration(3720))
    assert shown == ("0.4 s", "41 s", "12 min 3 s", "1 h 02 min")


def _later(run: RunRecord, hours: float, **changes: object) -> RunRecord:
    """`run` started `hours` later, with other fields changed."""
    moved = {"started_at": run.started_at + timedelta(hours=hours)} | changes
    return dataclasses.replace(run, **moved)  # type: ignore[arg-type]


def test_last_night_is_the_latest_date_not_the_latest_replay() -> None:
    """12-04 failed; then 11-20 was replayed with success. Last night is still 12-04, failed,
    and its alert keeps firing."""
    failed = dataclasses.replace(
        _run(date(2026, 12, 4), "failed"), error="FHIR server unavailable (exit 4)"
    )
    replay = _later(
        _run(date(2026, 11, 20), failure_ratio=0.0, duration_s=60),
        hours=240,
        run_id="replay",
        trigger="manual",
    )
    by_date = overview.night_runs([replay, failed])  # newest first, as the ledger lists them
    last = overview.last_night(by_date)
    assert last is not None
    assert (last.business_date, last.status) == (date(2026, 12, 4), "failed")
    now = datetime(2026, 12, 5, 9, 0, tzinfo=JAKARTA)
    firing = overview.alerts(
        last, date(2026, 12, 4), by_date, now=now, failure_threshold=0.01, slow_run_s=1800
    )
    assert [a.name for a in firing] == ["run failed"]
    # a later run of that night that succeeds is what clears it
    rerun = _later(failed, 10, run_id="rerun", status="succeeded", error=None, summary={})
    again = overview.last_night(overview.night_runs([rerun, replay, failed]))
    assert again is not None
    assert (again.run_id, again.status) == ("rerun", "succeeded")
    assert overview.last_night({}) is None


def test_a_night_shows_what_all_its_runs_updated() -> None:
    """1,888 rows updated, then an idempotent re-run (all unchanged): the night shows 1,888
    updated, not 0; a retry's updates count too, out of the failed rows it fixed."""
    day = date(2026, 12, 3)
    first = _run(day, outcomes={"updated": 1888, "unchanged": 12})
    rerun = _later(first, 2, run_id="rerun", summary={"outcomes": {"unchanged": 1900}})
    dry = _later(first, 3, run_id="dry", dry_run=True, summary={"outcomes": {"updated": 7}})
    runs = [dry, rerun, first]
    nights = overview.last_nights(overview.night_runs(runs), day, runs=runs)
    assert nights[-1].run_id == "rerun"
    assert nights[-1].outcomes == {"updated": 1888, "unchanged": 12}

    parent = _run(day, "completed_with_failures", outcomes={"updated": 900, "failed": 100})
    retry = _later(
        parent,
        1,
        run_id="retry",
        trigger="retry",
        parent_run_id=parent.run_id,
        summary={"outcomes": {"updated": 90, "failed": 10}},
    )
    runs = [retry, parent]
    night = overview.last_nights(overview.night_runs(runs), day, runs=runs)[-1]
    assert night.run_id == parent.run_id
    assert night.outcomes == {"updated": 990, "failed": 10}
