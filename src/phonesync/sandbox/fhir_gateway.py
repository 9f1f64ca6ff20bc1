"""The gateway in front of the sandbox FHIR server: what the national API's Apigee layer does.

Every FHIR request passes `Gateway.middleware`, in this order (the first that answers wins):

    1. a scripted fault (`store.faults`, tests)            whatever was pushed
    2. an outage (`outage_start_s` … + `outage_duration_s`) 503 text/plain
    3. the rate limit (`rate_limit_rps`):
       token bucket (`rate_limit_burst` saved up)         429 + Retry-After (`retry_after` style)
       or spike arrest (even spacing, no bursts)          429 without Retry-After
    4. the hidden limit (`hidden_limit_rps` in any 1 s)    429 without Retry-After
    5. authentication (API key or OAuth2 bearer)           401 OperationOutcome
    6. the concurrency cap (`max_in_flight`)               503 OperationOutcome
    7. latency: log-normal (`latency_ms`/`latency_p99_ms`, writes `write_latency_ms`/…) plus
       `slowdown_per_inflight_ms` × requests already in flight (a handler in `costs` — the batch
       Bundle — says itself whether it is a write and what it adds: 1 ms per entry)
    8. one random fault (each share drawn from one seeded stream): `error_rate` 500/502/503/504
       (`plain_text_share` as text/plain), `reset_rate` connection reset, `hang_rate` no answer
       for `hang_s`, `stray_429_rate` 429 without Retry-After
    9. the handler.

Refusals at steps 2–6 answer at once (a gateway refuses before the backend is involved). The
token endpoint passes none of this except a scripted fault. `clock` drives token expiry, limits
and outages, and stamps each answer in the request log (`RequestRecord.at`); latency uses real
sleeps.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web

from phonesync.sandbox import fhir_store as fs
from phonesync.sandbox.fhir_profile import FhirProfile
from phonesync.sandbox.fhir_store import FHIR_JSON, PatientStore, RequestRecord

SANDBOX_PREFIX = "/_sandbox/"
LOGIN_LOCKOUT_S = 60.0
BEARER = {"WWW-Authenticate": "Bearer"}
WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})
PLAIN_5XX = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

Clock = Callable[[], float]
Headers = dict[str, str] | None
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: (a write?, extra seconds of latency) of a request whose cost depends on its body (a Bundle).
Cost = Callable[[web.Request], Awaitable[tuple[bool, float]]]


def fhir_json(payload: object, status: int = 200, headers: Headers = None) -> web.Response:
    all_headers = {"Content-Type": FHIR_JSON, **(headers or {})}
    return web.Response(body=fs.dumps(payload), status=status, headers=all_headers)


def outcome(
    status: int, code: str, why: str, headers: Headers = None, severity: str = "error"
) -> web.Response:
    """An OperationOutcome error response."""
    issue = {"severity": severity, "code": code, "diagnostics": why}
    return fhir_json({"resourceType": "OperationOutcome", "issue": [issue]}, status, headers)


def plain(status: int) -> web.Response:
    return web.Response(status=status, text=PLAIN_5XX.get(status, "Error"))


class TokenBucket:
    """Rate limit: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate, self._burst, self._clock = rate, max(1, burst), clock
        self._tokens = float(self._burst)
        self._last = clock()

    def take(self) -> int:
        """0 when the request may pass, else whole seconds until a token is available."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))


class SpikeArrest:
    """Apigee spike arrest: `rate` per second means one request per `1/rate` slot, no bursts."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval, self._clock = 1.0 / rate, clock
        self._last_slot: int | None = None

    def take(self) -> int:
        """0 when the request may pass; -1 when its slot is taken (no Retry-After is given)."""
        slot = math.floor(self._clock() / self._interval)
        if self._last_slot is not None and slot <= self._last_slot:
            return -1
        self._last_slot = slot
        return 0


