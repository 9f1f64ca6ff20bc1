"""Catch-up's questions to the ledger: settled row contents and the ledger's epoch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from phonesync.ledger import Ledger
from phonesync.ledger.history import epoch, settled_fingerprints
from phonesync.outcomes import Outcome

from .helpers import DAY, row, start_run


@pytest.mark.parametrize(
    ("outcome", "settled"),
    [
        (Outcome.UPDATED, True),
        (Outcome.UNCHANGED, True),
        (Outcome.SUPERSEDED, True),
        (Outcome.INVALID_PHONE, True),
        (Outcome.PATIENT_NOT_FOUND, False),  # the patient may be registered later
        (Outcome.IDENTITY_MISMATCH, True),
        (Outcome.FAILED, False),
        (Outcome.CONFLICT, False),
    ],
)
def test_final_outcomes_settle_a_fingerprint(
    ledger: Ledger, outcome: Outcome, settled: bool
) -> None:
    """Every outcome but failed/conflict/patient_not_found settles a row content."""
    start_run(ledger, "r1")
    recorded = row(2, outcome)
    ledger.record_results("r1", [recorded])
    assert recorded.fingerprint is not None
    found = settled_fingerprints(ledger.engine, [recorded.fingerprint, "ab" * 12])
    assert found == ({recorded.fingerprint} if settled else set())


def test_dry_runs_settle_nothing(ledger: Ledger) -> None:
    """A dry run's rows were never applied: they stay open."""
    start_run(ledger, "dry", dry_run=True)
    recorded = row(2)
    ledger.record_results("dry", [recorded])
    assert recorded.fingerprint is not None
    assert settled_fingerprints(ledger.engine, [recorded.fingerprint]) == set()


def test_a_failed_row_settled_later_counts_as_settled(ledger: Ledger) -> None:
    """failed in one run, updated by a later one: settled."""
    start_run(ledger, "r1")
    start_run(ledger, "r2", business_date=DAY + timedelta(days=1))
    ledger.record_results("r1", [row(2, Outcome.FAILED)])
    ledger.record_results("r2", [row(2)])
    fingerprint = row(2).fingerprint
    assert fingerprint is not None
    assert settled_fingerprints(ledger.engine, [fingerprint]) == {fingerprint}


def test_many_fingerprints_are_looked_up_in_chunks(ledger: Ledger) -> None:
    """More fingerprints than one IN (...) may hold: all found."""
    start_run(ledger, "r1")
    rows = [row(n) for n in range(2, 2_002)]
    ledger.record_results("r1", rows)
    wanted = [r.fingerprint for r in rows if r.fingerprint]
    assert settled_fingerprints(ledger.engine, wanted) == set(wanted)


def test_epoch_is_the_earliest_non_dry_business_date(ledger: Ledger) -> None:
    """None before any run; dry runs do not count."""
    assert epoch(ledger.engine) is None
    start_run(ledger, "dry", business_date=DAY - timedelta(days=30), dry_run=True)
    start_run(ledger, "r1", business_date=DAY)
    start_run(ledger, "r2", business_date=DAY - timedelta(days=3))
    assert epoch(ledger.engine) == DAY - timedelta(days=3)
