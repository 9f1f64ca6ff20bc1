"""`patient_not_found` stays open for catch-up: a patient registered later, or a wrong NIK system.

Real loopback sandboxes (FHIR + Sheets), a real ledger (SQLite and PostgreSQL), clock injected.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from phonesync.ledger import history
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, D, mobiles, night_of, nik_for, outcomes_by_row, patient, run

BIRTH = date(1991, 7, 9)
NIK_KNOWN = nik_for(BIRTH, "male", 1)
NIK_LATE = nik_for(BIRTH, "male", 2)  # registered with the national server only after night D


def _sheet() -> list[list[Any]]:
    return [
        list(HEADER),
        [NIK_KNOWN, "0812-1111-0001", "15/03/2024"],  # r2
        [NIK_LATE, "0812-2222-0002", "15/03/2024"],  # r3: not found on D
    ]


def test_not_found_row_is_caught_up_once_the_patient_is_registered(
    tmp_path: Path, database_url: str
) -> None:
    """D: r3 not found; D+1: searched again, still not found; D+2: registered → updated once."""
    known = patient("P1", NIK_KNOWN, BIRTH, "male", "+6281100000001")
    with LocalSandbox([known], _sheet(), tmp_path, database_url=database_url) as sb:
        first = run(sb, D, night_of(D))
        assert outcomes_by_row(sb, first.stats.run_id) == {2: "updated", 3: "patient_not_found"}

        retry = run(sb, D, night_of(D), retry_of=first.stats.run_id, trigger="retry")
        assert retry.summary["rows"]["in_scope"] == 0  # retry: only failed/conflict, as before

        second = run(sb, D + timedelta(1), night_of(D + timedelta(1)))
        assert outcomes_by_row(sb, second.stats.run_id) == {3: "patient_not_found"}
        assert second.summary["rows"]["from_catch_up"] == 1

        sb.store.add(patient("P2", NIK_LATE, BIRTH, "male", "+6281100000002"))
        third = run(sb, D + timedelta(2), night_of(D + timedelta(2)))
        assert outcomes_by_row(sb, third.stats.run_id) == {3: "updated"}
        assert mobiles(sb, "P2") == ["+6281222220002"]

        fourth = run(sb, D + timedelta(3), night_of(D + timedelta(3)))
        assert fourth.summary["rows"]["in_scope"] == 0  # settled by the update: not taken again
        assert sb.store.version_count("P1") == sb.store.version_count("P2") == 2


def test_settled_fingerprints_leave_not_found_open(tmp_path: Path, database_url: str) -> None:
    """The ledger's answer to "settled?": updated is settled, patient_not_found is not."""
    known = patient("P1", NIK_KNOWN, BIRTH, "male", "+6281100000001")
    with LocalSandbox([known], _sheet(), tmp_path, database_url=database_url) as sb:
        first = run(sb, D, night_of(D))
        ledger = Ledger.open(sb.settings.database_url)
        try:
            results = ledger.results(first.stats.run_id)
            by_row = {r.row: r.fingerprint for r in results if r.fingerprint is not None}
            settled = history.settled_fingerprints(ledger.engine, by_row.values())
        finally:
            ledger.close()
    assert settled == {by_row[2]}


def test_not_found_again_does_not_make_a_small_night_look_broken(
    tmp_path: Path, database_url: str
) -> None:
    """D: 19 of 119 NIKs unknown (below the threshold). D+1 has 3 rows of its own, and
    catch-up searches D's 19 again: those repeats are no sign of a wrong NIK system."""
    known = [nik_for(BIRTH, "male", n) for n in range(10, 113)]
    unknown = [nik_for(BIRTH, "male", n) for n in range(200, 219)]
    patients = [
        patient(f"P{i}", nik, BIRTH, "male", f"+62811000{i:05d}") for i, nik in enumerate(known)
    ]
    rows = [list(HEADER)]
    rows += [[nik, f"0812-3333-{i:04d}", "15/03/2024"] for i, nik in enumerate(known[:100])]
    rows += [[nik, f"0812-4444-{i:04d}", "15/03/2024"] for i, nik in enumerate(unknown)]
    rows += [[nik, f"0812-5555-{i:04d}", "16/03/2024"] for i, nik in enumerate(known[100:])]
    with LocalSandbox(patients, rows, tmp_path, database_url=database_url) as sb:
        first = run(sb, D, night_of(D))
        assert first.summary["outcomes"]["patient_not_found"] == 19
        assert first.summary["status"] == "succeeded"
        second = run(sb, D + timedelta(1), night_of(D + timedelta(1)))
    assert second.summary["rows"]["from_catch_up"] == 19
    assert second.summary["outcomes"]["patient_not_found"] == 19
    assert second.summary["outcomes"]["updated"] == 3
    assert second.summary["warnings"] == []
    assert second.summary["status"] == "succeeded"
