"""A circuit breaker for the FHIR server: pause and probe while it is down, never burn retries.

    closed ──(error ratio ≥ threshold over the last `window` exchanges)──▶ open
    open ──(cool-down over)──▶ half-open: exactly one request (the probe) goes through
    half-open ──probe answered──▶ closed        half-open ──probe failed──▶ open (longer cool-down)

Errors are 500/502/503/504 and network errors/timeouts; a 429 or a 4xx is the server alive and
talking. While the breaker is not closed every other request waits in `admit()` (it costs no
attempt and no retry budget: see `FhirHttp`). If the server stays down for `deadline_s` from the
moment the breaker first opened, every waiting and later `admit()` raises `FhirUnavailable`: the
run aborts and the orchestrator records the rows not done as `failed` ("not attempted", or
"… while this row was in flight" for rows a request had been sent for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from phonesync.errors import FhirUnavailable
from phonesync.settings import Settings

log = logging.getLogger(__name__)

ERROR_STATUSES = frozenset({500, 502, 503, 504})


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted exchange: `probe` when it tests a server believed down."""

    probe: bool = False
    waited_s: float = 0.0


class CircuitBreaker:
    """Error ratio over a sliding window of exchanges → open, probe one at a time, close."""

    def __init__(
        self,
        *,
        window: int = 50,
        min_calls: int = 20,
        error_ratio: float = 0.5,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 30.0,
        deadline_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = error
        self._min_calls = min(min_calls, window)
        self._ratio, self._deadline_s = error_ratio, deadline_s
        self._cooldown0, self._max_cooldown = cooldown_s, max_cooldown_s
        self._cooldown = cooldown_s
        self._clock, self._sleeper = clock, sleeper
        self.state = State.CLOSED
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._probing = False
        self._probe_done = asyncio.Event()
        self._gave_up: str | None = None
        self.opened = 0  # times the breaker opened (metrics)

    async def admit(self) -> Ticket:
        """Wait until a request may go to the server; `FhirUnavailable` past the deadline."""
        started = self._clock()
        while True:
            self._check_deadline()
            if self.state is State.CLOSED:
                return Ticket(waited_s=self._clock() - started)
            now = self._clock()
            if not self._probing and now >= self._retry_at:
                self.state = State.HALF_OPEN
                self._probing = True
                self._probe_done = asyncio.Event()
                return Ticket(probe=True, waited_s=now - started)
            await self._wait(now)

    async def _wait(self, now: float) -> None:
        if self._probing:
            await self._probe_done.wait()
            return
        assert self._down_since is not None  # noqa: S101 - set whenever the breaker opens
        until = min(self._retry_at, self._down_since + self._deadline_s)
        await self._sleeper(max(until - now, 0.0))

    def record(self, ticket: Ticket, status: int | None) -> None:
        """The exchange admitted with `ticket` ended with `status` (None: network error)."""
        error = status is None or status in ERROR_STATUSES
        if ticket.probe:
            self._end_probe(error)
            return
        if self.state is not State.CLOSED:
            return  # an answer to a request sent before the breaker opened
        self._outcomes.append(error)
        errors = sum(self._outcomes)
        if len(self._outcomes) >= self._min_calls and errors >= self._ratio * len(self._outcomes):
            self._open(f"{errors} errors in the last {len(self._outcomes)} requests")

    def _end_probe(self, error: bool) -> None:
        self._probing = False
        self._probe_done.set()
        if error:
            self._cooldown = min(self._cooldown * 2, self._max_cooldown)
            self._open("the probe failed")
            return
        down = self._clock() - (self._down_since or self._clock())
        log.warning("FHIR server answers again after %.0f s: circuit breaker closed", down)
        self.state = State.CLOSED
        self._outcomes.clear()
        self._cooldown = self._cooldown0
        self._down_since = None

    def _open(self, why: str) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            self.opened += 1
            log.warning(
                "FHIR server looks down (%s): circuit breaker open, probing every %.0f–%.0f s, "
                "giving up after %.0f s",
                why,
                self._cooldown,
                self._max_cooldown,
                self._deadline_s,
            )
        self.state = State.OPEN
        self._retry_at = now + self._cooldown

    def _check_deadline(self) -> None:
        if self._gave_up is None and self._down_since is not None:
            down = self._clock() - self._down_since
            if down >= self._deadline_s and self.state is not State.CLOSED:
                self._gave_up = (
                    f"FHIR server unavailable for {down:.0f} s (circuit breaker open longer "
                    f"than outage_deadline_s={self._deadline_s:g}); run aborted"
                )
        if self._gave_up is not None:
            self._probe_done.set()  # wake the waiters so that they see it too
            raise FhirUnavailable(self._gave_up)

    @property
    def down_for(self) -> float:
        """Seconds since the breaker opened (0 when closed)."""
        return 0.0 if self._down_since is None else self._clock() - self._down_since


def breaker_from_settings(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> CircuitBreaker:
    """The breaker as configured (`breaker_window`, `breaker_error_ratio`, `outage_deadline_s`)."""
    return CircuitBreaker(
        window=settings.breaker_window,
        min_calls=max(5, settings.breaker_window // 2),
        error_ratio=settings.breaker_error_ratio,
        deadline_s=settings.outage_deadline_s,
        clock=clock,
        sleeper=sleeper,
    )
