"""Fixtures for scale-out: an empty PostgreSQL ledger and a planned night on the sandboxes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from phonesync.crypto import new_key
from phonesync.ledger.store import Ledger
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.scaleout.coordinator import PlanOutcome, plan_night
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.sync import RunRequest

DAY = date(2024, 3, 15)


@pytest.fixture
def pg_url(empty_postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    return empty_postgres_url


@pytest.fixture(scope="session")
def synth_small() -> SandboxData:
    """300 in-scope rows with every messy kind."""
    return generate(seed=5, patients=400, rows=300, business_date=DAY)


def open_sandbox(
    data: SandboxData, tmp_path: Path, url: str, profile: FhirProfile | None = None, **over: Any
) -> LocalSandbox:
    overrides = {"snapshot_key": new_key(), "sync_mode": "daily"} | over
    return LocalSandbox(
        data.patients,
        data.values,
        tmp_path,
        profile=profile or FhirProfile(),
        database_url=url,
        overrides={k: v for k, v in overrides.items() if k in Settings.model_fields},
    )


@pytest.fixture
def small_night(
    tmp_path: Path, pg_url: str, synth_small: SandboxData
) -> Iterator[tuple[LocalSandbox, Ledger]]:
    """The small night on both sandboxes with a PostgreSQL ledger (not planned yet)."""
    with open_sandbox(synth_small, tmp_path, pg_url) as sb, Ledger.open(pg_url) as ledger:
        yield sb, ledger


def plan(sb: LocalSandbox, ledger: Ledger, workers: int) -> PlanOutcome:
    """`phonesync plan` in this process."""
    source = open_source(sb.settings)
    return asyncio.run(plan_night(sb.settings, ledger, source, RunRequest(DAY), workers))


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the `PHONESYNC_*` environment variables a child process reads."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, tuple):
            value = ",".join(value)
        env[f"PHONESYNC_{name.upper()}"] = str(value)
    return env
