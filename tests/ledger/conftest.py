"""The `ledger` fixture: every ledger test runs on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phonesync.ledger import Ledger


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty, not yet migrated ledger database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'ledger' / 'phonesync.sqlite3'}"
    return str(request.getfixturevalue("empty_postgres_url"))


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """An open, migrated ledger."""
    opened = Ledger.open(ledger_url)
    try:
        yield opened
    finally:
        opened.close()
