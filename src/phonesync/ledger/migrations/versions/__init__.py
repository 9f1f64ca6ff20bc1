"""Alembic revisions of the ledger, oldest first (`0001_…`)."""
