"""`phonesync doctor`: a pre-flight that checks everything a night needs, one verdict per check.

    env file        which .env file the settings were read from (absolute path), or none
    configuration   every setting a run needs is there; the schedule is a valid cron
    sheet           the service account gets a token, may read the sheet, the header maps
    fhir            the server answers `metadata` with an R4 CapabilityStatement,
                    accepts our credentials, and a NIK search returns a searchset Bundle
    clock           our clock against the FHIR server's `Date` header (tokens and JWTs
                    are refused when the skew is large)
    database        the ledger answers; its migrations are at (or can be brought to) head;
                    a SQLite ledger file that does not exist yet is a warning when the
                    first run can create it, a failure when it cannot

Doctor writes nothing: no run, no migration, no FHIR write, and no ledger file or directory
(a SQLite file is opened `mode=rw`, which never creates one). Retries are cut short so that an
unreachable service fails in seconds, not minutes. Exit code 1 when any check fails.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from phonesync.errors import PhonesyncError
from phonesync.fhir.http import PROBE_VALUE, FhirHttp
from phonesync.fhir.pacing import FixedLimiter
from phonesync.ledger import hash_key
from phonesync.ledger.engine import make_engine, read_transaction, sqlite_file
from phonesync.ledger.locks import holder_is_dead
from phonesync.ledger.migrate import alembic_config, current_revisions
from phonesync.ledger.schema import run_locks, runs
from phonesync.masking import redact
from phonesync.scheduler import cron_trigger
from phonesync.settings import Settings
from phonesync.source import open_source

OK, WARN, FAIL = "ok", "warn", "FAIL"
SKEW_WARN_S = 30.0
SKEW_FAIL_S = 300.0  # OAuth servers and Google's token endpoint refuse beyond a few minutes


@dataclass(frozen=True)
class Verdict:
    check: str
    result: str  # ok | warn | FAIL
    detail: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


def check_env_file(settings: Settings) -> Verdict:
    """Which .env file was read (absolute path, and what chose it), or that none was."""
    chosen = settings.env_file
    if chosen.path is None:
        return Verdict("env file", OK, f"none read ({chosen.chosen_by})")
    return Verdict("env file", OK, f"{chosen.path} (from {chosen.chosen_by})")


def check_configuration(settings: Settings) -> Verdict:
    try:
        settings.require_for_run()
        cron_trigger(settings)
    except PhonesyncError as exc:
        return Verdict("configuration", FAIL, str(exc))
    return Verdict("configuration", OK, f"source={settings.source}, auth={settings.fhir_auth}")


def check_sheet(settings: Settings) -> Verdict:
    """Read up to the first data row: token, permission and header mapping are all exercised."""
    try:
        source = open_source(settings)
        rows = source.read()
        try:
            first = next(iter(rows), None)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
    except PhonesyncError as exc:
        return Verdict("sheet", FAIL, redact(str(exc)))
    account = getattr(source, "account", None)
    who = f" as {account}" if account else ""
    if first is None:
        return Verdict("sheet", WARN, f"header maps{who}, but the sheet has no data rows")
    return Verdict("sheet", OK, f"readable{who}; header maps to NIK, phone and date columns")


async def check_fhir(settings: Settings, now: Callable[[], datetime]) -> list[Verdict]:
    """CapabilityStatement, credentials + search, and the clock against the server's Date."""
    quick = settings.model_copy(update={"max_attempts": 2, "retry_total_s": 10.0})
    limiter = FixedLimiter(1, None, clock=time.monotonic, sleeper=asyncio.sleep)
    try:
        async with FhirHttp(quick, limiter=limiter) as http:
            meta = await http.request("GET", "metadata", label="GET metadata")
            probe = {"identifier": f"{settings.nik_system}|{PROBE_VALUE}"}
            found = await http.request("GET", "Patient", params=probe, label="GET search")
    except PhonesyncError as exc:
        return [Verdict("fhir", FAIL, redact(str(exc)))]
    return [_capability(meta.json), _search(found.json), _skew(meta.headers, now())]


