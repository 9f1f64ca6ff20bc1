"""What the ledger hands back: frozen records with aware UTC datetimes, never clear-text data."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Literal, get_args

from sqlalchemy.engine import RowMapping

from phonesync.outcomes import Outcome

Trigger = Literal["manual", "schedule", "retry", "replay", "demo"]
RunStatus = Literal["running", "succeeded", "completed_with_failures", "failed", "aborted"]

TRIGGERS: frozenset[str] = frozenset(get_args(Trigger))
RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
#: Statuses `finish_run` accepts: every status but `running`.
FINAL_STATUSES: frozenset[str] = RUN_STATUSES - {"running"}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as recorded: its effective configuration (no secrets), status and summary."""

    run_id: str
    business_date: date
    trigger: Trigger
    parent_run_id: str | None
    status: RunStatus
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    config: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    host: str
    pid: int

    @classmethod
    def from_mapping(cls, m: RowMapping) -> RunRecord:
        return cls(**{f.name: m[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """The recorded outcome of one sheet row in one run (NIK and phone masked / hashed)."""

    run_id: str
    row: int
    outcome: Outcome
    reason: str | None
    nik_masked: str | None
    phone_masked: str | None
    patient_id: str | None
    version_before: str | None
    version_after: str | None
    attempts: int
    moment: datetime | None
    nik_hash: str | None
    phone_hash: str | None
    fingerprint: str | None
    recorded_at: datetime

    @classmethod
    def from_mapping(cls, m: RowMapping) -> ResultRecord:
        values = {f.name: m[f.name] for f in fields(cls)}
        values["outcome"] = Outcome(values["outcome"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Applied:
    """The newest update applied to FHIR for one NIK (by keyed hash)."""

    nik_hash: str
    phone_hash: str
    moment: datetime
    business_date: date
    run_id: str
    row: int
    patient_id: str | None
    applied_at: datetime

    @classmethod
    def from_mapping(cls, m: RowMapping) -> Applied:
        return cls(**{f.name: m[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class LockRecord:
    """Who holds the run lock of a business date, and since when."""

    business_date: date
    run_id: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime

    @classmethod
    def from_mapping(cls, m: RowMapping) -> LockRecord:
        return cls(**{f.name: m[f.name] for f in fields(cls)})
