"""End to end (issue 3): late edits caught up, replays that never undo newer numbers, frozen inputs.

Real loopback sandboxes (FHIR + Sheets), a real ledger (SQLite and PostgreSQL), clock injected.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from phonesync.crypto import new_key
from phonesync.errors import ConfigError
from phonesync.ledger import snapshots
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, D, mobiles, night_of, niks_for, outcomes_by_row, patients_for, run

BIRTHS = {
    "P1": (date(1995, 3, 2), "female"),
    "P2": (date(1985, 12, 31), "male"),
    "P3": (date(1988, 6, 5), "female"),
    "P4": (date(1990, 1, 1), "male"),
}
NIK = niks_for(BIRTHS)


def _patients() -> list[dict[str, Any]]:
    return patients_for(BIRTHS, NIK)


def _sheet() -> list[list[Any]]:
    return [
        list(HEADER),
        [NIK["P1"], "0812-1111-0001", "15/03/2024"],  # r2: D
        [NIK["P2"], "0812-2222-0002", "15/03/2024"],  # r3: D, edited late
        [NIK["P3"], "0812-345", "15/03/2024"],  # r4: D, invalid phone
        [NIK["P1"], "0813-9999-0001", "12/03/2024"],  # r5: D-3, older than r2
        [NIK["P4"], "0813-4444-0004", "12/03/2024"],  # r6: D-3, nobody newer
    ]


def _versions(sb: LocalSandbox) -> dict[str, int]:
    return {pid: sb.store.version_count(pid) for pid in BIRTHS}


def _fhir_requests_of(sb: LocalSandbox, night: Any) -> tuple[Any, int]:
    before = sb.fhir_requests()
    outcome = night()
    return outcome, sb.fhir_requests() - before


def test_late_edit_is_caught_up_and_a_replay_changes_nothing_newer(
    tmp_path: Path, database_url: str
) -> None:
    """Night D; late edit; night D+1 applies it; D-3 replayed twice never undoes D or D+1."""
    with LocalSandbox(_patients(), _sheet(), tmp_path, database_url=database_url) as sb:
        first = run(sb, D, night_of(D))
        assert outcomes_by_row(sb, first.stats.run_id) == {
            2: "updated", 3: "updated", 4: "invalid_phone"
        }  # fmt: skip
        assert first.summary["rows"]["from_catch_up"] == 0  # a fresh ledger: nothing older

        sb.book.values[2][1] = "0812-2222-9999"  # r3 edited after the run, same date
        sb.book.values.append([NIK["P3"], "0812-3333-0003", "15/03/2024"])  # r7 added late
        sb.book.values.append(["3174", "0812-3333-0004", "15/03/2024"])  # r8 added late, invalid
        second, requests = _fhir_requests_of(
            sb, lambda: run(sb, D + timedelta(1), night_of(D + timedelta(1)))
        )
        assert outcomes_by_row(sb, second.stats.run_id) == {
            3: "updated", 7: "updated", 8: "invalid_nik"
        }  # fmt: skip
        assert second.summary["rows"]["from_catch_up"] == second.summary["rows"]["in_scope"] == 3
        assert requests == 1 + 6  # pre-flight; search, read, write of r3 and r7; r2, r4: nothing
        assert mobiles(sb, "P2") == ["+6281222229999"]
        assert mobiles(sb, "P3") == ["+6281233330003"]

        third, requests = _fhir_requests_of(
            sb, lambda: run(sb, D + timedelta(2), night_of(D + timedelta(2)))
        )
        assert third.summary["rows"]["in_scope"] == 0  # nothing re-reported
        assert requests == 2  # the pre-flight only (metadata, probe search)

        set_by_d_and_d1 = {pid: sb.store.history(pid) for pid in ("P1", "P2", "P3")}
        for replay in (1, 2):  # the same backfill twice
            at = night_of(D + timedelta(2 + replay))
            outcome = run(sb, D - timedelta(3), at)
            got = outcomes_by_row(sb, outcome.stats.run_id)
            assert got == {5: "superseded", 6: "updated" if replay == 1 else "unchanged"}
        assert {pid: sb.store.history(pid) for pid in set_by_d_and_d1} == set_by_d_and_d1
        assert mobiles(sb, "P1") == ["+6281211110001"]
        assert sb.store.version_count("P4") == 2  # one write, by the first replay only


def test_a_newer_invalid_row_holds_the_older_number_back_until_it_is_fixed(
    tmp_path: Path, database_url: str
) -> None:
    """Night D: r3 (09:00) valid, r4 (10:00) `0822-CALL-ME` for P2 → r3 superseded naming r4,
    P2 untouched. r4 fixed after the night → D+1's catch-up applies it, once; r3 stays settled."""
    sheet = [
        list(HEADER),
        [NIK["P1"], "0812-1111-0001", "15/03/2024 08:00"],  # r2
        [NIK["P2"], "0822-2222-2209", "15/03/2024 09:00"],  # r3: replaced by r4
        [NIK["P2"], "0822-CALL-ME", "15/03/2024 10:00"],  # r4: a wrong number written
    ]
    with LocalSandbox(_patients(), sheet, tmp_path, database_url=database_url) as sb:
        first = run(sb, D, night_of(D))
        assert outcomes_by_row(sb, first.stats.run_id) == {
            2: "updated", 3: "superseded", 4: "invalid_phone"
        }  # fmt: skip
        ledger = Ledger.open(sb.settings.database_url)
        try:
            reason = {r.row: r.reason for r in ledger.results(first.stats.run_id)}[3]
        finally:
            ledger.close()
        assert reason == (
            "row 4 for this NIK is newer but its phone is invalid: fix that row "
            "(this older number is not written)"
        )
        assert mobiles(sb, "P2") == ["+6281100000002"]  # not the number the sheet replaced
        assert sb.store.version_count("P2") == 1

        sb.book.values[3][1] = "0822-2222-2210"  # r4 fixed after the night
        second = run(sb, D + timedelta(1), night_of(D + timedelta(1)))
        assert outcomes_by_row(sb, second.stats.run_id) == {4: "updated"}
        assert second.summary["rows"]["from_catch_up"] == 1
        assert mobiles(sb, "P2") == ["+6282222222210"]
        assert sb.store.version_count("P2") == 2

        third = run(sb, D + timedelta(2), night_of(D + timedelta(2)))
        assert third.summary["rows"]["in_scope"] == 0  # r3 and r4 settled: not taken again
        assert sb.store.version_count("P2") == 2


