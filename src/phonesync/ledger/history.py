"""What catch-up asks the ledger: which row contents were already settled, and since when we run.

A row content (its keyed `fingerprint`, see `plan.fingerprint`) is *settled* once a non-dry run
recorded it with a final outcome — anything but `failed`/`conflict` (open for catch-up and
`phonesync retry`) and `patient_not_found` (open for catch-up only: the patient may be registered
later, and a wrong NIK system or server must not settle a whole night). The *epoch* is the
earliest business date this ledger has run: catch-up never reaches back before it, so a first run
on a fresh ledger does not sweep up the sheet's past.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phonesync.ledger.engine import read_transaction
from phonesync.ledger.schema import row_results, runs
from phonesync.outcomes import OPEN_OUTCOMES, Outcome

# Bound parameters per IN (...) query: below SQLite's old limit of 999.
_IN_CHUNK = 900


def settled_fingerprints(engine: Engine, fingerprints: Collection[str]) -> set[str]:
    """The subset of `fingerprints` some non-dry run recorded with a final outcome."""
    wanted = sorted(set(fingerprints))
    open_outcomes = sorted(o.value for o in OPEN_OUTCOMES)
    found: set[str] = set()
    with read_transaction(engine) as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            query = (
                sa.select(row_results.c.fingerprint)
                .distinct()
                .join(runs, runs.c.run_id == row_results.c.run_id)
                .where(row_results.c.fingerprint.in_(chunk))
                .where(row_results.c.outcome.not_in(open_outcomes))
                .where(runs.c.dry_run.is_(False))
            )
            found.update(conn.execute(query).scalars())
    return found


def epoch(engine: Engine) -> date | None:
    """The earliest business date of any non-dry run (None: the ledger has never run)."""
    query = sa.select(sa.func.min(runs.c.business_date)).where(runs.c.dry_run.is_(False))
    with read_transaction(engine) as conn:
        value = conn.execute(query).scalar()
    return value if isinstance(value, date) else None


def repeated_not_found(engine: Engine, run_id: str) -> int:
    """Rows of `run_id` that ended `patient_not_found` again: the same row content had already
    ended so in an earlier non-dry run (catch-up searches those again every night, and they must
    not make a quiet night look like a wrong NIK system; `sync.run_anomalies`)."""
    earlier = (
        sa.select(row_results.c.fingerprint)
        .join(runs, runs.c.run_id == row_results.c.run_id)
        .where(row_results.c.run_id != run_id)
        .where(row_results.c.outcome == Outcome.PATIENT_NOT_FOUND.value)
        .where(runs.c.dry_run.is_(False))
    )
    query = (
        sa.select(sa.func.count())
        .select_from(row_results)
        .where(row_results.c.run_id == run_id)
        .where(row_results.c.outcome == Outcome.PATIENT_NOT_FOUND.value)
        .where(row_results.c.fingerprint.in_(earlier))
    )
    with read_transaction(engine) as conn:
        return int(conn.execute(query).scalar() or 0)
