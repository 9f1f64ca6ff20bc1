"""Fixtures of the sandbox tests: `start` serves a seeded sandbox FHIR server over loopback.

A test module says what every sandbox starts with by overriding `sandbox_patients`, and which
profile `start()` uses without an argument by overriding `sandbox_profile`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from phonesync.sandbox.fhir_server import FhirProfile, PatientStore, create_fhir_app
from phonesync.sandbox.threaded import ThreadedServer

from .fhir_client import Sandbox, Start


@pytest.fixture
def sandbox_patients() -> list[dict[str, Any]]:
    """The Patients every sandbox of the module is seeded with (none unless overridden)."""
    return []


@pytest.fixture
def sandbox_profile() -> FhirProfile:
    """The profile of `start()` without one (the default profile unless overridden)."""
    return FhirProfile()


@pytest.fixture
def start(sandbox_patients: list[dict[str, Any]], sandbox_profile: FhirProfile) -> Iterator[Start]:
    """Start sandboxes seeded with `sandbox_patients`; all stopped after the test."""
    running: list[tuple[ThreadedServer, Sandbox]] = []

    def _start(
        profile: FhirProfile | None = None, clock: Callable[[], float] = time.monotonic
    ) -> Sandbox:
        store = PatientStore()
        for resource in sandbox_patients:
            store.add(resource)  # stores a copy: every sandbox has Patients of its own
        app = create_fhir_app(store, profile or sandbox_profile, clock=clock)
        server = ThreadedServer(app).start()
        sandbox = Sandbox(store, server.url)
        running.append((server, sandbox))
        return sandbox

    yield _start
    for server, sandbox in running:
        sandbox.http.close()
        server.stop()


@pytest.fixture
def sb(start: Start) -> Sandbox:
    """A sandbox with the module's `sandbox_profile`."""
    return start()