def _with_key(sb: LocalSandbox, key: str) -> None:
    sb.settings = sb.settings.model_copy(update={"snapshot_key": SecretStr(key)})


def test_rerun_of_a_past_date_replays_its_frozen_input(tmp_path: Path) -> None:
    """Re-running D reads what night D read; --from-source reads the sheet as it is now."""
    with LocalSandbox(_patients(), _sheet(), tmp_path, overrides={"snapshot_key": new_key()}) as sb:
        first = run(sb, D, night_of(D))
        assert first.summary["input"] == {"kind": "live", "snapshot_saved": True}
        sb.book.values[2][1] = "0812-2222-9999"  # r3: a late edit, caught up on D+1
        run(sb, D + timedelta(1), night_of(D + timedelta(1)))
        sb.book.values[1][1] = "0812-1111-7777"  # r2: edited again afterwards
        reads = sb.sheets_stats.read_requests

        replay, requests = _fhir_requests_of(sb, lambda: run(sb, D, night_of(D + timedelta(2))))
        assert replay.summary["input"]["kind"] == "snapshot"
        assert replay.summary["input"]["snapshot_of_run"] == first.stats.run_id
        assert sb.sheets_stats.read_requests == reads  # no Sheets request at all
        assert outcomes_by_row(sb, replay.stats.run_id) == {
            2: "unchanged", 3: "superseded", 4: "invalid_phone"
        }  # fmt: skip
        assert requests == 2  # the pre-flight only: the replay needs nothing from the server
        assert mobiles(sb, "P2") == ["+6281222229999"]  # the D+1 edit stands

        fresh = run(sb, D, night_of(D + timedelta(3)), from_source=True)
        assert fresh.summary["input"] == {"kind": "live", "snapshot_saved": True}
        assert outcomes_by_row(sb, fresh.stats.run_id)[2] == "updated"
        assert mobiles(sb, "P1") == ["+6281211117777"]


