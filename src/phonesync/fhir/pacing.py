"""How many FHIR requests may be in flight, and how fast they may start.

`Limiter` is the seam: `FhirHttp` calls `acquire()` before every exchange and `release()` after
it (with the status and latency, so that an adaptive limiter can learn from them), and
`pause_all()` when the server asks everyone to wait (a 429's Retry-After).

`FixedLimiter` is the static implementation: a semaphore for concurrency plus an even pacer.
The national gateway behaves like Apigee spike arrest, which spreads the allowed rate evenly:
a burst is refused even below the average rate, so requests start at most one every
`1 / max_rate` seconds, never several at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class Limiter(Protocol):
    """Concurrency and rate control around each FHIR exchange."""

    async def acquire(self) -> None:
        """Wait until one more request may start."""

    def release(self, *, status: int | None, latency_s: float) -> None:
        """One exchange ended (`status=None`: network error)."""

    def pause_all(self, seconds: float) -> None:
        """Let no request start for `seconds` from now (the server asked us to back off)."""


class FixedLimiter:
    """At most `concurrency` requests in flight, started no faster than `max_rate` per second."""

    def __init__(
        self,
        concurrency: int,
        max_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_rate is not None and max_rate <= 0:
            raise ValueError("max_rate must be positive")
        self._slots = asyncio.Semaphore(concurrency)
        self._interval = 1.0 / max_rate if max_rate else 0.0
        self._clock = clock
        self._sleeper = sleeper
        self._next_start = float("-inf")  # earliest start of the next request (pacing)
        self._paused_until = float("-inf")

    async def acquire(self) -> None:
        await self._slots.acquire()
        try:
            await self._wait_for_turn()
        except BaseException:
            self._slots.release()
            raise

    async def _wait_for_turn(self) -> None:
        # Reserve a start time first, then sleep until it: concurrent waiters get evenly spaced
        # slots instead of all waking at once. One pass only: a pause announced while we sleep
        # applies to the requests that have not reserved yet (never a busy loop on a fake clock).
        now = self._clock()
        start = max(now, self._next_start, self._paused_until)
        self._next_start = start + self._interval
        if start > now:
            await self._sleeper(start - now)

    def release(self, *, status: int | None, latency_s: float) -> None:
        del status, latency_s  # a fixed limiter learns nothing; an adaptive one will
        self._slots.release()

    def pause_all(self, seconds: float) -> None:
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
