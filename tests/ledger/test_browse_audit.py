"""The dashboard's ledger queries (`ledger.browse`) and audit log (`ledger.audit`), on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from tests.ledger.helpers import T0, nik_hash, row, start_run

from phonesync.ledger import Ledger, audit, browse
from phonesync.outcomes import Outcome


def test_results_page_filters_by_outcome_and_reason_text(ledger: Ledger) -> None:
    """Outcome and a case-insensitive reason substring narrow the page and its total."""
    start_run(ledger, "r1")
    ledger.record_results(
        "r1",
        [
            row(2),
            row(3, Outcome.FAILED, reason="PUT rejected: 422 bad"),
            row(4, Outcome.FAILED, reason="search: 503 after 5 attempts"),
            row(5, Outcome.INVALID_PHONE, reason="100% wrong_"),
        ],
    )
    found, total = browse.results_page(ledger.engine, "r1", outcomes=["failed"], reason="put")
    assert ([r.row for r in found], total) == ([3], 1)
    _, total = browse.results_page(ledger.engine, "r1", reason="%")
    assert total == 1  # a `%` typed is a character, not a wildcard
    page, total = browse.results_page(ledger.engine, "r1", offset=1, limit=2)
    assert ([r.row for r in page], total) == ([3, 4], 4)


def test_reason_counts_group_and_order(ledger: Ledger) -> None:
    """Reasons are counted per outcome, most frequent first."""
    start_run(ledger, "r1")
    ledger.record_results(
        "r1",
        [
            row(2, Outcome.FAILED, reason="x"),
            row(3, Outcome.FAILED, reason="x"),
            row(4, Outcome.CONFLICT, reason="y"),
            row(5),
        ],
    )
    assert browse.reason_counts(ledger.engine, "r1") == [("failed", "x", 2), ("conflict", "y", 1)]


def test_progress_points_per_checkpoint(ledger: Ledger) -> None:
    """Each recorded batch is one point: its time and its row count."""
    start_run(ledger, "r1")
    ledger.record_results("r1", [row(2), row(3)], recorded_at=T0 + timedelta(seconds=1))
    ledger.record_results("r1", [row(4)], recorded_at=T0 + timedelta(seconds=3))
    points = browse.progress_points(ledger.engine, "r1")
    assert [n for _, n in points] == [2, 1]
    assert points[1][0] == T0 + timedelta(seconds=3)


def test_results_for_nik_across_runs_newest_first(ledger: Ledger) -> None:
    """One NIK's rows from every run, newest run first; other NIKs stay out."""
    start_run(ledger, "old", started_at=T0)
    start_run(ledger, "new", started_at=T0 + timedelta(days=1))
    ledger.record_results("old", [row(2, Outcome.FAILED, who=7, reason="x"), row(3)])
    ledger.record_results("new", [row(9, who=7)])
    history = browse.results_for_nik(ledger.engine, nik_hash(7))
    assert [(r.run_id, r.row) for r in history] == [("new", 9), ("old", 2)]


def test_audit_entries_are_redacted_paged_and_linked_to_runs(ledger: Ledger) -> None:
    """Entries come back newest first, NIK-like text masked, and a job's run id filled in."""
    start_run(ledger, "r1")
    audit.record(ledger.engine, at=T0, actor="olga", role="operator", action="login", result="ok")
    audit.record(
        ledger.engine,
        at=T0 + timedelta(seconds=1),
        actor="olga",
        role="operator",
        action="retry",
        result="started",
        detail="NIK 3174014203950001",
        job_id="j1",
    )
    entries, total = audit.entries(ledger.engine, limit=1)
    assert total == 2
    assert entries[0].action == "retry"
    assert entries[0].detail is not None
    assert "3174014203950001" not in entries[0].detail
    assert audit.started_by(ledger.engine, "r1") is None
    audit.link_run(ledger.engine, "j1", "r1")
    found = audit.started_by(ledger.engine, "r1")
    assert found is not None
    assert (found.actor, found.at) == ("olga", T0 + timedelta(seconds=1))
