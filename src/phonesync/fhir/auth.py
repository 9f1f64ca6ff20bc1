"""Credentials for the FHIR server: an API-key header, or OAuth2 client credentials.

Both expose the same two calls to `FhirHttp`:

- `headers(session)` → the headers to send and the *generation* of the credential in them;
- `refresh(session, generation)` → called after a 401/403; refreshes only if nobody has done so
  since `generation` was handed out. Twenty requests that all got a 401 with the same token cause
  exactly one token request (single flight under one `asyncio.Lock`).

The national token endpoint allows about one request a minute after a failed login, so a failed
login is never retried: it raises `FhirUnavailable` (the run aborts) and every later call raises
the same error without asking the endpoint again. The one exception is the endpoint saying "not
now": a 429 or 503 with a `Retry-After` of at most `retry_max_wait_s` is waited out once (with the
injected sleeper, holding the single-flight lock so every waiter shares the one retry) and the
token asked for once more; refused again, or a longer or missing `Retry-After`, is a
`FhirUnavailable` that says the endpoint is rate-limiting (the credentials may be fine).

Tokens are refreshed ahead of expiry (`expires_in` arrives as a string, e.g. `"3599"`) and
registered with `masking.register_secret`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn, Protocol

import aiohttp
import yarl

from phonesync.errors import ConfigError, FhirUnavailable
from phonesync.fhir.classify import extract_detail, parse_retry_after
from phonesync.masking import redact, register_secret
from phonesync.settings import Settings

#: Pauses before asking an unreachable token endpoint again (a reset, a timeout).
NETWORK_RETRY_PAUSES_S = (1.0, 3.0)
#: Lifetime assumed when a token reply has no usable `expires_in` (short on purpose).
DEFAULT_TOKEN_LIFETIME_S = 300.0
#: Refresh this long before expiry at most (and at most 10 % of the lifetime).
REFRESH_AHEAD_S = 60.0
#: Token-endpoint answers that mean "not now" rather than "wrong credentials".
THROTTLED_STATUSES = frozenset({429, 503})

log = logging.getLogger(__name__)


class Auth(Protocol):
    """Where the credential headers of a FHIR request come from."""

    async def headers(self, session: aiohttp.ClientSession) -> tuple[dict[str, str], int]:
        """The headers to send and the generation of the credential they carry."""

    async def refresh(self, session: aiohttp.ClientSession, generation: int) -> None:
        """The server refused the credential of `generation`: get a new one (once)."""

    def is_current(self, generation: int) -> bool:
        """`generation` is the credential in use now and not (nearly) expired."""


class ApiKeyAuth:
    """A fixed key in a configurable header (`x-api-key` by default); nothing to refresh."""

    def __init__(self, header: str, key: str) -> None:
        if not key:
            raise ConfigError("FHIR API key is empty (PHONESYNC_FHIR_API_KEY)")
        register_secret(key)
        self._headers = {header: key}

    async def headers(self, session: aiohttp.ClientSession) -> tuple[dict[str, str], int]:
        return dict(self._headers), 0

    async def refresh(self, session: aiohttp.ClientSession, generation: int) -> None:
        return None  # a key cannot be refreshed; FhirHttp gives up after one more try

    def is_current(self, generation: int) -> bool:
        return True  # a key does not expire: refused twice means refused


class OAuth2Auth:
    """OAuth2 client credentials with one shared, single-flight token refresh."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float],
        timeout_s: float = 30.0,
        sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_wait_s: float = 60.0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        register_secret(client_secret)
        self._url = yarl.URL(token_url).update_query(grant_type="client_credentials")
        self._form = {"client_id": client_id, "client_secret": client_secret}
        self._clock = clock
        self._sleeper = sleeper
        self._max_wait_s = max_wait_s
        self._wall_clock = wall_clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = float("-inf")
        self._generation = 0
        self._failure: str | None = None
        self.token_requests = 0

    async def headers(self, session: aiohttp.ClientSession) -> tuple[dict[str, str], int]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():  # somebody else may have logged in while we waited
                    await self._login(session)
        return {"Authorization": f"Bearer {self._token}"}, self._generation

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._refresh_at

    def is_current(self, generation: int) -> bool:
        return generation == self._generation and self._fresh()

    async def refresh(self, session: aiohttp.ClientSession, generation: int) -> None:
        async with self._lock:
            if generation == self._generation:
                await self._login(session)

    async def _login(self, session: aiohttp.ClientSession) -> None:
        if self._failure is not None:
            raise FhirUnavailable(self._failure)
        status, body, retry_after = await self._post(session)
        if status in THROTTLED_STATUSES:
            if retry_after is None or retry_after > self._max_wait_s:
                self._fail_throttled(status, body, retry_after, waited=None)
            # The lock is held while we wait: every caller shares this one retry.
            log.warning(
                "OAuth2 token endpoint answered %s (Retry-After %.0f s): waiting once, then "
                "asking once more",
                status,
                retry_after,
            )
            await self._sleeper(max(retry_after, 0.0))
            status, body, again = await self._post(session)
            if status in THROTTLED_STATUSES:
                self._fail_throttled(status, body, again, waited=retry_after)
        for pause in NETWORK_RETRY_PAUSES_S:  # a dropped connection is not a refusal
            if status is not None:
                break
            log.warning("OAuth2 token endpoint unreachable (%s); trying again", body.decode())
            await self._sleeper(pause)
            status, body, retry_after = await self._post(session)
        if status is None:
            self._fail(
                f"OAuth2 token endpoint unreachable ({body.decode()}) after "
                f"{len(NETWORK_RETRY_PAUSES_S) + 1} attempts",
                hint="check PHONESYNC_OAUTH_TOKEN_URL and the network",
            )
        if not 200 <= status < 300:
            self._fail(f"OAuth2 login refused: {status} {extract_detail(body)}".rstrip())
        token, lifetime = _parse_token(body)
        if token is None:
            self._fail(f"OAuth2 token reply without access_token (status {status})")
        register_secret(token)
        self._token = token
        self._refresh_at = self._clock() + lifetime - min(REFRESH_AHEAD_S, lifetime * 0.1)
        self._generation += 1

    async def _post(self, session: aiohttp.ClientSession) -> tuple[int | None, bytes, float | None]:
        """One token request: status, body and Retry-After in seconds (None: absent).

        (None, error class name, None) when the request could not be made.
        """
        self.token_requests += 1
        try:
            async with session.post(self._url, data=self._form, timeout=self._timeout) as resp:
                wait = parse_retry_after(resp.headers.get("Retry-After"), self._wall_clock())
                return resp.status, await resp.read(), wait
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only the class name: the caller raises outside this block, so no chained
            # aiohttp error (whose text holds the URL) ends up in a traceback.
            return None, type(exc).__name__.encode(), None

    def _fail(self, message: str, *, hint: str = "check the OAuth2 client settings") -> NoReturn:
        self._token = None
        self._failure = redact(message) + f" (not retried: {hint})"
        raise FhirUnavailable(self._failure)

    def _fail_throttled(
        self, status: int, body: bytes, retry_after: float | None, *, waited: float | None
    ) -> NoReturn:
        """The endpoint keeps saying "not now": stop asking for this run (never a login loop)."""
        if waited is not None:
            what = f"{status} again after waiting {waited:.0f} s as its Retry-After asked"
        elif retry_after is None:
            what = f"{status} without Retry-After"
        else:
            what = (
                f"{status} with Retry-After {retry_after:.0f} s, above the "
                f"{self._max_wait_s:.0f} s cap (PHONESYNC_RETRY_MAX_WAIT_S)"
            )
        detail = extract_detail(body)
        self._token = None
        self._failure = redact(
            f"OAuth2 token endpoint is rate-limiting: {what}"
            + (f" ({detail})" if detail else "")
            + "; not asked again in this run: run again later (this does not say the client "
            "credentials are wrong)"
        )
        raise FhirUnavailable(self._failure)


