"""Rows → plan: which rows are in scope of the run, which end early, and what must be applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from phonesync.normalise.nik import Nik


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A valid, winning row that needs the FHIR server. `phone` is E.164 (`+628…`)."""

    row: int
    nik: Nik
    phone: str
    moment: datetime  # aware; when the update was made (date-only cells: midnight in the zone)
    nik_hash: str
    phone_hash: str