def _capability(body: Any) -> Verdict:
    if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
        return Verdict("fhir metadata", FAIL, "GET metadata did not return a CapabilityStatement")
    version = str(body.get("fhirVersion", "?"))
    result = OK if version.startswith("4.0") else WARN
    return Verdict("fhir metadata", result, f"CapabilityStatement, FHIR {version}")


def _search(body: Any) -> Verdict:
    if not isinstance(body, dict) or body.get("type") != "searchset":
        return Verdict("fhir search", FAIL, "a NIK search did not return a searchset Bundle")
    return Verdict("fhir search", OK, "credentials accepted; NIK search answers a searchset")


def _skew(headers: Any, now: datetime) -> Verdict:
    raw = headers.get("Date") if headers is not None else None
    try:
        server = parsedate_to_datetime(raw) if raw else None
    except (TypeError, ValueError):
        server = None
    if server is None:
        return Verdict("clock", WARN, "the FHIR server sent no usable Date header")
    skew = (now - server).total_seconds()
    result = FAIL if abs(skew) > SKEW_FAIL_S else WARN if abs(skew) > SKEW_WARN_S else OK
    return Verdict("clock", result, f"{skew:+.0f} s against the FHIR server's clock")


def check_database(settings: Settings) -> Verdict:
    from alembic.script import ScriptDirectory

    try:
        engine = _ledger_engine(settings.database_url)
    except (sa.exc.ArgumentError, PhonesyncError):
        return Verdict("database", FAIL, "PHONESYNC_DATABASE_URL is not a valid database URL")
    if isinstance(engine, Verdict):
        return engine
    script = ScriptDirectory.from_config(alembic_config())
    head = set(script.get_heads())
    key_matches: bool | None = None
    try:
        with read_transaction(engine) as conn:
            current = current_revisions(conn)
        if current == head and settings.hash_key is not None:
            key = settings.hash_key.get_secret_value().encode()
            key_matches = hash_key.recorded_match(engine, key)
    except sa.exc.SQLAlchemyError as exc:
        return Verdict("database", FAIL, f"cannot connect ({type(exc).__name__})")
    finally:
        engine.dispose()
    known = {rev.revision for rev in script.walk_revisions()}
    if current - known:
        return Verdict("database", FAIL, "migrated by a newer phonesync; upgrade phonesync")
    if current != head:
        shown = ", ".join(sorted(current)) or "empty"
        return Verdict("database", WARN, f"at {shown}; the next run migrates it to head")
    if key_matches is False:  # what every sync would refuse with exit 2: say it before the night
        return Verdict(
            "database",
            FAIL,
            "PHONESYNC_HASH_KEY differs from the key this ledger was written with: every run "
            "would stop (exit 2). Set the original key again, or point PHONESYNC_DATABASE_URL at "
            "a new ledger (docs/ledger.md: rotating the hash key)",
        )
    detail = f"reachable, migrations at head ({', '.join(sorted(head))})"
    if key_matches:
        detail += "; PHONESYNC_HASH_KEY is the key it was written with"
    return Verdict("database", OK, detail)


def _ledger_engine(url: str) -> sa.Engine | Verdict:
    """An engine on the ledger that creates and changes nothing; or, for a SQLite file that is
    not there (or not a file), the verdict on it."""
    engine = make_engine(url, create=False)  # refuses a URL no run could use; connects nowhere
    path = sqlite_file(url)
    if path is None:  # PostgreSQL; SQLite in memory or as a `file:` URI
        return engine
    engine.dispose()
    try:
        if not path.exists():
            return _missing_sqlite_file(path)
    except OSError as exc:  # a directory on the way that this user may not search
        problem = exc.strerror or type(exc).__name__
        return Verdict("database", FAIL, f"cannot look for the ledger {path} ({problem})")
    if not path.is_file():
        return Verdict("database", FAIL, f"the ledger {path} is not a file")
    return _read_only_engine(sa.make_url(url), path)


