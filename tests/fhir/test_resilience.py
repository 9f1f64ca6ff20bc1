"""Faults of the national server, each handled and counted: expiry, resets, hangs, 5xx, 429."""

from __future__ import annotations

import asyncio

import pytest

from phonesync.errors import RetryableError
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore

from .conftest import FakeTime, Serve, make_settings, open_http, patient_a

TOKEN_PATH = "/oauth2/v1/accesstoken"


async def test_token_expiry_mid_run_is_one_refresh_shared_by_all_in_flight(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """The server expires the token early: 12 requests get 401, one token request follows."""
    store.add(patient_a())
    skew = {"s": 0.0}
    server = serve(
        FhirProfile(auth="oauth2", token_lifetime_s=3599),
        clock=lambda: fake_time.now() + skew["s"],
    )
    settings = make_settings(server, fhir_auth="oauth2")
    async with open_http(settings, fake_time) as http:
        await http.request("GET", "Patient/P001")
        skew["s"] = 7200.0  # the server thinks our token is long expired; we do not
        answers = await asyncio.gather(*(http.request("GET", "Patient/P001") for _ in range(12)))
    assert {a.status for a in answers} == {200}
    tokens = [r for r in store.requests if r.raw_path_qs.startswith(TOKEN_PATH)]
    assert len(tokens) == 2
    assert http.stats.by_status["401"] == 12


@pytest.mark.parametrize(
    ("fault", "counted_as"),
    [
        ({"status": 0, "reset": True}, "network"),
        ({"status": 200, "body": {}, "delay_s": 1.0}, "network"),  # a hang: the client times out
        ({"status": 502, "body": "Bad Gateway"}, "502"),
        ({"status": 503, "body": "Service Unavailable"}, "503"),
        ({"status": 504, "body": "Gateway Timeout"}, "504"),
        ({"status": 429}, "429"),  # no Retry-After: our own jittered back-off
        ({"status": 429, "headers": {"Retry-After": "7"}}, "429"),
    ],
)
async def test_transient_faults_are_retried_and_counted(
    serve: Serve,
    store: PatientStore,
    fake_time: FakeTime,
    fault: dict[str, object],
    counted_as: str,
) -> None:
    """Two faulty answers, then the real one: the request succeeds, the faults are counted."""
    store.add(patient_a())
    store.faults.push(times=2, path_prefix="/Patient/P001", **fault)  # type: ignore[arg-type]
    settings = make_settings(serve(), request_timeout_s=0.05)
    async with open_http(settings, fake_time) as http:
        answer = await http.request("GET", "Patient/P001", label="GET Patient")
    assert answer.status == 200
    assert [r.status for r in store.requests][-1] == 200
    assert len(store.faults) == 0  # both faulty answers were given
    # aiohttp itself re-sends once on a reset connection: we may see one reset of the two
    assert 1 <= http.stats.by_status[counted_as] <= 2
    assert http.stats.retries == len(fake_time.waits) == http.stats.by_status[counted_as]
    headers = fault.get("headers")
    if headers:
        assert fake_time.waits == [7.0, 7.0]  # Retry-After honoured
    else:
        assert all(0 <= w <= 2.0 for w in fake_time.waits)  # jitter within 1 s · 2^n


async def test_a_request_that_keeps_hanging_says_so_in_its_error(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """Every attempt times out: the error names the timeout, not a bare "(TimeoutError )"."""
    store.add(patient_a())
    store.faults.push(times=10, path_prefix="/Patient/P001", status=200, body={}, delay_s=1.0)
    settings = make_settings(serve(), request_timeout_s=0.05, max_attempts=2)
    async with open_http(settings, fake_time) as http:
        with pytest.raises(RetryableError) as raised:
            await http.request("GET", "Patient/P001", label="GET Patient")
    assert "network error after 2 attempts (no answer within 0.05 s (TimeoutError))" in str(
        raised.value
    )


async def test_a_stall_that_fails_every_request_in_flight_logs_a_few_retries_and_a_count(
    serve: Serve, store: PatientStore, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """60 requests in flight all get a 503 at once (a stalled server): every one is retried and
    counted, but the log shows the first 20 retry warnings and then one line with the rest's
    count (a 25 s stall had logged 470 lines, most within one second)."""
    store.add(patient_a())
    store.faults.push(times=60, path_prefix="/Patient/P001", status=503, body="Unavailable")
    # back-off of at most 1 ms: the 60 retries fall within one 10 s window of the fake clock
    settings = make_settings(serve(), concurrency=64, retry_max_wait_s=0.001)
    with caplog.at_level("WARNING", logger="phonesync"):
        async with open_http(settings, fake_time) as http:
            answers = await asyncio.gather(
                *(http.request("GET", "Patient/P001") for _ in range(60))
            )
    assert {a.status for a in answers} == {200}
    assert http.stats.retries == 60  # every retry still counted
    retried = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retried) == 20
    rest = [r for r in caplog.records if "more retry warnings" in r.getMessage()]
    assert [r.getMessage() for r in rest] == [
        "40 more retry warnings within 10 s not shown (at most 20 per 10 s)"
    ]
