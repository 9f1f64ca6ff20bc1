"""Fixtures for source tests: a Sheets API stand-in started per test, stopped afterwards."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from sheets_support import SandboxFactory, start_sandbox

from phonesync.sandbox.sheets_server import make_service_account
from phonesync.sandbox.threaded import ThreadedServer


@pytest.fixture(scope="session")
def issued_key() -> tuple[dict[str, str], RSAPublicKey]:
    """One RSA key for the session: generating a 2048-bit key costs ~0.1 s."""
    return make_service_account("http://placeholder/token")


@pytest.fixture
def sheets_sandbox(issued_key: tuple[dict[str, str], RSAPublicKey]) -> Iterator[SandboxFactory]:
    """Start a Sheets stand-in for the given values; every server stops after the test."""
    started: list[ThreadedServer] = []
    yield functools.partial(start_sandbox, started, issued_key)
    for server in started:
        server.stop()
