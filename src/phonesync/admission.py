"""How many rows a run has in progress at once: as many as the FHIR pacing can use, no more.

A run has `PHONESYNC_CONCURRENCY` workers, each taking one row at a time. When the server's rate
is what holds the run back, most of them would only wait for their turns: with 512 rows in
progress at 50 requests a second, every row waits about half a minute between its search, its
read and its write, so at any moment hundreds of rows are half done. A `kill -9` then leaves all
of them to be read again, a stop leaves all of them "may have landed", and each row's own time
from search to write (the window in which someone else can change the record) is long.

`RowGate` lets a worker start a row only while fewer than `wanted()` rows are in progress;
`wanted` comes from the pacing (`Limiter.useful_in_flight`: every slot filled, and while paced
the rows that keep the rate busy). None means no limit beyond the workers. The adaptive limiter
keeps its concurrency slots in a `RowGate` too (`wanted` = its limit of the moment).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class RowGate:
    """At most `wanted()` rows in progress (at least one: a run always moves)."""

    def __init__(self, wanted: Callable[[], int | None]) -> None:
        self._wanted = wanted
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def active(self) -> int:
        return self._active

    def _room(self) -> bool:
        wanted = self._wanted()
        return wanted is None or self._active < max(1, wanted)

    async def enter(self) -> None:
        """Wait until one more row may start."""
        if not self._waiters and self._room():
            self._active += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # let in just as we were cancelled: pass the place on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def leave(self) -> None:
        """A row is done (or was never started after all): let the next ones in."""
        self._active -= 1
        self.wake()

    def wake(self) -> None:
        """Let waiting workers in while there is room (also when `wanted` grew)."""
        while self._waiters and self._room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._active += 1
