"""`phonesync demo` end to end at a tiny size: late edits caught up by D+1, a replay of D-3."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from phonesync.cli import build_parser
from phonesync.sandbox.demo import run_demo, yesterday_in_jakarta


def test_demo_catches_up_late_edits_and_its_replay_writes_nothing_newer(tmp_path: Path) -> None:
    """200 rows, no latency: the sandbox in its own process, edited over loopback HTTP."""
    state = tmp_path / "demo"
    args = build_parser().parse_args(
        ["demo", "--rows", "200", "--patients", "400", "--latency-ms", "0",
         "--date", "2024-03-15", "--late-edits", "12", "--state-dir", str(state)]
    )  # fmt: skip
    assert run_demo(args) == 0

    extra = json.loads((state / "extra-nights.json").read_text())
    assert extra["ok"] is True
    assert extra["late_edits"] == 12
    assert extra["from_catch_up"] == extra["late_edits_picked_up"] == 12
    assert extra["late_edits_updated"] == extra["late_edits_on_server"] == 12
    assert extra["next_day_updated"] == extra["next_day_rows"] == 6
    assert extra["backfill_superseded"] == extra["backfill_rows"] == 12
    assert extra["replay_versions_on_newer"] == 0
    next_day = json.loads((state / "summary-next-day.json").read_text())
    assert next_day["business_date"] == "2024-03-16"
    assert next_day["rows"]["from_catch_up"] == 12
    replay = json.loads((state / "summary-replay.json").read_text())
    assert replay["business_date"] == "2024-03-12"
    assert replay["outcomes"]["superseded"] >= 12


def test_no_extra_nights_runs_only_the_main_night(tmp_path: Path) -> None:
    """--no-extra-nights: the main night and its check, no sheet edits, no further runs."""
    state = tmp_path / "demo"
    args = build_parser().parse_args(
        ["demo", "--rows", "100", "--patients", "200", "--latency-ms", "0",
         "--date", "2024-03-15", "--no-extra-nights", "--state-dir", str(state)]
    )  # fmt: skip
    assert run_demo(args) == 0
    assert not (state / "extra-nights.json").exists()
    assert not (state / "summary-next-day.json").exists()


def test_without_a_date_the_demo_night_is_yesterday_in_jakarta_so_d_plus_1_is_today() -> None:
    """No future business date, even in the demo: 2026-12-04 23:30 UTC is already the 5th in
    Jakarta (UTC+7), so night D is the 4th and D+1 the 5th, Jakarta's today."""
    moment = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
    assert yesterday_in_jakarta(moment) == date(2026, 12, 4)
    assert yesterday_in_jakarta(datetime(2026, 12, 4, 10, 0, tzinfo=UTC)) == date(2026, 12, 3)
