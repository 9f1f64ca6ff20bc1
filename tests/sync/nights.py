"""Helpers for end-to-end runs through the real collaborators, in this process."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.source import open_source
from phonesync.sync import RunOutcome, RunRequest, run_sync

DAY = date(2024, 3, 15)


def run_night(
    sb: LocalSandbox,
    day: date = DAY,
    *,
    dry_run: bool = False,
    retry_of: str | None = None,
    trigger: str = "manual",
) -> RunOutcome:
    """One `phonesync run` through the real collaborators, in this process."""
    ledger = Ledger.open(sb.settings.database_url)
    try:
        request = RunRequest(business_date=day, trigger=trigger, dry_run=dry_run, retry_of=retry_of)
        return asyncio.run(
            run_sync(sb.settings, ledger, open_source(sb.settings), request, open_fhir)
        )
    finally:
        ledger.close()


def results_by_row(sb: LocalSandbox, run_id: str) -> dict[int, Any]:
    ledger = Ledger.open(sb.settings.database_url)
    try:
        return {r.row: r for r in ledger.results(run_id)}
    finally:
        ledger.close()


def written_yet_unfinished(
    first: dict[int, Any], second: dict[int, Any], expected: dict[int, str]
) -> dict[int, str]:
    """Rows a stopped run did not record `updated` although their write had landed.

    The re-run (`second`) read those records and found the number already there
    (`UNCHANGED_ON_RECORD`) where the data was built to need an update. Returns each such row's
    reason in the stopped run (`first`).
    """
    from phonesync.fhir.updater import UNCHANGED_ON_RECORD

    return {
        row: str(first[row].reason)
        for row, record in second.items()
        if expected.get(row) == "updated"
        and first[row].outcome != "updated"
        and record.outcome == "unchanged"
        and record.reason == UNCHANGED_ON_RECORD
    }
