"""A broken night looks broken: anomaly checks, the pre-flight on empty nights, the summary path."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from tests.safety.nights import night_of
from tests.safety.nights import run as run_at
from tests.sync.nights import DAY, results_by_row, run_night

from phonesync import logs
from phonesync.cli import execute, main
from phonesync.outcomes import Outcome
from phonesync.report import RunStats
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.settings import Settings
from phonesync.sync import RunRequest, SourceDates, run_anomalies

HEADER = ["NIK", "No HP", "last_updated_date"]
NIK_A = "3174014203950001"
CHECKS = {"not_found_threshold": 0.2, "invalid_threshold": 0.5}


@pytest.fixture(scope="module")
def tiny() -> SandboxData:
    """60 in-scope rows, mostly `updated` with the right NIK system."""
    return generate(seed=5, patients=80, rows=60, business_date=DAY)


def _run_cli(env: Path, *args: str) -> int:
    return main(["--env-file", str(env), "run", "--date", DAY.isoformat(), *args])


def _stats(in_scope: int, searched: int = 0, **outcomes: int) -> RunStats:
    stats = RunStats("r", DAY, "manual", datetime(2024, 3, 15, tzinfo=UTC), in_scope=in_scope)
    stats.searched = searched
    stats.outcomes.update(outcomes)
    return stats


def test_wrong_nik_system_ends_completed_with_failures(
    tmp_path: Path, tiny: SandboxData, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in PHONESYNC_NIK_SYSTEM: every search misses → exit 1, the reason in summary/runs."""
    overrides = {"nik_system": "https://fhir.kemkes.go.id/id/nikk"}
    with LocalSandbox(tiny.patients, tiny.values, tmp_path, overrides=overrides) as sb:
        env = sb.write_env(tmp_path / "sb.env")
        summary_path = tmp_path / "s.json"
        code = _run_cli(env, "--summary-json", str(summary_path))
        assert sb.store.writes == 0
        err = capsys.readouterr().err
        assert main(["--env-file", str(env), "runs", "--format", "json"]) == 0
        runs = json.loads(capsys.readouterr().out)
    summary = json.loads(summary_path.read_text())
    assert code == 1
    assert summary["status"] == "completed_with_failures"
    assert summary["failure_ratio"] == 0.0
    searched = summary["rows"]["searched"]
    assert searched >= 20
    assert summary["outcomes"]["patient_not_found"] == searched
    [warning] = summary["warnings"]
    assert warning.startswith("100 % of searched NIKs were not found")
    assert "PHONESYNC_NIK_SYSTEM" in warning
    assert "PHONESYNC_FHIR_BASE_URL" in warning
    assert summary["error"] == warning
    assert warning in err
    assert runs[0]["status"] == "completed_with_failures"
    assert runs[0]["error"] == warning


def test_right_nik_system_has_no_warnings(tmp_path: Path, tiny: SandboxData) -> None:
    """The same night with the right system: a few not found, no warning, succeeded."""
    with LocalSandbox(tiny.patients, tiny.values, tmp_path) as sb:
        outcome = run_night(sb)
    assert outcome.stats.status == "succeeded"
    assert outcome.summary["warnings"] == []
    assert outcome.summary["rows"]["searched"] > 20


