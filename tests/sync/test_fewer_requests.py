"""Requests per update: known patients skip the search; invalid or applied rows cost nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.fhir.conftest import NIK_A, NIK_B, patient_a
from tests.sync.nights import DAY, run_night

from phonesync.sandbox.local import LocalSandbox

HEADER = ["NIK", "No HP", "last_updated_date"]
NEXT = DAY + timedelta(days=1)


def test_second_night_needs_a_read_and_a_write_per_known_patient(tmp_path: Path) -> None:
    """Night 1 searches; night 2 uses the cached ids: 2 requests per update; a re-run: 2."""
    patients = [
        patient_a("P001"),
        patient_a(
            "P002",
            identifier=[{"system": "https://fhir.kemkes.go.id/id/nik", "value": NIK_B}],
            gender="male",
            birthDate="1985-12-31",
        ),
    ]
    values: list[list[object]] = [
        HEADER,
        [NIK_A, "0812-1111-2222", DAY.isoformat()],
        [NIK_B, "0812-3333-4444", DAY.isoformat()],
        ["31740142039500", "0812-5555-6666", DAY.isoformat()],  # invalid NIK: no request
    ]
    # the next day's rows, added after the first night (in the sheet already, they would
    # supersede the first night's rows of the same NIKs: newer wins)
    next_rows: list[list[object]] = [
        [NIK_A, "0813-1111-2222", NEXT.isoformat()],
        [NIK_B, "0813-3333-4444", NEXT.isoformat()],
        # invalid phone: no request (another NIK: a later invalid row of NIK_B would hold row 6
        # back, newer wins)
        ["3174014203950002", "12345", NEXT.isoformat()],
    ]
    with LocalSandbox(patients, values, tmp_path) as sb:  # type: ignore[arg-type]
        first = run_night(sb, DAY)
        sb.book.values.extend(next_rows)
        searches = sum("?identifier=" in r.raw_path_qs for r in sb.store.requests)
        before = sb.fhir_requests()
        second = run_night(sb, NEXT)
        night2 = sb.store.requests[before:]
        third = run_night(sb, NEXT)
    assert first.summary["outcomes"]["updated"] == 2
    assert first.summary["outcomes"]["invalid_nik"] == 1
    assert searches == 3  # two patients + the pre-flight probe
    assert second.summary["outcomes"]["updated"] == 2
    assert not any("?identifier=" in r.raw_path_qs and "0000" not in r.raw_path_qs for r in night2)
    assert second.summary["requests"]["per_updated_row"] == 3.0  # 2 each + 2 pre-flight
    assert [r.method for r in night2].count("PUT") == 2
    assert third.summary["requests"]["total"] == 2  # the pre-flight only: already applied rows
    assert third.summary["outcomes"]["unchanged"] == 2
