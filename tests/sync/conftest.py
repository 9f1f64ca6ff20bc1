"""Fixtures for end-to-end runs: synthetic data, both sandboxes on loopback, a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sync.nights import DAY

from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate


@pytest.fixture(scope="session")
def synth_small() -> SandboxData:
    """1,200 in-scope rows of every messy kind, built once for the session."""
    return generate(seed=3, patients=1300, rows=1200, business_date=DAY)


@pytest.fixture
def sandbox(tmp_path: Path, synth_small: SandboxData) -> Iterator[LocalSandbox]:
    """Both sandboxes seeded with the small synthetic night, SQLite ledger in tmp_path."""
    with LocalSandbox(synth_small.patients, synth_small.values, tmp_path) as sb:
        yield sb