def test_a_night_of_numeric_nik_cells_ends_completed_with_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The NIK column reformatted as Number: 100 % invalid_nik → exit 1 naming it and its share."""
    values: list[list[object]] = [HEADER]
    values += [[int(NIK_A) + n, f"0812-3456-{7000 + n}", "2024-03-15"] for n in range(12)]
    with LocalSandbox([], values, tmp_path) as sb:  # type: ignore[arg-type]
        env = sb.write_env(tmp_path / "sb.env")
        summary_path = tmp_path / "s.json"
        code = _run_cli(env, "--summary-json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    assert code == 1
    assert summary["status"] == "completed_with_failures"
    assert summary["outcomes"]["invalid_nik"] == summary["rows"]["in_scope"] == 12
    [warning] = summary["warnings"]
    assert warning.startswith("100 % of the rows in scope are invalid_nik (12 of 12;")
    assert "PHONESYNC_INVALID_THRESHOLD 50 %" in warning
    assert warning in capsys.readouterr().err


def test_anomaly_checks_need_enough_rows_and_a_share_above_the_threshold() -> None:
    """19 searched or 9 in scope prove nothing; exactly at the threshold is no warning."""
    checks = {"not_found_threshold": 0.2, "invalid_threshold": 0.5}
    assert run_anomalies(_stats(19, 19, patient_not_found=19), **checks) == []
    assert run_anomalies(_stats(20, 20, patient_not_found=4), **checks) == []
    [nf] = run_anomalies(_stats(40, 25, patient_not_found=17), **checks)
    assert nf.startswith("68 % of searched NIKs were not found (17 of 25;")
    assert run_anomalies(_stats(9, invalid_nik=9), **checks) == []
    assert run_anomalies(_stats(10, invalid_nik=3, invalid_phone=2), **checks) == []
    [inv] = run_anomalies(_stats(10, invalid_nik=2, invalid_phone=3, invalid_date=1), **checks)
    assert inv.startswith("30 % of the rows in scope are invalid_phone (3 of 10;")
    assert "all invalid outcomes 60 %" in inv
    assert Outcome.INVALID_PHONE.value in inv


def _source(dates: dict[date, int], today: date = DAY, rows_read: int | None = None) -> SourceDates:
    total = sum(dates.values()) if rows_read is None else rows_read
    return SourceDates(total, dates, {d: [2] for d in dates}, today, "Asia/Jakarta")


def test_a_night_without_rows_for_its_date_ends_completed_with_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sheet has data rows, none for the date (a tab that stopped receiving rows): exit 1."""
    values: list[list[object]] = [HEADER]
    values += [[NIK_A, "0812-3456-7890", f"{day}/10/2026 10:00"] for day in (28, 29, 30)]
    with LocalSandbox([], values, tmp_path) as sb:  # type: ignore[arg-type]
        env = sb.write_env(tmp_path / "sb.env")
        summary_path = tmp_path / "s.json"
        args = ["--env-file", str(env), "run", "--date", "2026-11-01"]
        code = main([*args, "--summary-json", str(summary_path)])
        err = capsys.readouterr().err
        dry_code = main([*args, "--dry-run"])
        capsys.readouterr()  # the dry run's preview
        assert main(["--env-file", str(env), "runs", "--format", "json"]) == 0
        runs = json.loads(capsys.readouterr().out)
    summary = json.loads(summary_path.read_text())
    assert (code, dry_code) == (1, 1)
    assert summary["status"] == "completed_with_failures"
    assert summary["rows"] == {"read": 3, "in_scope": 0, "from_catch_up": 0, "searched": 0}
    assert summary["failure_ratio"] == 0.0
    [warning] = summary["warnings"]
    assert warning == (
        "no rows for 2026-11-01: the sheet has 3 data rows, the newest dated 2026-10-30: is the "
        "sheet still being filled, or PHONESYNC_SHEET_RANGE pointing at the old tab?"
    )
    assert summary["error"] == warning
    assert warning in err
    assert runs[-1]["status"] == "completed_with_failures"
    assert runs[-1]["error"] == warning