class SlidingLimit:
    """At most `rate` accepted requests in any trailing second (the unpublished limit)."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._rate, self._clock = rate, clock
        self._accepted: deque[float] = deque()

    def take(self) -> bool:
        now = self._clock()
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        if len(self._accepted) >= self._rate:
            return False
        self._accepted.append(now)
        return True


class Latency:
    """Log-normal added latency in seconds: median and 99th percentile (default 2 × median)."""

    def __init__(self, median_ms: float, p99_ms: float | None, seed: int) -> None:
        median = median_ms / 1000.0
        p99 = (p99_ms if p99_ms is not None else 2 * median_ms) / 1000.0
        self._median = median
        self._mu = math.log(median) if median > 0 else 0.0
        self._sigma = max(0.0, math.log(p99 / median)) / 2.3263 if median > 0 else 0.0
        self._rng = random.Random(seed)

    def draw(self) -> float:
        return self._rng.lognormvariate(self._mu, self._sigma) if self._median > 0 else 0.0


class OAuth:
    """SATUSEHAT-style client-credentials tokens, expiry and the lockout after a failed login."""

    def __init__(self, profile: FhirProfile, clock: Clock) -> None:
        self._profile, self._clock = profile, clock
        self._tokens: dict[str, float] = {}
        self._locked_until: dict[str, float] = {}
        self.issued = 0

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        client_id = str(form.get("client_id", ""))
        now = self._clock()
        locked = self._locked_until.get(client_id, 0.0)
        if now < locked:
            wait = {"Retry-After": str(max(1, math.ceil(locked - now)))}
            return outcome(429, "throttled", "too many token requests", wait)
        grant = request.query.get("grant_type") or form.get("grant_type")
        if grant != "client_credentials":
            return outcome(400, "invalid", "grant_type must be client_credentials")
        p = self._profile
        if client_id != p.client_id or form.get("client_secret") != p.client_secret:
            self._locked_until[client_id] = now + LOGIN_LOCKOUT_S
            return outcome(401, "login", "invalid client credentials")
        return web.json_response(self._issue(now))

    def _issue(self, now: float) -> dict[str, str]:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = now + self._profile.token_lifetime_s
        self.issued += 1
        return {
            "access_token": token,
            "expires_in": str(self._profile.token_lifetime_s),
            "token_type": "BearerToken",
            "issued_at": str(int(time.time() * 1000)),
            "client_id": self._profile.client_id,
            "organization_name": "phonesync sandbox",
            "status": "approved",
        }

    def check(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None:
            return outcome(401, "login", "missing or unknown bearer token", BEARER)
        if self._clock() >= expiry:
            del self._tokens[token.strip()]
            return outcome(401, "login", "access token expired", BEARER)
        return None


def reset_connection(request: web.Request) -> None:
    """Close the socket with an RST instead of an answer (SO_LINGER 0)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def sleep_while_connected(request: web.Request, seconds: float) -> None:
    """Sleep, but stop early once the client has gone (so a server shutdown is not held up)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(min(left, 0.05))


def _rate_limiter(profile: FhirProfile, clock: Clock) -> TokenBucket | SpikeArrest | None:
    rate = profile.rate_limit_rps
    if not rate:
        return None
    if profile.rate_limit_mode == "spike-arrest":
        return SpikeArrest(rate, clock)
    return TokenBucket(rate, profile.rate_limit_burst, clock)


class Gateway:
    """The middleware: faults, outage, limits, auth, latency and random faults before handlers."""

    def __init__(self, store: PatientStore, profile: FhirProfile, clock: Clock) -> None:
        self.store, self.profile, self._clock = store, profile, clock
        self.started = clock()
        self.oauth = OAuth(profile, clock)
        self._rate = _rate_limiter(profile, clock)
        hidden = profile.hidden_limit_rps
        self._hidden = SlidingLimit(hidden, clock) if hidden else None
        write_median = profile.write_latency_ms
        write_p99 = profile.write_latency_p99_ms if write_median is not None else None
        self._latency = {
            False: Latency(profile.latency_ms, profile.latency_p99_ms, profile.seed + 1),
            True: Latency(
                profile.latency_ms if write_median is None else write_median,
                profile.latency_p99_ms if write_median is None else write_p99,
                profile.seed + 2,
            ),
        }
        self._faults = random.Random(profile.seed)
        self._auth_checks = {"api-key": self._check_api_key, "oauth2": self.oauth.check}
        self.in_flight = 0
        self.peak_in_flight = 0
        self.public: set[object] = set()  # handlers that need no credentials
        self.ungated: set[object] = set()  # handlers outside the gateway's limits (token)
        self.costs: dict[object, Cost] = {}  # handlers whose latency depends on the body

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(SANDBOX_PREFIX):
            return await handler(request)
        body = await request.read() if request.body_exists else b""
        status = 500
        try:
            response = await self._answer(request, handler)
            if response is None:
                status = 0
                return web.Response()  # the socket is gone: aiohttp drops this quietly
            status = response.status
            return response
        finally:
            at = self._clock()  # when the answer is handed back: request_log.per_second
            record = RequestRecord(
                request.method, request.raw_path, request.headers, status, body, at
            )
            self.store.record(record)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse | None:
        faults = self.store.faults
        fault = faults.take(request.method, request.raw_path) if faults else None
        if fault is not None:
            await sleep_while_connected(request, fault.delay_s)
            if fault.reset:
                reset_connection(request)
                return None
            if fault.status:
                return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        if request.match_info.handler in self.ungated:
            return await self._handle(request, handler)
        refusal = self._refusal(request, request.match_info.handler)
        if refusal is not None:
            return refusal
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._backend(request, handler)
        finally:
            self.in_flight -= 1

    async def _backend(self, request: web.Request, handler: Handler) -> web.StreamResponse | None:
        cost = self.costs.get(request.match_info.handler)
        write, delay = await cost(request) if cost else (request.method in WRITE_METHODS, 0.0)
        delay += self._latency[write].draw()
        delay += self.profile.slowdown_per_inflight_ms * (self.in_flight - 1) / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)
        fault = self._random_fault()
        if fault == "reset":
            reset_connection(request)
            return None
        if fault == "hang":
            await sleep_while_connected(request, self.profile.hang_s)
            reset_connection(request)
            return None
        if isinstance(fault, web.Response):
            return fault
        return await self._handle(request, handler)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return self._as_outcome(exc)

    def _refusal(self, request: web.Request, handler: object) -> web.Response | None:
        p = self.profile
        if p.outage_start_s is not None:
            since = self._clock() - self.started - p.outage_start_s
            if 0 <= since < p.outage_duration_s:
                return plain(503)
        if self._rate is not None and (wait := self._rate.take()):
            return outcome(429, "throttled", "rate limit exceeded", self._retry_after(wait))
        if self._hidden is not None and not self._hidden.take():
            return outcome(429, "throttled", "too many requests")
        if handler not in self.public:
            refusal = self._auth_checks[p.auth](request)
            if refusal is not None:
                return refusal
        if p.max_in_flight is not None and self.in_flight >= p.max_in_flight:
            return outcome(503, "transient", "server busy: too many requests in progress")
        return None

    def _retry_after(self, wait: int) -> Headers:
        """Retry-After in the profile's style; `wait` < 0 means "give none" (spike arrest)."""
        style = self.profile.retry_after
        if wait < 0 or style == "none":
            return None
        if style == "http-date":
            return {"Retry-After": formatdate(math.ceil(time.time()) + wait, usegmt=True)}
        return {"Retry-After": str(wait)}

    def _random_fault(self) -> web.Response | str | None:
        """One draw decides: a 5xx, a reset, a hang, a stray 429, or nothing."""
        p = self.profile
        u = self._faults.random()
        mix: list[tuple[float, Callable[[], Any]]] = [
            (p.error_rate, self._server_error),
            (p.reset_rate, lambda: "reset"),
            (p.hang_rate, lambda: "hang"),
            (p.stray_429_rate, lambda: outcome(429, "throttled", "too many requests")),
        ]
        for share, make in mix:
            if u < share:
                result: web.Response | str = make()
                return result
            u -= share
        return None

    def _server_error(self) -> web.Response:
        status = self._faults.choice(sorted(PLAIN_5XX))
        if self._faults.random() < self.profile.plain_text_share:
            return plain(status)
        return outcome(status, "exception", PLAIN_5XX[status].lower())

    def _check_api_key(self, request: web.Request) -> web.Response | None:
        if request.headers.get(self.profile.api_key_header) == self.profile.api_key:
            return None
        return outcome(401, "login", f"missing or wrong {self.profile.api_key_header} header")

    @staticmethod
    def _as_outcome(exc: web.HTTPException) -> web.Response:
        codes = {404: "not-found", 405: "not-supported"}
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return outcome(exc.status, codes.get(exc.status, "processing"), exc.reason, headers)
