"""Alembic migrations, run programmatically: no alembic.ini on the user's side.

`Ledger.open()` calls `upgrade()`: inside one write transaction it takes a migration lock (a
PostgreSQL advisory lock; SQLite's `BEGIN IMMEDIATE`), refuses a database stamped with a revision
this version of phonesync does not know (a newer phonesync migrated it), and upgrades to head.
Two processes opening a fresh database at once therefore migrate it exactly once.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from phonesync.errors import ConfigError
from phonesync.ledger.engine import write_transaction

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant identifying "phonesync ledger migration" among advisory locks.
_PG_MIGRATION_LOCK = 0x70686F6E  # "phon"


class LedgerVersionError(ConfigError):
    """The ledger database is at a revision this phonesync cannot use."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` pointing at the packaged migrations (works from an installed wheel)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this phonesync ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no ledger migrations found")
    return head


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the database is stamped with (empty for a fresh database)."""
    return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine, *, migrate: bool = True) -> None:
    """Bring the ledger to head (or only check it when `migrate` is false)."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config = alembic_config(conn)
        script = ScriptDirectory.from_config(config)
        current = current_revisions(conn)
        known = {rev.revision for rev in script.walk_revisions()}
        unknown = sorted(current - known)
        if unknown:
            raise LedgerVersionError(
                f"the ledger database is at revision {', '.join(unknown)}, which this phonesync "
                f"does not know (it knows up to {script.get_current_head()}): it was migrated by "
                "a newer phonesync; upgrade phonesync or point PHONESYNC_DATABASE_URL elsewhere"
            )
        if current == set(script.get_heads()):
            return
        if not migrate:
            raise LedgerVersionError(
                f"the ledger database is at revision {', '.join(sorted(current)) or '(empty)'}, "
                f"phonesync needs {script.get_current_head()}; open it with migrations enabled"
            )
        command.upgrade(config, "head")
