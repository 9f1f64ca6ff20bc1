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