def _parse_token(body: bytes) -> tuple[str | None, float]:
    """`access_token` and `expires_in` (number or numeric string) from a token reply."""
    try:
        reply = json.loads(body)
    except ValueError:
        return None, 0.0
    if not isinstance(reply, dict):
        return None, 0.0
    token = reply.get("access_token")
    try:
        lifetime = float(reply.get("expires_in", DEFAULT_TOKEN_LIFETIME_S))
    except (TypeError, ValueError):
        lifetime = DEFAULT_TOKEN_LIFETIME_S
    if lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME_S
    return (token if isinstance(token, str) and token else None), lifetime


def auth_from_settings(
    settings: Settings,
    *,
    clock: Callable[[], float],
    sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Auth:
    """The `Auth` the settings ask for; a `ConfigError` names what is missing."""
    if settings.fhir_auth == "api-key":
        if settings.fhir_api_key is None:
            raise ConfigError("missing setting PHONESYNC_FHIR_API_KEY (auth=api-key)")
        return ApiKeyAuth(settings.fhir_api_key_header, settings.fhir_api_key.get_secret_value())
    if (
        settings.oauth_token_url is None
        or settings.oauth_client_id is None
        or settings.oauth_client_secret is None
    ):
        raise ConfigError(
            "auth=oauth2 needs PHONESYNC_OAUTH_TOKEN_URL, PHONESYNC_OAUTH_CLIENT_ID "
            "and PHONESYNC_OAUTH_CLIENT_SECRET"
        )
    return OAuth2Auth(
        settings.oauth_token_url,
        settings.oauth_client_id,
        settings.oauth_client_secret.get_secret_value(),
        clock=clock,
        timeout_s=settings.request_timeout_s,
        sleeper=sleeper,
        max_wait_s=settings.retry_max_wait_s,
    )
