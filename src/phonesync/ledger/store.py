"""The `Ledger`: runs, per-row outcomes, what was applied to FHIR, and the per-date run lock.

    ledger = Ledger.open(settings.database_url)   # migrates to head (refuses a newer database)
    ledger.acquire_lock(date, run_id, owner, stale_after_s=300, now=now)
    ledger.create_run(run_id=run_id, business_date=date, trigger="manual", config=..., ...)
    ledger.record_results(run_id, batch)          # every few hundred rows: a checkpoint
    ledger.finish_run(run_id, status="succeeded", summary=..., finished_at=...)
    ledger.release_lock(date, run_id); ledger.close()

Only masked text and keyed hashes ever reach the ledger: `LedgerRow` has no field for a clear-text
NIK or phone, and refuses values that are not masked or not a keyed hash.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from phonesync.errors import ConfigError, LedgerUnavailable
from phonesync.ledger import bulk, hash_key, history, locks, patient_ids, runs, schema
from phonesync.ledger.bulk import APPLIED_OUTCOMES, UPSERT_INSERTS
from phonesync.ledger.engine import (
    make_engine,
    read_transaction,
    relative_sqlite_problem,
    sqlite_file,
    unreachable_error,
    write_transaction,
)
from phonesync.ledger.migrate import upgrade
from phonesync.ledger.records import Applied, LockRecord, ResultRecord, RunRecord
from phonesync.ledger.schema import applied, row_results
from phonesync.masking import redact
from phonesync.outcomes import Outcome

log = logging.getLogger(__name__)

# Bound parameters per IN (...) query: below SQLite's old limit of 999.
_IN_CHUNK = 900
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_HEX_FINGERPRINT = re.compile(r"[0-9a-f]{16,128}")
_DIGIT_RUN = re.compile(r"\d{7,}")  # no masked NIK or phone keeps 7 digits in a row


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: `20240315T160012Z-3f9a1c` (UTC start time + random suffix)."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def default_owner() -> str:
    """`host:pid` of this process, as recorded on the run lock."""
    return locks.owner_here(os.getpid())


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRow:
    """One row's outcome as the ledger stores it: NIK and phone only masked and keyed-hashed.

    `nik_hash`/`phone_hash` come from `masking.keyed_hash` (64 hex digits), `nik_masked`/
    `phone_masked` from `masking.mask_nik`/`mask_phone`, `fingerprint` a hex digest of the row's
    content ("" = none). Rows ending `updated`/`unchanged` must carry `nik_hash`, `phone_hash`
    and `moment`.
    """

    row: int
    outcome: Outcome
    reason: str | None = None
    nik_hash: str | None = None
    nik_masked: str | None = None
    phone_hash: str | None = None
    phone_masked: str | None = None
    moment: datetime | None = None
    patient_id: str | None = None
    version_before: str | None = None
    version_after: str | None = None
    attempts: int = 0
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        # Messages name the field and row, never the value: it may be the clear text we refuse.
        for name in ("nik_masked", "phone_masked"):
            value = getattr(self, name)
            if value and ("*" not in value or _DIGIT_RUN.search(value)):
                raise ValueError(f"row {self.row}: {name} is not masked (use phonesync.masking)")
        for name in ("nik_hash", "phone_hash"):
            value = getattr(self, name)
            if value is not None and not _HEX_HASH.fullmatch(value):
                raise ValueError(f"row {self.row}: {name} is not a keyed hash (64 hex digits)")
        if self.fingerprint and not _HEX_FINGERPRINT.fullmatch(self.fingerprint):
            raise ValueError(f"row {self.row}: fingerprint is not a hex digest")
        if not isinstance(self.outcome, Outcome):
            raise TypeError(f"row {self.row}: outcome must be an Outcome")
        if self.moment is not None and self.moment.utcoffset() is None:
            raise ValueError(f"row {self.row}: moment must be timezone-aware")
        needed = (self.nik_hash, self.phone_hash, self.moment)
        if self.outcome in APPLIED_OUTCOMES and None in needed:
            raise ValueError(f"row {self.row}: {self.outcome} needs nik_hash, phone_hash, moment")


class Ledger:
    """The ledger database. Thread-safe; open one per process with `Ledger.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, create: bool = True) -> Ledger:
        """Open (and by default migrate to head) the ledger at a SQLAlchemy URL.

        `sqlite:////abs/path/file.sqlite3` (parent directory created; a relative path is a
        `ConfigError`), `sqlite://` (in memory: tests) or `postgresql+psycopg://…`.
        Raises `LedgerVersionError` (a `ConfigError`) for a database migrated by a newer
        phonesync, or — with `migrate=False` — for one that is not at head yet. With
        `create=False` (the read-only commands `runs` and `report`) a SQLite file that does not
        exist is `LedgerUnavailable` (exit 6) naming the URL, instead of a new, empty ledger.
        """
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            # Not echoing the URL: it may carry a password.
            raise ConfigError("PHONESYNC_DATABASE_URL is not a valid database URL") from None
        backend = parsed.get_backend_name()
        if backend not in UPSERT_INSERTS:
            raise ConfigError(
                f"unsupported ledger database {backend!r}: use sqlite:///… or postgresql+psycopg://…"
            )
        problem = relative_sqlite_problem(url)
        if problem is not None:
            raise ConfigError(f"PHONESYNC_DATABASE_URL: {problem}")
        file = sqlite_file(url)
        if not create and file is not None and not file.is_file():
            shown = parsed.render_as_string(hide_password=True)
            raise LedgerUnavailable(
                f"the ledger database does not exist: {shown} (no file at {file.resolve()}; check "
                "PHONESYNC_DATABASE_URL — this command only reads, it creates no ledger)"
            )
        try:
            engine = make_engine(url, create=create)
        except OSError as exc:  # the SQLite file's directory cannot be made (a file in its way)
            shown = parsed.render_as_string(hide_password=True)
            raise LedgerUnavailable(
                f"the ledger database cannot be created: {shown} ({exc.strerror or exc}; check "
                "PHONESYNC_DATABASE_URL)"
            ) from None
        try:
            upgrade(engine, migrate=migrate)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            # one line; the driver's text names host and database, never the password
            raise unreachable_error(exc) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- hash key -------------------------------------------------------------------------------
    def check_hash_key(self, key: bytes, *, now: datetime | None = None) -> None:
        """Refuse (`HashKeyMismatch`, a `ConfigError`) a PHONESYNC_HASH_KEY other than the one
        this ledger was written with; the first call on a ledger records the key's check value.

        Every sync calls this before reading or writing anything that is keyed by NIK hash.
        """
        hash_key.verify(self._engine, key, by=default_owner(), now=now)

    # --- run lock -------------------------------------------------------------------------------
    def acquire_lock(
        self,
        business_date: date,
        run_id: str,
        owner: str,
        *,
        stale_after_s: float,
        now: datetime,
    ) -> None:
        """Take the run lock, or raise `RunInProgress` naming the holder's run id and date.

        One run at a time per ledger, whatever its business date (`locks.ANY_DATE`: a replay of
        an older date must not plan while a newer night is still recording). Re-acquiring a
        lock this `run_id` already holds refreshes it.
        """
        del business_date  # the holder's date is its run's (`runs`), not the lock's key
        locks.acquire(
            self._engine, locks.ANY_DATE, run_id, owner, stale_after_s=stale_after_s, now=now
        )

    def heartbeat(self, business_date: date, run_id: str, now: datetime) -> None:
        """Keep the lock fresh; raises `RunInProgress` if it was taken over (stop the run)."""
        del business_date
        locks.heartbeat(self._engine, locks.ANY_DATE, run_id, now)

    def release_lock(self, business_date: date, run_id: str) -> None:
        """Give the lock back (a no-op unless `run_id` holds it)."""
        del business_date
        locks.release(self._engine, locks.ANY_DATE, run_id)

    def lock_for(self, business_date: date | None = None) -> LockRecord | None:
        """Who holds the run lock, if anyone (for any date: there is one lock per ledger)."""
        del business_date
        return locks.lock_for(self._engine, locks.ANY_DATE)

    # --- runs -----------------------------------------------------------------------------------
    def create_run(
        self,
        *,
        run_id: str,
        business_date: date,
        trigger: str,
        config: Mapping[str, Any],
        dry_run: bool,
        parent_run_id: str | None = None,
        started_at: datetime,
    ) -> None:
        """Record the start of a run (status `running`) with its effective config, no secrets.

        `trigger` is one of `Trigger`; a `retry` needs `parent_run_id`. The first run of a
        ledger logs a WARNING naming the ledger (password hidden): a ledger with no earlier run
        on a machine where phonesync ran before is the wrong one, and would not know what was
        applied (newer-wins).
        """
        first = runs.create(
            self._engine,
            run_id=run_id,
            business_date=business_date,
            trigger=trigger,
            config=config,
            dry_run=dry_run,
            parent_run_id=parent_run_id,
            started_at=started_at,
        )
        if first:
            log.warning(
                "the ledger at %s has no earlier runs: if phonesync ran on this machine "
                "before, PHONESYNC_DATABASE_URL points at the wrong ledger",
                self.location,
                extra={"run_id": run_id},
            )

    @property
    def location(self) -> str:
        """Where this ledger is, as it may be shown: the URL without its password."""
        return redact(self._engine.url.render_as_string(hide_password=True))

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        summary: Mapping[str, Any],
        finished_at: datetime,
        error: str | None = None,
    ) -> None:
        """Record the end of a run (`status`: a `RunStatus` but `running`); `error` gets masked."""
        runs.finish(
            self._engine,
            run_id,
            status=status,
            summary=summary,
            finished_at=finished_at,
            error=error,
        )

    def get_run(self, run_id_or_latest: str, *, include_dry_run: bool = True) -> RunRecord | None:
        """A run by id, or `latest`: the most recently started one (optionally not a dry run)."""
        if run_id_or_latest == "latest":
            query = runs.newest_first(include_dry_run=include_dry_run)
        else:
            query = sa.select(schema.runs).where(schema.runs.c.run_id == run_id_or_latest)
        found = runs.fetch(self._engine, query.limit(1))
        return found[0] if found else None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recently started runs, newest first."""
        return runs.fetch(self._engine, runs.newest_first().limit(limit))

    def latest_night_date(self) -> date | None:
        """The newest business date of any run that is not a dry run (None: no run yet)."""
        query = sa.select(sa.func.max(schema.runs.c.business_date)).where(
            schema.runs.c.dry_run.is_(False)
        )
        with read_transaction(self._engine) as conn:
            found = conn.execute(query).scalar_one_or_none()
        return found if isinstance(found, date) or found is None else date.fromisoformat(found)

    def latest_run_for(
        self, business_date: date, *, include_dry_run: bool = True
    ) -> RunRecord | None:
        """The most recently started run for a business date."""
        query = runs.newest_first(include_dry_run=include_dry_run)
        found = runs.fetch(
            self._engine, query.where(schema.runs.c.business_date == business_date).limit(1)
        )
        return found[0] if found else None

    def mark_abandoned_runs(
        self, stale_after_s: float, now: datetime, *, unlocked_after_s: float = 86_400.0
    ) -> list[str]:
        """Mark `aborted` the runs a dead process left `running`; returns their ids.

        Abandoned: the run's lock had no heartbeat for `stale_after_s` (its lock is removed), or
        the run holds no lock (dry runs take none) and started more than `unlocked_after_s` ago.
        A run whose stale lock `acquire_lock` takes over is aborted there and then.
        """
        return runs.mark_abandoned(
            self._engine, stale_after_s=stale_after_s, unlocked_after_s=unlocked_after_s, now=now
        )

    # --- row results ----------------------------------------------------------------------------
    def record_results(
        self,
        run_id: str,
        rows: Sequence[LedgerRow],
        *,
        apply: bool = True,
        recorded_at: datetime | None = None,
    ) -> None:
        """Record a batch of row outcomes in one transaction (a checkpoint of the run).

        `updated`/`unchanged` rows also move `applied` forward for their NIK — never backwards:
        an older moment than the one applied leaves it as it is. Dry runs (as recorded by
        `create_run`) never touch `applied`, nor does `apply=False`. A row already recorded for
        this run raises `ValueError` and nothing of the batch is kept.
        """
        if not rows:
            return
        at = recorded_at or datetime.now(UTC)
        try:
            with write_transaction(self._engine) as conn:
                business_date, dry_run = self._run_date(conn, run_id)
                bulk.insert_results(conn, run_id, rows, at)
                if apply and not dry_run:
                    bulk.move_applied(conn, run_id, business_date, rows, at)
        except IntegrityError:
            raise ValueError(
                f"run {run_id}: some of these rows are already recorded (one outcome per row); "
                "skip the rows in recorded_rows()"
            ) from None

    def recorded_rows(self, run_id: str) -> set[int]:
        """Sheet rows that already have an outcome in this run (to resume after a crash)."""
        query = sa.select(row_results.c.row).where(row_results.c.run_id == run_id)
        with read_transaction(self._engine) as conn:
            return set(conn.execute(query).scalars())

    def results(
        self,
        run_id: str,
        *,
        outcomes: Iterable[Outcome | str] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[ResultRecord]:
        """A run's recorded rows in sheet order, optionally only some outcomes, paged."""
        query = sa.select(row_results).where(row_results.c.run_id == run_id)
        if outcomes is not None:
            query = query.where(row_results.c.outcome.in_([Outcome(o).value for o in outcomes]))
        query = query.order_by(row_results.c.row).offset(offset).limit(limit)
        with read_transaction(self._engine) as conn:
            return [ResultRecord.from_mapping(m) for m in conn.execute(query).mappings()]

    def repeated_not_found(self, run_id: str) -> int:
        """Rows of the run not found again after an earlier run (`history.repeated_not_found`)."""
        return history.repeated_not_found(self._engine, run_id)

    def outcome_counts(self, run_id: str) -> dict[str, int]:
        """Rows per outcome for a run; every outcome present, zeros included."""
        query = (
            sa.select(row_results.c.outcome, sa.func.count())
            .where(row_results.c.run_id == run_id)
            .group_by(row_results.c.outcome)
        )
        counts = dict.fromkeys((o.value for o in Outcome), 0)
        with read_transaction(self._engine) as conn:
            for outcome, count in conn.execute(query):
                counts[outcome] = count
        return counts

    def patient_ids_for(self, nik_hashes: Iterable[str]) -> dict[str, str]:
        """Cached IHS patient ids by NIK hash (`fhir/patient_cache.py`); absent = not known."""
        return patient_ids.lookup(self._engine, nik_hashes)

    def update_patient_ids(
        self, found: Mapping[str, str], gone: Iterable[str], *, seen_at: datetime
    ) -> None:
        """Remember NIK hash → patient id for `found`, forget the NIK hashes in `gone`."""
        patient_ids.update(self._engine, found, gone, seen_at)

    def applied_for(self, nik_hashes: Iterable[str]) -> dict[str, Applied]:
        """What was last applied to FHIR for each of these NIK hashes (absent: never)."""
        found: dict[str, Applied] = {}
        with read_transaction(self._engine) as conn:
            for chunk in _chunks(list(dict.fromkeys(nik_hashes)), _IN_CHUNK):
                query = sa.select(applied).where(applied.c.nik_hash.in_(chunk))
                for m in conn.execute(query).mappings():
                    found[m["nik_hash"]] = Applied.from_mapping(m)
        return found

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _run_date(conn: Connection, run_id: str) -> tuple[date, bool]:
        query = sa.select(schema.runs.c.business_date, schema.runs.c.dry_run).where(
            schema.runs.c.run_id == run_id
        )
        row = conn.execute(query).first()
        if row is None:
            raise KeyError(f"no run {run_id!r} in the ledger (create_run first)")
        return row[0], bool(row[1])


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