def test_quiet_nights_setting_turns_the_no_rows_check_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHONESYNC_QUIET_NIGHTS=true (a deployment with nights without updates): succeeded."""
    values: list[list[object]] = [HEADER, [NIK_A, "0812-3456-7890", "30/10/2026 10:00"]]
    overrides = {"quiet_nights": True}
    with LocalSandbox([], values, tmp_path, overrides=overrides) as sb:  # type: ignore[arg-type]
        outcome = run_night(sb, date(2026, 11, 1))
    assert outcome.summary["rows"]["in_scope"] == 0
    assert (outcome.stats.status, outcome.summary["warnings"]) == ("succeeded", [])
    assert Settings.load(env_file=None).quiet_nights is False
    monkeypatch.setenv("PHONESYNC_QUIET_NIGHTS", "true")
    assert Settings.load(env_file=None).quiet_nights is True


def test_catch_up_and_undated_rows_do_not_hide_a_sheet_that_stopped(tmp_path: Path) -> None:
    """D+1 has rows in scope — D's not-found row searched again, an undated row — but none of its
    own: still the warning. A retry of that run replays its parent's input: no source check."""
    values: list[list[object]] = [
        HEADER,
        [NIK_A, "0812-3456-7890", "15/03/2024 10:00"],  # not found: open for catch-up
        ["3174013112850002", "0812-3456-7891", "kemarin"],  # in every night's scope
    ]
    with LocalSandbox([], values, tmp_path) as sb:  # type: ignore[arg-type]
        first = run_night(sb, DAY)
        second = run_night(sb, DAY + timedelta(1))
        retry = run_night(sb, DAY + timedelta(1), retry_of=second.stats.run_id, trigger="retry")
        assert {r: str(x.outcome) for r, x in results_by_row(sb, second.stats.run_id).items()} == {
            2: "patient_not_found",
            3: "invalid_date",
        }
    assert first.summary["warnings"] == []
    assert second.summary["rows"]["in_scope"] == 2
    assert second.summary["rows"]["from_catch_up"] == 1
    assert second.summary["warnings"] == [
        "no rows for 2024-03-16: the sheet has 2 data rows, the newest dated 2024-03-15: is the "
        "sheet still being filled, or PHONESYNC_SHEET_RANGE pointing at the old tab?"
    ]
    assert second.stats.status == "completed_with_failures"
    assert (retry.summary["rows"]["in_scope"], retry.summary["warnings"]) == (0, [])
    assert retry.stats.status == "succeeded"


def test_a_quiet_day_before_later_rows_is_not_a_broken_night(tmp_path: Path) -> None:
    """A replay of a date nobody sent updates on, while later rows exist: the sheet is alive."""
    values: list[list[object]] = [
        HEADER,
        [NIK_A, "0812-3456-7890", "09/03/2024"],
        [NIK_A, "0812-3456-7891", "11/03/2024"],
    ]
    with LocalSandbox([], values, tmp_path, overrides={"sync_mode": "daily"}) as sb:  # type: ignore[arg-type]
        outcome = run_night(sb, date(2024, 3, 10))
    assert outcome.summary["rows"]["in_scope"] == 0
    assert outcome.summary["warnings"] == []
    assert outcome.stats.status == "succeeded"


def test_no_rows_check_counts_only_rows_dated_the_date_or_later() -> None:
    """Rows of the date or later (up to tomorrow): quiet. None: the warning, whatever in scope."""
    stats = _stats(0)
    d = DAY
    assert run_anomalies(stats, **CHECKS, source=_source({d: 1})) == []
    assert run_anomalies(stats, **CHECKS, source=_source({d + timedelta(1): 1})) == []
    [stale] = run_anomalies(
        _stats(40, invalid_date=1),
        **CHECKS,
        source=_source({d - timedelta(2): 1233}, rows_read=1234),
    )
    assert stale.startswith(
        "no rows for 2024-03-15: the sheet has 1,234 data rows, the newest dated 2024-03-13: "
    )
    [one] = run_anomalies(stats, **CHECKS, source=_source({}, rows_read=1))
    assert one.startswith(
        "no rows for 2024-03-15: the sheet has 1 data row, none with a readable date"
    )
    [typo, future] = run_anomalies(stats, **CHECKS, source=_source({date(2027, 12, 4): 1}))
    assert ", all dated after tomorrow: " in typo
    assert future.startswith("1 row is dated after tomorrow")
    stale_source = _source({d - timedelta(2): 5})
    assert run_anomalies(stats, **CHECKS, source=stale_source, quiet_nights=True) == []
    assert run_anomalies(stats, **CHECKS) == []  # no source (a retry, scale-out): no check


