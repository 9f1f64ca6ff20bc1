"""Alembic migrations of the ledger; run by `phonesync.ledger.migrate`, no alembic.ini needed."""
