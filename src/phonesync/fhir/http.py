"""`FhirHttp`: the aiohttp session, credentials, pacing and the ONE retry loop for FHIR calls.

Every request goes through `FhirHttp.request`, which asks `classify()` what each outcome means:

- ok → a `FhirResponse` (JSON parsed with decimals kept digit for digit, see `jsonio`);
- retry (408, 429, 500, 502, 503, 504, network) → wait and try again, bounded by
  `max_attempts` AND `retry_total_s`. The wait is the server's Retry-After (seconds or HTTP-date)
  when given, otherwise full-jitter exponential back-off (uniform in [0, 1 s · 2^n]). Every wait is
  capped at `retry_max_wait_s` (default 60 s): a `Retry-After: 86400` means "retry in 60 s", and if
  the server still refuses, that costs one more attempt, never a day. A 429's Retry-After also
  pauses every other request (`Limiter.pause_all`). Exhausted → `RetryableError`;
- a circuit breaker (`breaker.py`, optional) holds every request while the server is down and
  lets one probe through at a time; attempts that fail while it is open, and the time spent
  waiting for it, do not count against a request's `max_attempts`/`retry_total_s` (the
  breaker's own `outage_deadline_s` bounds an outage: then the run aborts);
- reauth (401, 403) → refresh the credential once and retry; refused again → `FhirUnavailable`:
  the run aborts instead of failing 20,000 rows one by one;
- conflict (409, 412) → `VersionConflict` (a `RejectedError`: a caller that does not handle it
  ends the row `failed`, never writes without a version check);
- reject (other 4xx) → `RejectedError` with the server's masked diagnostics.

URLs are built already percent-encoded (`yarl.URL(..., encoded=True)`), so the NIK search goes on
the wire as `/Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C3174…` with no raw
`|`. Exceptions and log lines carry a *label* (`GET search`, `PUT`) instead of the URL, and
aiohttp's own errors (whose text contains the URL) are never passed on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from phonesync.errors import ConfigError, FhirUnavailable, RejectedError, RetryableError
from phonesync.fhir import jsonio
from phonesync.fhir.auth import Auth, auth_from_settings
from phonesync.fhir.breaker import CircuitBreaker
from phonesync.fhir.bundler import BATCHABLE_METHODS, Bundler, ParsedBody, supports_batch
from phonesync.fhir.classify import Kind, Verdict, classify
from phonesync.fhir.pacing import Limiter
from phonesync.logs import BurstLimit
from phonesync.masking import redact
from phonesync.metrics import NO_METRICS, RunMetrics
from phonesync.settings import Settings

log = logging.getLogger(__name__)

#: Re-authentications one request may make when its token keeps expiring before it is used.
MAX_REAUTHS = 3
#: First back-off ceiling; doubles with every retry (then capped by `retry_max_wait_s`).
BACKOFF_BASE_S = 1.0
#: Identifier value used by `preflight()`: province 00 does not exist, so it is nobody's NIK.
PROBE_VALUE = "0000000000000000"
_ACCEPT = "application/fhir+json, application/json;q=0.9"


class VersionConflict(RejectedError):
    """409/412: the resource changed since it was read; re-read and re-apply."""


@dataclass(frozen=True, slots=True)
class FhirResponse:
    """A successful FHIR answer; `json` is None for an empty or non-JSON body."""

    status: int
    headers: Mapping[str, str]
    json: Any
    etag: str | None


@dataclass(slots=True)
class RequestStats:
    """HTTP exchanges counted by status (`"network"` when there was none)."""

    total: int = 0
    retries: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: int | None, *, retry: bool) -> None:
        key = "network" if status is None else str(status)
        self.total += 1
        self.retries += int(retry)
        self.by_status[key] = self.by_status.get(key, 0) + 1


@dataclass(slots=True)
class _Try:
    """The state of one logical request across its attempts."""

    raw_label: str  # may hold a NIK: only `label`, masked, is ever shown
    started: float
    sinks: tuple[RequestStats, ...]
    attempts: int = 0
    free: int = 0  # attempts made while the circuit breaker was open: not counted
    reauths: int = 0
    generation: int = 0

    @property
    def label(self) -> str:
        """The request's name for errors and logs, masked (only needed when something failed)."""
        return redact(self.raw_label)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FhirHttp:
    """One FHIR server: `async with FhirHttp(settings, limiter=…) as fhir: fhir.request(…)`."""

    def __init__(
        self,
        settings: Settings,
        *,
        limiter: Limiter,
        sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        session: aiohttp.ClientSession | None = None,
        wall_clock: Callable[[], datetime] = _utc_now,
        auth: Auth | None = None,
        breaker: CircuitBreaker | None = None,
        metrics: RunMetrics = NO_METRICS,
    ) -> None:
        if not settings.fhir_base_url:
            raise ConfigError("missing setting PHONESYNC_FHIR_BASE_URL")
        self.settings = settings
        self.stats = RequestStats()
        self._base = str(yarl.URL(settings.fhir_base_url)).rstrip("/")
        self._limiter = limiter
        self._breaker = breaker
        self._sleeper = sleeper
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.SystemRandom()
        self._auth = (
            auth if auth is not None else auth_from_settings(settings, clock=clock, sleeper=sleeper)
        )
        self._session = session
        self._owns_session = session is None
        self._metrics = metrics
        self._retry_log = BurstLimit(log, "retry warnings", clock=clock)
        self._bundler: Bundler | None = None
        self.capability: Any = None  # the CapabilityStatement `preflight()` read
        self._handlers: dict[Kind, Callable[[Verdict, _Try], Awaitable[None]]] = {
            Kind.RETRY: self._on_retry,
            Kind.REAUTH: self._on_reauth,
            Kind.CONFLICT: self._on_conflict,
            Kind.REJECT: self._on_reject,
        }

    async def __aenter__(self) -> FhirHttp:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # one spare connection for the token endpoint while every slot is busy
                connector=aiohttp.TCPConnector(
                    limit=self.settings.concurrency + 1,
                    # false only for a loopback sandbox (secrets.check_tls refuses it elsewhere)
                    ssl=self.settings.tls_verify,
                ),
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s),
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._retry_log.flush()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("FhirHttp is not open: use `async with FhirHttp(...)`")
        return self._session

    def url(self, path: str, params: Mapping[str, str] | None = None) -> yarl.URL:
        """The request URL, every query value percent-encoded (`|` → `%7C`, `/` → `%2F`)."""
        target = f"{self._base}/{path.lstrip('/')}"
        if params:
            target += "?" + "&".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items()
            )
        return yarl.URL(target, encoded=True)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        label: str | None = None,
        row_stats: RequestStats | None = None,
    ) -> FhirResponse:
        """One logical request with retries; `label` names it in errors and logs (no URL)."""
        url = self.url(path, params)
        payload = None if json_body is None else jsonio.dumps(json_body).encode()
        base = {"Accept": _ACCEPT}
        if payload is not None:
            base["Content-Type"] = "application/json"
        sinks = (self.stats,) if row_stats is None else (self.stats, row_stats)
        state = _Try(label or f"{method} {path}", self._clock(), sinks)
        while True:
            # The credential itself is added once the request's turn has come
            # (`_paced_exchange`); this generation stands for a request sent inside a bundle.
            _, state.generation = await self._auth.headers(self.session)
            sent = {**base, **(headers or {})}
            status, resp_headers, body, free = await self._exchange(
                method, url, payload, sent, state
            )
            for sink in state.sinks:
                sink.count(status, retry=state.attempts > 0 or state.free > 0)
            state.attempts += 0 if free else 1
            state.free += 1 if free else 0
            verdict = classify(status, resp_headers, body, now=self._wall_clock)
            if verdict.kind is Kind.OK and status is not None:
                return _response(status, resp_headers, body)
            await self._handlers[verdict.kind](verdict, state)

    async def _exchange(
        self,
        method: str,
        url: yarl.URL,
        payload: bytes | None,
        headers: Mapping[str, str],
        state: _Try,
    ) -> tuple[int | None, Mapping[str, str], bytes, bool]:
        """One exchange through the breaker; last value True = free (the server was down)."""
        if self._breaker is None:
            return (*await self._send(method, url, payload, headers, state), False)
        ticket = await self._breaker.admit()
        state.started += ticket.waited_s  # waiting out an outage is not retrying
        status: int | None = None
        try:
            status, resp_headers, body = await self._send(method, url, payload, headers, state)
        finally:
            self._breaker.record(ticket, status)
        free = ticket.probe or self._breaker.state != "closed"
        return status, resp_headers, body, free

    def enable_batching(self, capability: Any) -> bool:
        """Send GETs and PUTs in `batch` Bundles from now on, if the server lists `batch` in its
        CapabilityStatement and `batch_size` allows it (see `bundler.py`)."""
        if self.settings.batch_size < 2 or not supports_batch(capability):
            return False
        self._bundler = Bundler(self._post_bundle, size=self.settings.batch_size)
        log.info("FHIR server supports batch: up to %d requests a bundle", self.settings.batch_size)
        return True

    @property
    def bundler(self) -> Bundler | None:
        return self._bundler

    def useful_rows(self) -> int | None:
        """Rows worth having in progress at once (None: as many as there are workers). Bundles
        fill from many rows at once, so batching keeps every worker busy."""
        if self._bundler is not None:
            return None
        return self._limiter.useful_in_flight()

    async def _send(
        self,
        method: str,
        url: yarl.URL,
        payload: bytes | None,
        headers: Mapping[str, str],
        state: _Try,
    ) -> tuple[int | None, Mapping[str, str], bytes]:
        """One exchange: inside the next bundle when batching, else on its own."""
        if self._bundler is not None and method in BATCHABLE_METHODS:
            relative = str(url)[len(self._base) + 1 :]
            return await self._bundler.exchange(method, relative, payload, headers)
        return await self._paced_exchange(method, url, payload, headers, state)

    async def _post_bundle(self, payload: bytes) -> tuple[int | None, Mapping[str, str], bytes]:
        headers = {"Accept": _ACCEPT, "Content-Type": "application/fhir+json"}
        return await self._paced_exchange("POST", yarl.URL(self._base + "/"), payload, headers)

    async def _paced_exchange(
        self,
        method: str,
        url: yarl.URL,
        payload: bytes | None,
        headers: Mapping[str, str],
        state: _Try | None = None,
    ) -> tuple[int | None, Mapping[str, str], bytes]:
        await self._limiter.acquire()
        started = self._clock()
        status: int | None = None
        self._metrics.in_flight(1)
        try:
            # The credential is read after waiting for our turn (pacing, a pause, a full
            # bundle): a short-lived token can expire while a request waits.
            creds, generation = await self._auth.headers(self.session)
            if state is not None:
                state.generation = generation
            headers = {**headers, **creds}
            async with self.session.request(method, url, data=payload, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                return status, resp.headers, body
        except aiohttp.ClientResponseError as exc:
            # Only from sessions made with raise_for_status; str(exc) holds the full URL.
            status = exc.status
            return status, dict(exc.headers or {}), b""
        except TimeoutError:
            timeout = self.settings.request_timeout_s
            return None, {}, f"no answer within {timeout:g} s (TimeoutError)".encode()
        except aiohttp.ClientError as exc:
            return None, {}, f"{type(exc).__name__} {exc}".strip().encode()
        finally:
            latency = self._clock() - started
            self._limiter.release(status=status, latency_s=latency)
            self._metrics.in_flight(-1)
            self._metrics.fhir_request(method, status, latency)

    async def _on_retry(self, verdict: Verdict, state: _Try) -> None:
        cap = self.settings.retry_max_wait_s
        if verdict.retry_after is not None:
            delay = min(verdict.retry_after, cap)
        else:
            delay = self._rng.uniform(0.0, min(cap, BACKOFF_BASE_S * 2 ** (state.attempts - 1)))
        spent = self._clock() - state.started
        what = _status_text(verdict.status)
        tries = f"{state.attempts} attempt{'s' if state.attempts != 1 else ''}"
        if state.attempts >= self.settings.max_attempts:
            raise _retryable(f"{state.label}: {what} after {tries}", verdict)
        if spent + delay > self.settings.retry_total_s:
            raise _retryable(
                f"{state.label}: {what} after {tries} "
                f"(retry budget of {self.settings.retry_total_s:g} s spent)",
                verdict,
            )
        if verdict.status == 429 and verdict.retry_after is not None:
            self._limiter.pause_all(delay)
        self._retry_log.warning(
            "FHIR %s: %s (attempt %d), retrying in %.1f s",
            state.label,
            what,
            state.attempts + state.free,  # free: sent while the breaker was open (not counted)
            delay,
        )
        self._metrics.retry()
        await self._sleeper(delay)

    async def _on_reauth(self, verdict: Verdict, state: _Try) -> None:
        # Refused again with a credential that is still the current, unexpired one: the server
        # does not accept it (wrong key, revoked client). A token that merely expired on the
        # way (a long wait, a clock ahead of ours) is refreshed again, a bounded number of times.
        refused_fresh = state.reauths > 0 and self._auth.is_current(state.generation)
        if refused_fresh or state.reauths >= MAX_REAUTHS:
            raise FhirUnavailable(
                f"FHIR server refuses our credentials: {state.label} answered {verdict.status} "
                f"again after re-authentication ({verdict.detail or 'no detail'})"
            )
        state.reauths += 1
        log.warning("FHIR %s: %s, re-authenticating", state.label, verdict.status)
        await self._auth.refresh(self.session, state.generation)

    async def _on_conflict(self, verdict: Verdict, state: _Try) -> None:
        raise VersionConflict(
            f"{state.label}: version conflict {verdict.status}",
            status=verdict.status,
            detail=verdict.detail,
        )

    async def _on_reject(self, verdict: Verdict, state: _Try) -> None:
        raise RejectedError(
            f"{state.label} rejected: {verdict.status} {verdict.detail}".rstrip(),
            status=verdict.status,
            detail=verdict.detail,
        )

    async def preflight(self) -> None:
        """Fail fast before any row: the server answers and accepts our credentials.

        `GET metadata`, then one authenticated search for an identifier nobody has. Unreachable,
        401/403 (after one re-authentication) or a search answering 404 → `FhirUnavailable`.
        """
        probe = {"identifier": f"{self.settings.nik_system}|{PROBE_VALUE}"}
        for path, params, label in (
            ("metadata", None, "GET metadata"),
            ("Patient", probe, "GET search (preflight)"),
        ):
            try:
                resp = await self.request("GET", path, params=params, label=label)
                if path == "metadata":
                    self.capability = resp.json
            except RetryableError as exc:
                raise FhirUnavailable(f"FHIR server unreachable: {exc}") from None
            except RejectedError as exc:
                if path == "Patient" and exc.status in (404, 405):
                    raise FhirUnavailable(
                        f"FHIR base URL looks wrong: {exc} (PHONESYNC_FHIR_BASE_URL)"
                    ) from None
                log.warning("FHIR preflight: %s (continuing)", exc)


def _status_text(status: int | None) -> str:
    return "network error" if status is None else str(status)


def _retryable(message: str, verdict: Verdict) -> RetryableError:
    if verdict.detail:
        message = f"{message} ({verdict.detail})"
    return RetryableError(
        message, status=verdict.status, detail=verdict.detail, retry_after=verdict.retry_after
    )


def _response(status: int, headers: Mapping[str, str], body: bytes) -> FhirResponse:
    if isinstance(body, ParsedBody):  # a batch-response entry, parsed with its bundle
        return FhirResponse(status, headers, body.json, headers.get("ETag"))
    try:
        parsed = jsonio.loads(body) if body.strip() else None
    except ValueError:
        parsed = None
    return FhirResponse(status, headers, parsed, headers.get("ETag"))
