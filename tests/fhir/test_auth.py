"""Credentials: API-key header, OAuth2 client credentials with one single-flight refresh."""

from __future__ import annotations

import asyncio

import pytest

from phonesync.errors import FhirUnavailable
from phonesync.fhir.auth import _parse_token
from phonesync.masking import redact
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore

from .conftest import NIK_SYSTEM, FakeTime, Serve, make_settings, open_http

SEARCH = {"identifier": f"{NIK_SYSTEM}|3174014203950001"}


def _token_requests(store: PatientStore) -> int:
    return sum(r.raw_path_qs.startswith("/oauth2/v1/accesstoken") for r in store.requests)


def _fhir_statuses(store: PatientStore) -> list[int]:
    return [r.status for r in store.requests if not r.raw_path_qs.startswith("/oauth2/")]


async def test_api_key_header_is_sent_and_registered_as_secret(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """The configured header carries the key; the key is masked in any text afterwards."""
    server = serve(FhirProfile(api_key="test-key-123", api_key_header="X-Gateway-Key"))
    settings = make_settings(
        server, fhir_api_key="test-key-123", fhir_api_key_header="X-Gateway-Key"
    )
    async with open_http(settings, fake_time) as http:
        response = await http.request("GET", "Patient", params=SEARCH)
    assert response.status == 200
    assert store.requests[-1].headers["X-Gateway-Key"] == "test-key-123"
    assert redact("key test-key-123") == "key [secret]"


async def test_oauth2_token_is_fetched_once_and_reused(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """One login, then the bearer token is reused; the token is masked in any text."""
    server = serve(FhirProfile(auth="oauth2"))
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        for _ in range(3):
            await http.request("GET", "Patient", params=SEARCH)
    assert _token_requests(store) == 1
    assert _fhir_statuses(store) == [200, 200, 200]
    token = store.requests[-1].headers["Authorization"].removeprefix("Bearer ")
    assert redact(f"token {token}") == "token [secret]"


async def test_expired_token_is_refreshed_once_for_20_concurrent_requests(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """20 requests that all find the token expired cause exactly one token request."""
    server = serve(FhirProfile(auth="oauth2"))
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        await http.request("GET", "metadata")
        fake_time.t += 3600  # past the token's lifetime on our side
        await asyncio.gather(*(http.request("GET", "Patient", params=SEARCH) for _ in range(20)))
    assert _token_requests(store) == 2
    assert _fhir_statuses(store) == [200] * 21


async def test_twenty_401s_with_the_same_token_cause_one_refresh(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """The server expires the token early: 20 requests get 401, one re-login, all succeed."""
    server_clock = [0.0]
    server = serve(FhirProfile(auth="oauth2"), clock=lambda: server_clock[0])
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        await http.request("GET", "metadata")
        await http.request("GET", "Patient", params=SEARCH)
        server_clock[0] = 10_000.0  # the server considers the token expired; we do not know
        results = await asyncio.gather(
            *(http.request("GET", "Patient", params=SEARCH) for _ in range(20))
        )
    assert [r.status for r in results] == [200] * 20
    assert _token_requests(store) == 2
    assert _fhir_statuses(store).count(401) == 20
    assert http.stats.by_status == {"200": 22, "401": 20}


async def test_token_with_string_expires_in_is_refreshed_ahead_of_expiry(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """`expires_in: "100"` → a new token shortly before 100 s, without ever meeting a 401."""
    server = serve(FhirProfile(auth="oauth2", token_lifetime_s=100))
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        await http.request("GET", "metadata")
        fake_time.t += 85
        await http.request("GET", "metadata")
        assert _token_requests(store) == 1
        fake_time.t += 6  # 91 s: inside the refresh margin (10 % of the lifetime)
        await http.request("GET", "metadata")
    assert _token_requests(store) == 2
    assert 401 not in _fhir_statuses(store)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"access_token":"abc","expires_in":"3599"}', ("abc", 3599.0)),
        (b'{"access_token":"abc","expires_in":3599}', ("abc", 3599.0)),
        (b'{"access_token":"abc"}', ("abc", 300.0)),
        (b'{"access_token":"abc","expires_in":"soon"}', ("abc", 300.0)),
        (b'{"access_token":"abc","expires_in":"-1"}', ("abc", 300.0)),
        (b'{"access_token":""}', (None, 300.0)),
        (b"[]", (None, 0.0)),
        (b"<html>", (None, 0.0)),
    ],
)
def test_token_reply_is_parsed_defensively(body: bytes, expected: tuple[str | None, float]) -> None:
    """expires_in may be a string, a number, or missing (then a short default lifetime)."""
    assert _parse_token(body) == expected


async def test_failed_login_is_not_retried(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """Wrong client secret → FhirUnavailable without the secret; later calls never ask again."""
    server = serve(FhirProfile(auth="oauth2"))
    settings = make_settings(server, fhir_auth="oauth2", oauth_client_secret="wrong-secret-987")
    async with open_http(settings, fake_time) as http:
        for _ in range(3):
            with pytest.raises(FhirUnavailable) as caught:
                await http.request("GET", "Patient", params=SEARCH)
            message = str(caught.value)
            assert "401" in message
            assert "wrong-secret-987" not in message
            assert "sandbox-secret" not in message
    assert _token_requests(store) == 1
    assert _fhir_statuses(store) == []
    assert fake_time.waits == []


async def test_unreachable_token_endpoint_aborts(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """A token endpoint that cannot be reached is a FhirUnavailable, asked once."""
    server = serve(FhirProfile(auth="oauth2"))
    settings = make_settings(
        server, fhir_auth="oauth2", oauth_token_url="http://127.0.0.1:9/oauth2/v1/accesstoken"
    )
    async with open_http(settings, fake_time) as http:
        with pytest.raises(FhirUnavailable, match=r"unreachable .* after 3 attempts") as caught:
            await http.request("GET", "metadata")
    assert store.requests == []
    assert fake_time.waits == [1.0, 3.0]  # asked again twice, never in a loop
    assert "client settings" not in str(caught.value)


async def test_a_dropped_connection_to_the_token_endpoint_is_tried_again(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """One reset from the token endpoint is not a refused login: asked again, then logged in."""
    server = serve(FhirProfile(auth="oauth2"))
    store.faults.push(method="POST", path_prefix="/oauth2", status=500, reset=True, times=1)
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        resp = await http.request("GET", "metadata")
    assert resp.status == 200
    assert fake_time.waits == [1.0]


@pytest.mark.parametrize("auth", ["api-key", "oauth2"])
async def test_persisting_401_aborts_after_one_reauth(
    serve: Serve, store: PatientStore, fake_time: FakeTime, auth: str
) -> None:
    """401 → one re-authentication and one retry; 401 again → FhirUnavailable (no row loop)."""
    server = serve(FhirProfile(auth=auth))  # type: ignore[arg-type]
    store.faults.push(
        method="GET",
        path_prefix="/Patient",
        status=401,
        times=10,
        body={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "login"}],
        },
    )
    async with open_http(make_settings(server, fhir_auth=auth), fake_time) as http:
        with pytest.raises(FhirUnavailable, match="refuses our credentials"):
            await http.request("GET", "Patient", params=SEARCH, label="GET search")
    assert _fhir_statuses(store) == [401, 401]
    assert _token_requests(store) == (2 if auth == "oauth2" else 0)


async def test_a_token_that_expires_while_the_request_waits_its_turn_is_renewed(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """5 s tokens, one request every 7 s: the credential is read after the wait, so it is valid
    when sent (it used to be read before, arrive expired twice and abort as "refused")."""
    server = serve(FhirProfile(auth="oauth2", token_lifetime_s=5), clock=fake_time.now)
    settings = make_settings(server, fhir_auth="oauth2", max_rate=1 / 7)
    async with open_http(settings, fake_time) as http:
        for _ in range(3):
            await http.request("GET", "Patient", params=SEARCH, label="GET search")
    assert _fhir_statuses(store) == [200, 200, 200]
    assert _token_requests(store) == 3


async def test_403_once_then_success(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """A single 403 is treated like a 401: re-authenticate once and carry on."""
    server = serve(FhirProfile(auth="oauth2"))
    store.faults.push(method="GET", path_prefix="/Patient", status=403)
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        response = await http.request("GET", "Patient", params=SEARCH)
    assert response.status == 200
    assert _fhir_statuses(store) == [403, 200]
    assert _token_requests(store) == 2


TOKEN_PATH = "/oauth2/v1/accesstoken"
THROTTLED = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "throttled", "diagnostics": "too many requests"}],
}


@pytest.mark.parametrize("status", [429, 503])
async def test_throttled_token_endpoint_is_waited_out_once_then_logged_in(
    serve: Serve, store: PatientStore, fake_time: FakeTime, status: int
) -> None:
    """429/503 + Retry-After: 60 on login → one 60 s wait (fake time), one more ask, success."""
    server = serve(FhirProfile(auth="oauth2"))
    store.faults.push(
        method="POST", path_prefix=TOKEN_PATH, status=status, headers={"Retry-After": "60"},
        body=THROTTLED,
    )  # fmt: skip
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        response = await http.request("GET", "Patient", params=SEARCH)
    assert response.status == 200
    assert fake_time.waits == [60.0]
    assert _token_requests(store) == 2
    assert _fhir_statuses(store) == [200]


async def test_concurrent_requests_share_the_one_wait_and_the_one_retry(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """20 requests meet a throttled login: one wait, two token requests in all, 20 answers."""
    server = serve(FhirProfile(auth="oauth2"))
    store.faults.push(
        method="POST", path_prefix=TOKEN_PATH, status=429, headers={"Retry-After": "60"}
    )
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        results = await asyncio.gather(
            *(http.request("GET", "Patient", params=SEARCH) for _ in range(20))
        )
    assert [r.status for r in results] == [200] * 20
    assert fake_time.waits == [60.0]
    assert _token_requests(store) == 2


async def test_still_throttled_after_the_wait_is_rate_limiting_not_bad_credentials(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """429 again after the wait → FhirUnavailable saying rate-limiting; never asked a 3rd time."""
    server = serve(FhirProfile(auth="oauth2"))
    store.faults.push(
        method="POST", path_prefix=TOKEN_PATH, status=429, headers={"Retry-After": "60"},
        body=THROTTLED, times=10,
    )  # fmt: skip
    async with open_http(make_settings(server, fhir_auth="oauth2"), fake_time) as http:
        for _ in range(3):
            with pytest.raises(FhirUnavailable) as caught:
                await http.request("GET", "Patient", params=SEARCH)
            message = str(caught.value)
            assert "token endpoint is rate-limiting" in message
            assert "429 again after waiting 60 s" in message
            assert "check the OAuth2 client settings" not in message
            assert "sandbox-secret" not in message
    assert caught.value.exit_code == 4
    assert fake_time.waits == [60.0]
    assert _token_requests(store) == 2
    assert _fhir_statuses(store) == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, "Retry-After 120 s, above the 60 s cap"),
        ({}, "429 without Retry-After"),
    ],
    ids=["above-cap", "absent"],
)
async def test_throttled_login_without_a_usable_retry_after_is_not_waited(
    serve: Serve, store: PatientStore, fake_time: FakeTime, headers: dict[str, str], expected: str
) -> None:
    """A Retry-After above PHONESYNC_RETRY_MAX_WAIT_S (or none) → no wait, no second ask."""
    server = serve(FhirProfile(auth="oauth2"))
    store.faults.push(method="POST", path_prefix=TOKEN_PATH, status=429, headers=headers)
    settings = make_settings(server, fhir_auth="oauth2", retry_max_wait_s=60)
    async with open_http(settings, fake_time) as http:
        with pytest.raises(FhirUnavailable, match="rate-limiting") as caught:
            await http.request("GET", "metadata")
    assert expected in str(caught.value)
    assert "check the OAuth2 client settings" not in str(caught.value)
    assert fake_time.waits == []
    assert _token_requests(store) == 1
