"""Alembic environment: runs on the connection `phonesync.ledger.migrate` hands over.

There is no alembic.ini and no URL here on purpose: `Ledger.open()` opens the connection (with its
SQLite pragmas), takes the migration lock and calls `alembic.command.upgrade` with the connection in
`config.attributes["connection"]`, all inside one transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from phonesync.ledger.schema import metadata


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "the ledger migrations run through phonesync.ledger.migrate (Ledger.open), "
            "not the alembic command line"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
