"""FhirHttp: URL encoding, network errors, timeouts, statistics, preflight, byte fidelity."""

from __future__ import annotations

import json

import pytest

from phonesync.errors import FhirUnavailable, RetryableError
from phonesync.fhir.http import RequestStats
from phonesync.fhir.session import FhirSession, open_fhir
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore
from phonesync.sandbox.threaded import ThreadedServer

from .conftest import (
    NIK_A,
    NIK_SYSTEM,
    FakeTime,
    Serve,
    make_settings,
    open_http,
    open_updater,
    patient_a,
    work,
)

SEARCH = {"identifier": f"{NIK_SYSTEM}|{NIK_A}"}


@pytest.mark.parametrize(
    ("params", "query"),
    [
        (SEARCH, "identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C3174014203950001"),
        ({"identifier": "a b+c&d=e#f"}, "identifier=a%20b%2Bc%26d%3De%23f"),
        ({"_count": "0", "x": "é"}, "_count=0&x=%C3%A9"),
    ],
)
async def test_query_values_are_percent_encoded_once(
    server: ThreadedServer, fake_time: FakeTime, params: dict[str, str], query: str
) -> None:
    """Every reserved character in a value is encoded; nothing is encoded twice."""
    settings = make_settings(server)
    async with open_http(settings, fake_time) as http:
        url = http.url("Patient", params)
    assert str(url) == f"{server.url}/fhir-r4/v1/Patient?{query}"
    assert url.raw_query_string == query


async def test_connection_reset_is_retried(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """A reset connection counts as "network" and is retried after a jittered wait."""
    # aiohttp itself silently re-sends an idempotent request once after a reset on a fresh
    # connection, so two resets are needed before our loop sees a network error.
    store.faults.push(method="GET", path_prefix="/metadata", status=0, reset=True, times=2)
    async with open_http(make_settings(server), fake_time) as http:
        response = await http.request("GET", "metadata")
    assert response.status == 200
    assert http.stats.by_status == {"network": 1, "200": 1}
    assert http.stats.retries == 1
    assert len(fake_time.waits) == 1
    assert [r.status for r in store.requests] == [0, 0, 200]


async def test_timeout_is_retried(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """A request slower than request_timeout_s is abandoned and retried."""
    store.faults.push(method="GET", path_prefix="/metadata", status=0, delay_s=2.0)
    async with open_http(make_settings(server, request_timeout_s=0.2), fake_time) as http:
        response = await http.request("GET", "metadata")
    assert response.status == 200
    assert http.stats.by_status == {"network": 1, "200": 1}


async def test_unreachable_server_exhausts_attempts(
    server: ThreadedServer, fake_time: FakeTime
) -> None:
    """Nothing listening → RetryableError naming the label, after max_attempts."""
    settings = make_settings(server, fhir_base_url="http://127.0.0.1:9/fhir", max_attempts=3)
    async with open_http(settings, fake_time) as http:
        with pytest.raises(RetryableError, match=r"^GET metadata: network error after 3 attempts"):
            await http.request("GET", "metadata")
    assert http.stats.by_status == {"network": 3}


def test_request_stats_count_by_status() -> None:
    """Counters: total, retries, by_status with "network" for no status."""
    stats = RequestStats()
    stats.count(200, retry=False)
    stats.count(None, retry=False)
    stats.count(200, retry=True)
    assert (stats.total, stats.retries, stats.by_status) == (3, 1, {"200": 2, "network": 1})


@pytest.mark.parametrize("auth", ["api-key", "oauth2"])
async def test_preflight_passes_and_the_session_reports_stats(
    serve: Serve, fake_time: FakeTime, auth: str
) -> None:
    """Pre-flight: metadata and one authenticated search; the session exposes the counters."""
    server = serve(FhirProfile(auth=auth))  # type: ignore[arg-type]
    settings = make_settings(server, fhir_auth=auth)
    async with open_http(settings, fake_time) as http:
        session = FhirSession(http, settings)
        await session.preflight()
        assert session.request_stats() == (2, 0, {"200": 2})


async def test_open_fhir_wires_a_working_session(server: ThreadedServer) -> None:
    """The production factory opens and closes its own aiohttp session."""
    async with open_fhir(make_settings(server)) as fhir:
        await fhir.preflight()
        assert fhir.request_stats()[0] == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"status": 401}, "refuses our credentials"),
        ({"status": 403}, "refuses our credentials"),
        ({"status": 503, "body": "Service Unavailable"}, "unreachable"),
        ({"status": 404, "path_prefix": "/Patient"}, "base URL looks wrong"),
    ],
)
async def test_preflight_fails_fast(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    fault: dict[str, object],
    message: str,
) -> None:
    """C10: unreachable, refused credentials or a wrong base URL abort before any row."""
    store.faults.push(method="GET", times=99, **fault)  # type: ignore[arg-type]
    async with open_http(make_settings(server), fake_time) as http:
        with pytest.raises(FhirUnavailable, match=message):
            await http.preflight()


async def test_preflight_tolerates_a_missing_metadata_endpoint(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """A 404 on /metadata alone is only a warning: the search decides."""
    store.faults.push(method="GET", path_prefix="/metadata", status=404)
    async with open_http(make_settings(server), fake_time) as http:
        await http.preflight()


async def test_put_sends_decimals_back_with_their_digits(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """Byte fidelity: a valueDecimal 3.10 and a latitude -6.200000 go back exactly so."""
    full = store.add(patient_a())
    ident = json.dumps([{"system": NIK_SYSTEM, "value": NIK_A}])
    raw = (
        '{"resourceType":"Patient","id":"P001",'
        f'"meta":{{"versionId":"{full["meta"]["versionId"]}"}},"identifier":{ident},'
        '"extension":[{"url":"w","valueDecimal":3.10}],'
        '"address":[{"extension":[{"url":"geo","extension":['
        '{"url":"latitude","valueDecimal":-6.200000}]}]}],"telecom":[]}'
    )
    store.faults.push(
        method="GET",
        path_prefix="/Patient/P001",
        status=200,
        body=raw,
        content_type="application/fhir+json",
    )
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.UPDATED
    (put,) = [r for r in store.requests if r.method == "PUT"]
    assert b'"valueDecimal":3.10}' in put.body
    assert b'"valueDecimal":-6.200000}' in put.body