def test_rows_dated_after_tomorrow_end_the_night_completed_with_failures(tmp_path: Path) -> None:
    """A year typo (`04/12/2025` on 2024-03-15) is in no night's scope until then: the night says
    so (count, the furthest date, the rows) and is completed_with_failures. Tomorrow's rows are
    tomorrow night's: not counted. A row dated later holds older rows of its NIK back (newer
    wins, even over a typo: the reason names it)."""
    values: list[list[object]] = [
        HEADER,
        [NIK_A, "0812-3456-7890", "15/03/2024 10:00"],
        [NIK_A, "0812-3456-7891", "04/12/2025 10:00"],  # r3: the year typed 2025
        ["3174013112850002", "0812-3456-7892", "16/03/2024 00:30"],  # tomorrow (a WIT clock)
        ["3174013112850002", "0812-3456-7893", "20/03/2024"],  # r5
    ]
    with LocalSandbox([], values, tmp_path) as sb:  # type: ignore[arg-type]
        night = run_at(sb, DAY, night_of(DAY))
        tomorrow = run_at(sb, DAY + timedelta(1), night_of(DAY + timedelta(1)))
    assert night.summary["rows"]["in_scope"] == 1
    assert night.summary["warnings"] == [
        "2 rows are dated after tomorrow (today is 2024-03-15 in Asia/Jakarta), the furthest "
        "2025-12-04 (sheet rows 3, 5): a typo in the year? No night takes such a row before its "
        "date, and then it overwrites what was set meanwhile (newer wins): fix the date in the "
        "sheet"
    ]
    assert night.stats.status == "completed_with_failures"
    assert night.summary["error"] == night.summary["warnings"][0]
    [r2] = results_by_row(sb, night.stats.run_id).values()
    assert (str(r2.outcome), r2.reason) == (
        "superseded",
        "row 3 for this NIK is dated 2025-12-04, after this run's date: that newer update wins "
        "(this older number is not written)",
    )
    # the next night: r4 is its own row now, held back by r5 (2024-03-20); r3, r5 still ahead
    [warning] = tomorrow.summary["warnings"]
    assert warning.startswith("2 rows are dated after tomorrow (today is 2024-03-16 in Asia/")
    assert {r: str(x.outcome) for r, x in results_by_row(sb, tomorrow.stats.run_id).items()} == {
        4: "superseded",
    }


def test_rows_dated_in_the_future_are_counted_and_named_up_to_five() -> None:
    """Counts every such row, names the first five sheet rows, the furthest date; none: none."""
    far, near = date(2027, 12, 4), date(2027, 11, 25)
    dates = {DAY: 10, far: 7, near: 3}
    first_rows = {DAY: [2], far: [9, 11, 30, 31, 40], near: [5, 6, 50]}
    source = SourceDates(20, dates, first_rows, DAY, "Asia/Jakarta")
    [warning] = run_anomalies(_stats(10), **CHECKS, source=source)
    assert warning.startswith(
        "10 rows are dated after tomorrow (today is 2024-03-15 in Asia/Jakarta), the furthest "
        "2027-12-04 (sheet rows 5, 6, 9, 11, 30, …): a typo in the year?"
    )
    tomorrow = _source({DAY: 1, DAY + timedelta(1): 4})
    assert run_anomalies(_stats(1), **CHECKS, source=tomorrow) == []


def test_the_invalid_warning_hint_fits_the_dominant_outcome() -> None:
    """invalid_date dominant: a hint about dates, not about a NIK column formatted as Number."""
    [dates] = run_anomalies(_stats(10, invalid_date=8, invalid_nik=1), **CHECKS)
    assert dates.startswith("80 % of the rows in scope are invalid_date (8 of 10;")
    assert "NIK" not in dates
    assert dates.endswith(
        "check the sheet's columns and their format (dates written month first (MM/DD/YYYY) or "
        "with a two-digit year, the sheet's locale changed? or another column under the date "
        "header?)"
    )
    [phones] = run_anomalies(_stats(10, invalid_phone=6), **CHECKS)
    assert "(phones shown as 6.28E+12, a phone column formatted as Number?" in phones
    assert "NIK" not in phones
    [niks] = run_anomalies(_stats(10, invalid_nik=6), **CHECKS)
    assert niks.endswith("(a NIK column formatted as Number?)")