def _read_only_engine(url: sa.URL, path: Path) -> sa.Engine:
    """An engine on the SQLite file `path` that neither creates nor changes it.

    `mode=rw` opens the file, never creates it (one removed since it was seen is "cannot
    connect", not a new empty ledger). Not `make_engine`: it would switch a file that is not in
    WAL mode yet (an empty one) to WAL, a write. Not `mode=ro`: a read-only connection cannot
    remove the `-wal`/`-shm` files it opened, and would leave them behind.
    """
    query = {**url.query, "mode": "rw", "uri": "true"}
    rw = url.set(database=path.absolute().as_uri(), query=query)
    return sa.create_engine(rw, poolclass=NullPool)


def _missing_sqlite_file(path: Path) -> Verdict:
    """No ledger file yet: where the first run creates it (warn), or why it cannot (FAIL)."""
    path = path.absolute()
    existing = path.parent  # the nearest directory that exists: the first run creates the rest
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    cannot = f"no ledger file at {path}, and the first run cannot create it"
    if not existing.is_dir():
        return Verdict("database", FAIL, f"{cannot}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        return Verdict("database", FAIL, f"{cannot}: {existing} is not writable by this user")
    made = "" if existing == path.parent else f" (and its directory {path.parent})"
    return Verdict(
        "database", WARN, f"no ledger file yet; the first run creates it at {path}{made}"
    )


def check_runs(settings: Settings, now: datetime) -> Verdict | None:
    """A run recorded as `running` whose process is gone (`kill -9`, a lost machine): it looks
    in progress in `phonesync runs` until the next run takes over its lock. None: no ledger."""
    try:
        engine = _ledger_engine(settings.database_url)
    except (sa.exc.ArgumentError, PhonesyncError):
        return None
    if isinstance(engine, Verdict):
        return None
    running = sa.select(runs.c.run_id, runs.c.business_date).where(runs.c.status == "running")
    held = sa.select(run_locks.c.run_id, run_locks.c.owner, run_locks.c.heartbeat_at)
    try:
        with read_transaction(engine) as conn:
            going = list(conn.execute(running))
            lock_of = {r.run_id: r for r in conn.execute(held)}
    except sa.exc.SQLAlchemyError:
        return None  # the database check says why
    finally:
        engine.dispose()
    gone = [
        r
        for r in going
        if (lock := lock_of.get(r.run_id)) is None
        or holder_is_dead(lock.owner)
        or (now - lock.heartbeat_at).total_seconds() > settings.lock_stale_s
    ]
    if gone:
        shown = ", ".join(f"{r.run_id} ({r.business_date})" for r in gone)
        return Verdict(
            "runs",
            WARN,
            f"recorded as running, but the process is gone (killed, or its machine lost): "
            f"{shown}. The next run takes over the lock and marks it aborted; its rows without "
            "an outcome are processed again",
        )
    if going:
        return Verdict("runs", OK, f"in progress: {', '.join(r.run_id for r in going)}")
    return Verdict("runs", OK, "none in progress")


async def run_doctor(
    settings: Settings, *, now: Callable[[], datetime] = _utc_now
) -> list[Verdict]:
    """Every check, in order; later checks still run when an earlier one fails."""
    verdicts = [check_env_file(settings), check_configuration(settings)]
    verdicts.append(await asyncio.to_thread(check_sheet, settings))
    if settings.fhir_base_url:
        verdicts += await check_fhir(settings, now)
    verdicts.append(await asyncio.to_thread(check_database, settings))
    if verdicts[-1].result != FAIL:
        runs_verdict = await asyncio.to_thread(check_runs, settings, now())
        if runs_verdict is not None:
            verdicts.append(runs_verdict)
    return verdicts


def render(verdicts: list[Verdict]) -> str:
    width = max(len(v.check) for v in verdicts)
    return "".join(f"[{v.result:^4}] {v.check:<{width}}  {v.detail}\n" for v in verdicts)


def exit_code(verdicts: list[Verdict]) -> int:
    return 1 if any(v.result == FAIL for v in verdicts) else 0
