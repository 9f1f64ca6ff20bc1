"""Read-only pages through the real app: overview, run, rows with filters/paging, CSV, look-up."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

from tests.web.conftest import RUN_ID, Site, nik_of

from phonesync.ledger import audit


def test_overview_shows_last_night_chart_and_alert(site: Site) -> None:
    """The overview names last night's status, draws 14 nights and fires the failure alert."""
    site.login("victor")
    page = site.client.get("/").text
    assert "Completed with failures" in page
    assert page.count("<svg") == 1
    assert "Last nights: outcomes and duration" in page
    assert "failure ratio" in page
    assert "15.00 %" in page


def test_run_detail_shows_counts_reasons_requests_and_config(site: Site) -> None:
    """Counts with shares, grouped reasons, 429s and the recorded configuration."""
    site.login("victor")
    page = site.client.get(f"/runs/{RUN_ID}").text
    assert "85.0 %" in page
    assert "15.0 %" in page
    assert "PUT rejected: 422 invalid" in page
    assert "429 Too Many Requests</dt><dd>3</dd>" in page
    assert "the schedule" in page


def test_unknown_run_is_404(site: Site) -> None:
    """A run id that is not in the ledger gives a 404 page."""
    site.login("victor")
    assert site.client.get("/runs/nope").status_code == 404


def test_rows_filter_by_outcome_and_reason(site: Site) -> None:
    """Filtering by outcome and reason text shows only those rows, masked."""
    site.login("victor")
    page = site.client.get(f"/runs/{RUN_ID}/rows", params={"outcome": "failed", "reason": "422"})
    assert "Rows 1–3 of 3" in page.text
    assert page.text.count('class="badge badge-o-failed"') == 3
    assert nik_of(19) not in page.text
    assert "317401******0019" in page.text


def test_rows_are_paged(site: Site) -> None:
    """Pages of 100 rows: page 2 of a 20-row run is empty, page 1 links no next page."""
    site.login("victor")
    first = site.client.get(f"/runs/{RUN_ID}/rows").text
    assert "Rows 1–20 of 20" in first
    assert 'rel="next"' not in first


def test_csv_export_is_masked_and_filtered(site: Site) -> None:
    """The CSV has the report's columns, masked values, only the filtered rows — and is audited."""
    site.login("victor")
    response = site.client.get(f"/runs/{RUN_ID}/rows.csv", params={"outcome": "failed"})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["row"] for r in rows] == ["19", "20", "21"]
    assert all("*" in r["nik"] and "*" in r["phone"] for r in rows)
    entries, _ = audit.entries(site.ctx.ledger.engine)
    assert entries[0].action == "export_csv"


def test_nik_lookup_hashes_what_is_typed_and_never_shows_it(site: Site) -> None:
    """A NIK typed with spaces finds its history; the page and audit log show it masked only."""
    site.login("victor")
    typed = f"{nik_of(18)[:6]} {nik_of(18)[6:]}"
    response = site.client.post("/lookup", data={"nik": typed, "csrf_token": site.token()})
    assert response.status_code == 200
    assert "History of 317401******0018" in response.text
    assert RUN_ID in response.text
    assert nik_of(18) not in response.text
    entries, _ = audit.entries(site.ctx.ledger.engine)
    assert entries[0].action == "nik_lookup"
    assert entries[0].target == "317401******0018"
    assert all(nik_of(18) not in str(e) for e in entries)


def test_nik_lookup_refuses_an_invalid_nik(site: Site) -> None:
    """A value that is not a NIK is refused with the reason, not hashed."""
    site.login("victor")
    response = site.client.post("/lookup", data={"nik": "12345", "csrf_token": site.token()})
    assert response.status_code == 422
    assert "Not a valid NIK" in response.text


def test_audit_page_lists_entries(site: Site) -> None:
    """The audit page shows who signed in."""
    site.login("victor")
    page = site.client.get("/audit").text
    assert "victor" in page
    assert "login" in page


def test_pause_and_resume_from_the_overview(site: Site) -> None:
    """An operator pauses and resumes the schedule; the overview says so."""
    site.login("olga")
    site.client.post("/actions/schedule", data={"op": "pause", "csrf_token": site.token()})
    assert site.schedule.paused
    assert "Paused" in site.client.get("/").text
    site.client.post("/actions/schedule", data={"op": "resume", "csrf_token": site.token()})
    assert not site.schedule.paused


def test_a_good_replay_of_an_older_date_does_not_hide_a_failed_night(site: Site) -> None:
    """The fixture's night (2024-03-15) is followed by a failed 03-16; then 03-01 is replayed
    with success. The overview still says last night failed, with its alert."""
    ledger = site.ctx.ledger
    started = datetime(2024, 3, 16, 16, 0, tzinfo=UTC)
    ledger.create_run(
        run_id="night-0316",
        business_date=date(2024, 3, 16),
        trigger="schedule",
        config={},
        dry_run=False,
        started_at=started,
    )
    ledger.finish_run(
        "night-0316",
        status="failed",
        summary={"outcomes": {}},
        error="the FHIR server is unavailable",
        finished_at=started + timedelta(seconds=4),
    )
    later = started + timedelta(hours=10)
    ledger.create_run(
        run_id="replay-0301",
        business_date=date(2024, 3, 1),
        trigger="manual",
        config={},
        dry_run=False,
        started_at=later,
    )
    ledger.finish_run(
        "replay-0301",
        status="succeeded",
        summary={"outcomes": {"updated": 4}, "failure_ratio": 0.0, "duration_s": 3.0},
        finished_at=later + timedelta(seconds=3),
    )
    site.login("victor")
    page = site.client.get("/").text
    last = page.split('id="last-title"', 1)[1].split("</section>", 1)[0]
    assert "</span>Failed</p>" in last
    assert "2024-03-16" in last
    assert "No alerts firing" not in page
    assert "the FHIR server is unavailable" in page


def test_a_run_already_retried_points_at_its_retry_instead_of_offering_it_again(
    site: Site,
) -> None:
    """The fixture night has 3 failed rows: an operator is offered the retry; once a retry run
    exists, the page names it (the newest retry shows what is still failed) and the button is
    gone, so the same rows are not retried twice from a page that no longer tells the truth."""
    site.login("olga")
    assert "Retry failed rows (3)" in site.client.get(f"/runs/{RUN_ID}").text
    ledger = site.ctx.ledger
    started = datetime(2024, 3, 16, 1, 0, tzinfo=UTC)
    ledger.create_run(
        run_id="retry-0315",
        business_date=date(2024, 3, 15),
        trigger="retry",
        config={},
        dry_run=False,
        started_at=started,
        parent_run_id=RUN_ID,
    )
    ledger.finish_run(
        "retry-0315",
        status="succeeded",
        summary={"outcomes": {}},
        finished_at=started + timedelta(seconds=3),
    )
    page = site.client.get(f"/runs/{RUN_ID}").text
    assert "Retry failed rows" not in page
    assert "retried by" in page
    assert '<a href="/runs/retry-0315">retry-0315</a> (succeeded)' in page
