"""`/_sandbox/requests` → `requests.per_second`: answers per whole second since the first one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from phonesync.sandbox.fhir_server import FhirProfile, PatientStore, create_fhir_app
from phonesync.sandbox.fhir_store import RequestRecord
from phonesync.sandbox.request_log import per_second
from phonesync.sandbox.threaded import ThreadedServer

from .fhir_client import KEY
from .manual_clock import Clock


def record(at: float, status: int = 200) -> RequestRecord:
    return RequestRecord("GET", "/Patient/P1", {}, status, b"", at)


def test_empty_log_has_an_empty_series() -> None:
    assert per_second([]) == {"first_at": None, "accepted": [], "refused_429": []}


def test_series_counts_whole_seconds_from_the_first_answer() -> None:
    """Index i holds the answers in [i, i + 1) s after the first; empty seconds are 0; every
    status but 429 (a 503, a reset = 0) is accepted; records out of order count the same."""
    records = [
        record(50.25),
        record(50.75, 429),
        record(51.125),  # 0.875 s after the first: still second 0
        record(51.25, 503),  # exactly 1 s after: second 1
        record(54.25, 0),
        record(51.5, 429),
        record(54.5),
    ]
    assert per_second(records) == {
        "first_at": 50.25,
        "accepted": [2, 1, 0, 0, 2],
        "refused_429": [1, 1, 0, 0, 0],
    }


@pytest.fixture
def sandbox() -> Iterator[tuple[str, Clock]]:
    """A sandbox with a hidden limit of 2 req/s on a clock the test moves."""
    clock = Clock()
    store = PatientStore()
    store.add({"resourceType": "Patient", "id": "P001"})
    server = ThreadedServer(create_fhir_app(store, FhirProfile(hidden_limit_rps=2), clock=clock))
    server.start()
    yield server.url, clock
    server.stop()


def test_endpoint_serves_the_series_stamped_by_the_gateway_clock(
    sandbox: tuple[str, Clock],
) -> None:
    """3 requests in the first second (the 3rd is over the limit), none in the next, 1 at +2.5 s;
    the series comes from the time each answer was handed back, on the gateway's clock."""
    url, clock = sandbox
    statuses = []
    for at in (0.0, 0.1, 0.2, 2.5):
        clock.now = 1000.0 + at
        statuses.append(requests.get(url + "/Patient/P001", headers=KEY, timeout=5).status_code)
    assert statuses == [200, 200, 429, 200]
    summary = requests.get(url + "/_sandbox/requests", timeout=5).json()["requests"]
    assert summary["per_second"] == {
        "first_at": 1000.0,
        "accepted": [2, 0, 1],
        "refused_429": [1, 0, 0],
    }
    assert summary["total"] == 4  # the endpoint itself is not in the log