def test_a_second_run_the_same_night_reads_the_sheet_again(tmp_path: Path) -> None:
    """Tonight's own date is never replayed: a re-run at 23:40 sees the edits made since 23:00."""
    with LocalSandbox(_patients(), _sheet(), tmp_path, overrides={"snapshot_key": new_key()}) as sb:
        run(sb, D, night_of(D))
        sb.book.values[1][1] = "0812-1111-7777"  # r2 edited after the 23:00 run, same date
        again = run(sb, D, night_of(D) + timedelta(minutes=40))
        assert again.summary["input"] == {"kind": "live", "snapshot_saved": True}
        assert outcomes_by_row(sb, again.stats.run_id)[2] == "updated"
        assert mobiles(sb, "P1") == ["+6281211117777"]


def test_retry_replays_what_its_parent_read(tmp_path: Path) -> None:
    """A retry of run D uses run D's frozen rows, not the sheet edited since."""
    with LocalSandbox(_patients(), _sheet(), tmp_path, overrides={"snapshot_key": new_key()}) as sb:
        # r3 fails: its write is rejected (a 422 is never retried, so no back-off waits)
        sb.store.faults.push(status=422, method="PUT", path_prefix="/Patient/P2")
        first = run(sb, D, night_of(D))
        assert outcomes_by_row(sb, first.stats.run_id)[3] == "failed"
        sb.store.faults.clear()
        sb.book.values[2][1] = "0812-2222-8888"
        retry = run(
            sb, D, night_of(D) + timedelta(hours=1), trigger="retry", retry_of=first.stats.run_id
        )
        assert retry.summary["input"]["snapshot_of_run"] == first.stats.run_id
        assert outcomes_by_row(sb, retry.stats.run_id) == {3: "updated"}
        assert mobiles(sb, "P2") == ["+6281222220002"]  # what night D read


def test_snapshots_are_pruned_after_the_retention_period(tmp_path: Path) -> None:
    """A run 91 days later deletes the 90-day-old input before it starts."""
    with LocalSandbox(_patients(), _sheet(), tmp_path, overrides={"snapshot_key": new_key()}) as sb:
        first = run(sb, D, night_of(D))
        ledger = Ledger.open(sb.settings.database_url)
        try:
            assert snapshots.for_run(ledger.engine, first.stats.run_id) is not None
            run(sb, D + timedelta(89), night_of(D + timedelta(89)))
            assert snapshots.for_run(ledger.engine, first.stats.run_id) is not None
            run(sb, D + timedelta(91), night_of(D + timedelta(91)))
            assert snapshots.for_run(ledger.engine, first.stats.run_id) is None
        finally:
            ledger.close()


def test_without_a_key_snapshots_are_off_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No PHONESYNC_SNAPSHOT_KEY: a warning, nothing stored, re-runs read the sheet."""
    caplog.set_level(logging.WARNING)
    with LocalSandbox(_patients(), _sheet(), tmp_path) as sb:
        first = run(sb, D, night_of(D))
        again = run(sb, D, night_of(D) + timedelta(hours=1))
    assert (
        first.summary["input"]
        == again.summary["input"]
        == {"kind": "live", "snapshot_saved": False}
    )
    assert any("frozen inputs are off" in r.getMessage() for r in caplog.records)


def test_a_key_that_cannot_open_the_snapshot_is_a_configuration_error(tmp_path: Path) -> None:
    """Never a silent fall-back to today's sheet: ConfigError (exit 2)."""
    with LocalSandbox(_patients(), _sheet(), tmp_path, overrides={"snapshot_key": new_key()}) as sb:
        run(sb, D, night_of(D))
        _with_key(sb, new_key())
        with pytest.raises(ConfigError, match="cannot decrypt"):
            run(sb, D, night_of(D) + timedelta(hours=1))


def test_daily_mode_never_catches_up(tmp_path: Path) -> None:
    """sync_mode=daily: the late edit of D waits for an explicit re-run of D."""
    overrides = {"sync_mode": "daily"}
    with LocalSandbox(_patients(), _sheet(), tmp_path, overrides=overrides) as sb:
        run(sb, D, night_of(D))
        sb.book.values[2][1] = "0812-2222-9999"
        nxt = run(sb, D + timedelta(1), night_of(D + timedelta(1)))
        assert nxt.summary["rows"]["in_scope"] == nxt.summary["rows"]["from_catch_up"] == 0
        assert mobiles(sb, "P2") == ["+6281222220002"]