def test_night_with_nothing_in_scope_still_checks_the_fhir_credentials(tmp_path: Path) -> None:
    """0 rows in scope and a wrong API key: the pre-flight runs anyway → exit 4, dry run too."""
    values = [HEADER, [NIK_A, "0812-3456-7890", "2024-03-10"]]  # another date only
    profile = FhirProfile(api_key="the-real-key")
    overrides = {"fhir_api_key": "wrong-key", "sync_mode": "daily"}
    with LocalSandbox([], values, tmp_path, profile=profile, overrides=overrides) as sb:
        env = sb.write_env(tmp_path / "sb.env")
        summary_path = tmp_path / "s.json"
        code = _run_cli(env, "--summary-json", str(summary_path))
        dry_code = _run_cli(env, "--dry-run")
        assert sb.fhir_requests() > 0
    summary = json.loads(summary_path.read_text())
    assert (code, dry_code) == (4, 4)
    assert summary["status"] == "failed"
    assert summary["rows"]["in_scope"] == 0


def test_night_of_invalid_rows_only_still_checks_the_fhir_server(tmp_path: Path) -> None:
    """Every row invalid (nothing needs FHIR) and the server unreachable → exit 4, not 0."""
    values = [HEADER, [NIK_A, "12345", "2024-03-15"]]
    overrides = {"fhir_base_url": "http://127.0.0.1:1/fhir-r4/v1", "max_attempts": 1}
    with LocalSandbox([], values, tmp_path, overrides=overrides) as sb:
        env = sb.write_env(tmp_path / "sb.env")
        assert _run_cli(env) == 4
        assert _run_cli(env, "--dry-run") == 4


@pytest.mark.parametrize("target", ["/proc/s.json", "dir"], ids=["proc", "directory"])
def test_unwritable_summary_path_is_refused_before_any_work(
    tmp_path: Path, tiny: SandboxData, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--summary-json /proc/s.json` or a directory: exit 2, no FHIR request, no run recorded."""
    path = tmp_path if target == "dir" else Path(target)
    with LocalSandbox(tiny.patients, tiny.values, tmp_path) as sb:
        env = sb.write_env(tmp_path / "sb.env")
        with pytest.raises(SystemExit) as exc:
            _run_cli(env, "--summary-json", str(path))
        assert sb.fhir_requests() == 0
    assert exc.value.code == 2
    assert not (tmp_path / "ledger.sqlite3").exists()  # not even the run was recorded


def test_summary_path_check_leaves_no_file_behind(tmp_path: Path) -> None:
    """The up-front check creates the file to prove it can, and removes it again."""
    path = tmp_path / "new.json"
    with pytest.raises(SystemExit):
        main(["run", "--summary-json", str(path), "--date", "not-a-date"])
    assert not path.exists()
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    with pytest.raises(SystemExit):  # checked, then --help: nothing went wrong, nothing ran
        main(["run", "--summary-json", str(kept), "--help"])
    assert kept.read_text() == "{}"  # (an argument error removes it: tests/cli)


def test_summary_that_cannot_be_written_at_the_end_is_a_clear_error(
    tmp_path: Path, tiny: SandboxData, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writing the summary fails after the run: one error line, no traceback, the run's code."""
    with LocalSandbox(tiny.patients, tiny.values, tmp_path) as sb:
        logs.configure("INFO", "json")  # onto this test's stderr
        code = execute(sb.settings, RunRequest(business_date=DAY), "/proc/s.json")
    err = capsys.readouterr().err
    assert code == 0
    assert "phonesync: could not write the summary file /proc/s.json" in err
    assert "ended succeeded and is recorded in the ledger" in err
    assert "Traceback" not in err
