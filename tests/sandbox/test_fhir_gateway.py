"""The sandbox gateway's knobs over loopback: limits, Retry-After styles, outage, faults, caps."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest
import requests

from phonesync.sandbox.fhir_gateway import Latency
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore, create_fhir_app
from phonesync.sandbox.threaded import ThreadedServer

from .fhir_client import KEY
from .manual_clock import Clock

Get = Callable[..., requests.Response]


@pytest.fixture
def serve() -> Iterator[Callable[..., Get]]:
    """Serve one Patient behind a gateway with the given profile; returns a GET function."""
    servers: list[ThreadedServer] = []

    def start(profile: FhirProfile, clock: Callable[[], float] = time.monotonic) -> Get:
        store = PatientStore()
        store.add({"resourceType": "Patient", "id": "P001"})
        server = ThreadedServer(create_fhir_app(store, profile, clock=clock)).start()
        servers.append(server)

        def get(path: str = "/Patient/P001", timeout: float = 5.0) -> requests.Response:
            return requests.get(server.url + path, headers=KEY, timeout=timeout)

        return get

    yield start
    for server in servers:
        server.stop()


def test_spike_arrest_spreads_requests_evenly_and_gives_no_retry_after(
    serve: Callable[..., Get],
) -> None:
    """10/s spike arrest: a 2nd request in the same 100 ms slot is refused, no Retry-After."""
    clock = Clock()
    get = serve(FhirProfile(rate_limit_rps=10, rate_limit_mode="spike-arrest"), clock)
    assert get().status_code == 200
    refused = get()
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    clock.now += 0.1
    assert get().status_code == 200


@pytest.mark.parametrize(
    ("style", "check"), [("seconds", "2"), ("http-date", "date"), ("none", None)]
)
def test_token_bucket_retry_after_styles(
    serve: Callable[..., Get], style: str, check: str | None
) -> None:
    """retry_after = seconds | http-date | none shapes the 429's Retry-After header."""
    clock = Clock()
    profile = FhirProfile(rate_limit_rps=0.5, rate_limit_burst=1, retry_after=style)  # type: ignore[arg-type]
    get = serve(profile, clock)
    assert get().status_code == 200
    refused = get()
    assert refused.status_code == 429
    value = refused.headers.get("Retry-After")
    if check == "date":
        assert value is not None
        ahead = parsedate_to_datetime(value).timestamp() - time.time()
        assert 0 < ahead <= 4
    else:
        assert value == check


def test_hidden_limit_refuses_above_n_per_second_without_retry_after(
    serve: Callable[..., Get],
) -> None:
    """hidden_limit_rps=3: the 4th request within a second gets a bare 429; a second later, 200."""
    clock = Clock()
    get = serve(FhirProfile(hidden_limit_rps=3), clock)
    assert [get().status_code for _ in range(4)] == [200, 200, 200, 429]
    assert "Retry-After" not in get().headers
    clock.now += 1.0
    assert get().status_code == 200


def test_outage_answers_plain_503_between_start_and_end(serve: Callable[..., Get]) -> None:
    """outage_start_s=10, duration 30: 200 before, text/plain 503 during, 200 after."""
    clock = Clock()
    get = serve(FhirProfile(outage_start_s=10, outage_duration_s=30), clock)
    statuses = []
    for at in (0, 10, 39.9, 40):
        clock.now = 1000.0 + at
        statuses.append(get().status_code)
    assert statuses == [200, 503, 503, 200]


@pytest.mark.parametrize(
    ("knob", "status", "content_type"),
    [
        ({"stray_429_rate": 1.0}, 429, "application/fhir+json"),
        ({"error_rate": 1.0, "plain_text_share": 0.0}, "5xx", "application/fhir+json"),
        ({"error_rate": 1.0, "plain_text_share": 1.0}, "5xx", "text/plain"),
    ],
)
def test_random_faults(
    serve: Callable[..., Get], knob: dict[str, float], status: object, content_type: str
) -> None:
    """stray 429s come without Retry-After; 5xx are JSON or text/plain by plain_text_share."""
    answer = serve(FhirProfile(**knob))()  # type: ignore[arg-type]
    assert answer.status_code == status or (status == "5xx" and answer.status_code >= 500)
    assert answer.headers["Content-Type"].startswith(content_type)
    assert "Retry-After" not in answer.headers


def test_resets_and_hangs(serve: Callable[..., Get]) -> None:
    """reset_rate closes the connection; hang_rate holds the answer past the client's timeout."""
    with pytest.raises(requests.ConnectionError):
        serve(FhirProfile(reset_rate=1.0))()
    with pytest.raises(requests.Timeout):
        serve(FhirProfile(hang_rate=1.0, hang_s=5.0))(timeout=0.05)


def test_concurrency_cap_answers_503_above_max_in_flight(serve: Callable[..., Get]) -> None:
    """max_in_flight=1 with 80 ms latency: of 4 simultaneous requests some get 503."""
    get = serve(FhirProfile(max_in_flight=1, latency_ms=80, latency_p99_ms=80))
    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: get(), range(4)))
    assert statuses[0] == 200
    assert statuses[-1] == 503


def test_latency_is_log_normal_with_the_given_median_and_p99() -> None:
    """Latency draws have the configured median and 99th percentile (seeded)."""
    latency = Latency(120, 800, seed=1)
    draws = sorted(latency.draw() for _ in range(20_000))
    assert statistics.median(draws) == pytest.approx(0.120, rel=0.05)
    assert draws[math.floor(0.99 * len(draws))] == pytest.approx(0.800, rel=0.1)
    assert Latency(0, None, seed=1).draw() == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rate": 1.5},
        {"rate_limit_rps": 0},
        {"rate_limit_mode": "leaky"},
        {"retry_after": "minutes"},
        {"max_in_flight": 0},
        {"latency_ms": -1},
    ],
)
def test_impossible_knobs_are_refused(bad: dict[str, object]) -> None:
    """A share above 1, a zero limit or an unknown mode fails when the profile is built."""
    with pytest.raises(ValueError, match="sandbox profile"):
        FhirProfile(**bad)  # type: ignore[arg-type]
