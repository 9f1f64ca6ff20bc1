"""The dashboard's audit log: who did what, when, and with what result.

Every value passes `masking.redact` on the way in, so a NIK or phone number typed somewhere can
never be kept here in clear. `job_id` ties an action to the background job it started; the run id
is filled in once the job reports it (`link_run`), so a run page can say who triggered it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import audit_log
from phonesync.masking import redact

_LIMITS = {"actor": 255, "role": 16, "action": 64, "target": 255, "result": 32}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry as stored."""

    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    target: str | None
    result: str
    detail: str | None
    job_id: str | None
    run_id: str | None

    @classmethod
    def from_mapping(cls, m: RowMapping) -> AuditRecord:
        return cls(**{f.name: m[f.name] for f in fields(cls)})


def _clean(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    text = redact(value)
    limit = _LIMITS.get(name)
    return text[:limit] if limit else text[:2000]


def record(
    engine: Engine,
    *,
    at: datetime,
    actor: str,
    role: str | None,
    action: str,
    result: str,
    target: str | None = None,
    detail: str | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
) -> None:
    """Append one entry (values redacted and cut to the column sizes)."""
    values = {
        "at": at,
        "actor": _clean("actor", actor) or "?",
        "role": _clean("role", role),
        "action": _clean("action", action),
        "target": _clean("target", target),
        "result": _clean("result", result),
        "detail": _clean("detail", detail),
        "job_id": job_id,
        "run_id": run_id,
    }
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(audit_log).values(values))


def entries(engine: Engine, *, offset: int = 0, limit: int = 100) -> tuple[list[AuditRecord], int]:
    """The newest entries first, one page of them, and how many there are in all."""
    query = (
        sa.select(audit_log)
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    with read_transaction(engine) as conn:
        found = [AuditRecord.from_mapping(m) for m in conn.execute(query).mappings()]
        total = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
    return found, int(total)


def link_run(engine: Engine, job_id: str, run_id: str) -> None:
    """Record which run a job turned into, on the entries that started it."""
    query = (
        sa.update(audit_log)
        .where(audit_log.c.job_id == job_id, audit_log.c.run_id.is_(None))
        .values(run_id=run_id)
    )
    with write_transaction(engine) as conn:
        conn.execute(query)


def started_by(engine: Engine, run_id: str) -> AuditRecord | None:
    """The entry of the action that started this run, if it was started from the dashboard."""
    query = (
        sa.select(audit_log)
        .where(audit_log.c.run_id == run_id, audit_log.c.job_id.is_not(None))
        .order_by(audit_log.c.id)
        .limit(1)
    )
    with read_transaction(engine) as conn:
        found = conn.execute(query).mappings().first()
    return AuditRecord.from_mapping(found) if found else None
