"""Catch-up (delta) sync: which rows of the look-back window a run takes on besides its own date.

A row edited after the 23:00 run still carries that day's date, so "date = today" never sees it
again. In `sync_mode=catch-up` (the default) the run for date D also takes every row dated in
the window `[D - catch_up_days, D)` whose exact content (keyed `fingerprint`) no non-dry run has
settled yet — never recorded, recorded only as `failed`/`conflict`/`patient_not_found`, or
edited since. Settled rows
cost nothing: they are not even planned, so no FHIR request and no new ledger row. An invalid row
of a past day is therefore reported once (by the run that first saw it), and again only when
someone edits it.

The window never reaches back before the ledger's *epoch* (the earliest business date any
non-dry run had): a first run on a fresh ledger does not sweep up the sheet's history.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from phonesync.ledger import history
from phonesync.ledger.store import Ledger
from phonesync.outcomes import Rejected
from phonesync.settings import Settings

Settled = Callable[[Collection[str]], set[str]]


@dataclass(frozen=True)
class CatchUp:
    """The look-back window `[start, end)` and the ledger's answer to "already settled?"."""

    start: date
    end: date
    settled: Settled

    def covers(self, moment: datetime | Rejected) -> bool:
        """A readable date inside the window (the business date itself is not catch-up)."""
        return isinstance(moment, datetime) and self.start <= moment.date() < self.end


def window_start(business_date: date, days: int, epoch: date | None) -> date:
    """The first date catch-up looks at: `days` back, but never before the ledger's epoch."""
    first_run = min(epoch or business_date, business_date)
    return max(business_date - timedelta(days=days), first_run)


def catch_up_for(settings: Settings, ledger: Ledger, business_date: date) -> CatchUp | None:
    """The run's catch-up scope, or None (`sync_mode=daily`, or nothing before the epoch)."""
    if settings.sync_mode != "catch-up":
        return None
    start = window_start(business_date, settings.catch_up_days, history.epoch(ledger.engine))
    if start >= business_date:
        return None
    engine = ledger.engine
    return CatchUp(start, business_date, lambda fps: history.settled_fingerprints(engine, fps))
