"""A whole night over real loopback HTTP: sandboxes, the real ledger, the real FHIR client."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from tests.sync.nights import DAY, results_by_row, run_night

from phonesync.fhir.updater import UNCHANGED_ON_RECORD
from phonesync.normalise.phone import normalise_phone
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData


def _active_mobiles(patient: dict) -> list[str]:
    return [
        t["value"]
        for t in patient.get("telecom", [])
        if t.get("system") == "phone"
        and t.get("use") == "mobile"
        and "end" not in t.get("period", {})
    ]


def test_night_outcomes_match_the_data_and_the_server(
    sandbox: LocalSandbox, synth_small: SandboxData
) -> None:
    """Every row gets the outcome its data was built for; the server holds exactly that."""
    outcome = run_night(sandbox)
    summary = outcome.summary
    assert outcome.error is None
    assert summary["status"] == "succeeded"
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"] == 1200
    got = results_by_row(sandbox, summary["run_id"])
    assert {row: str(r.outcome) for row, r in got.items()} == synth_small.expected
    # every row but a written one says why; `unchanged` names what the record already held
    assert all(r.reason for r in got.values() if str(r.outcome) != "updated")
    assert {r.reason for r in got.values() if str(r.outcome) == "unchanged"} == {
        UNCHANGED_ON_RECORD
    }
    header = synth_small.values[0]
    phone_col = header.index("No WhatsApp")
    for row, record in got.items():
        if str(record.outcome) != "updated":
            continue
        history = sandbox.store.history(record.patient_id)
        assert len(history) == 2, f"row {row}: exactly one new version"
        wanted = normalise_phone(synth_small.values[row - 1][phone_col])
        assert _active_mobiles(history[-1]) == [wanted]


def test_rerun_of_the_same_night_sends_no_write(sandbox: LocalSandbox) -> None:
    """C8(B): the second run of D writes nothing and costs no FHIR request for applied rows."""
    first = run_night(sandbox)
    writes = sandbox.store.writes
    requests_before = sandbox.fhir_requests()
    second = run_night(sandbox)
    assert sandbox.store.writes == writes
    assert second.summary["outcomes"]["updated"] == 0
    reasons = {r.reason for r in results_by_row(sandbox, second.summary["run_id"]).values()}
    assert f"already applied by run {first.summary['run_id']}" in reasons
    assert second.summary["outcomes"]["unchanged"] == (
        first.summary["outcomes"]["updated"] + first.summary["outcomes"]["unchanged"]
    )
    # only rows that never reached "applied" (not found, ambiguous, mismatch) ask the server again
    retried = sum(
        first.summary["outcomes"][o]
        for o in ("patient_not_found", "ambiguous_patient", "identity_mismatch")
    )
    assert sandbox.fhir_requests() - requests_before <= 3 * retried + 2


def test_dry_run_reads_but_never_writes(sandbox: LocalSandbox) -> None:
    """--dry-run plans and reads, reports what would change, and leaves no version behind."""
    outcome = run_night(sandbox, dry_run=True)
    assert sandbox.store.writes == 0
    assert outcome.summary["dry_run"] is True
    assert outcome.summary["outcomes"]["updated"] > 1000
    real = run_night(sandbox)
    assert real.summary["outcomes"]["updated"] == outcome.summary["outcomes"]["updated"]


def test_other_dates_are_out_of_scope(sandbox: LocalSandbox) -> None:
    """A night with no rows of its date reads the sheet, writes nothing, and succeeds."""
    outcome = run_night(sandbox, date(2023, 1, 1))
    assert outcome.summary["rows"]["read"] > 1200
    # rows whose date cannot be read belong to every night
    assert outcome.summary["rows"]["in_scope"] == outcome.summary["outcomes"]["invalid_date"]
    assert sandbox.store.writes == 0


@pytest.mark.postgres
def test_night_on_postgresql_ledger(
    tmp_path: Path, synth_small: SandboxData, empty_postgres_url: str
) -> None:
    """The same night recorded in PostgreSQL: outcomes match, a re-run writes nothing."""
    with LocalSandbox(
        synth_small.patients, synth_small.values, tmp_path, database_url=empty_postgres_url
    ) as sb:
        first = run_night(sb, DAY)
        got = results_by_row(sb, first.summary["run_id"])
        assert {row: str(r.outcome) for row, r in got.items()} == synth_small.expected
        writes = sb.store.writes
        run_night(sb, DAY)
        assert sb.store.writes == writes
