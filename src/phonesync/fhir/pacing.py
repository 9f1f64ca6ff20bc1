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
import itertools
import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from phonesync.admission import RowGate
from phonesync.fhir.background import BackgroundFaults


class Limiter(Protocol):
    """Concurrency and rate control around each FHIR exchange."""

    async def acquire(self) -> None:
        """Wait until one more request may start."""

    def release(self, *, status: int | None, latency_s: float) -> None:
        """One exchange ended (`status=None`: network error)."""

    def pause_all(self, seconds: float) -> None:
        """Let no request start for `seconds` from now (the server asked us to back off)."""

    def useful_in_flight(self) -> int | None:
        """How many rows (one request at a time each) are worth having in progress now; None:
        no opinion (as many as there are workers)."""


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

    def useful_in_flight(self) -> int | None:
        return None  # its concurrency is the number of workers


#: Statuses that mean "too fast" (the rate) and "too much at once" (the concurrency).
RATE_REFUSALS = frozenset({429})
LOAD_REFUSALS = frozenset({503, 504})


@dataclass(frozen=True, slots=True)
class PacingSnapshot:
    """What the adaptive limiter currently allows, for metrics and logs."""

    limit: int
    in_flight: int
    rate: float | None


class AdaptiveLimiter:
    """Finds the server's capacity by itself: a latency-gradient concurrency limit + AIMD rate.

    Concurrency (between `floor` and `ceiling`): after every window of successful exchanges
    (about one round trip's worth) the window's median latency is compared with a slow moving
    average of earlier windows. Flat latency → grow (double while nothing was ever refused,
    then + √limit); rising latency → shrink by the gradient (at most halve). Overload signals —
    503/504 or a network error/timeout, `LOAD_DROPS` of them among the last `WINDOW` exchanges —
    cut the limit by `LOAD_CUT`. Each load cut is tested (`BackgroundFaults`): when the faults do
    not fall after it, they are the server's background, the limit goes back, and later cuts need
    more faults than that background brings.

    Rate: 429s (`RATE_DROPS` of them among the last `WINDOW`, or one carrying Retry-After via
    `pause_all`) cut the pacing rate to `RATE_CUT` × the rate requests were starting at over
    the last second. A 429 with too few starts to measure a rate (a start-up burst) cuts
    nothing: it says nothing about the average rate the server allows. The rate then grows
    back with time, slowly around the rate that was refused, fast away from it (see
    `_grow_rate`); refused again about where it was refused before, the cut is only `NEAR_CUT`.
    Requests always start evenly spaced (never a burst), never faster than `max_rate`: a
    request with a slot queues for its turn, handed out by one ticker at the rate of the moment
    (`_wait_for_turn`).

    A cut applies once per round: refusals of requests that started before the last cut (plus
    one typical round trip) are the same congestion and are not counted again.
    """

    WINDOW = 50
    RATE_DROPS = 2
    LOAD_DROPS = 3
    RATE_CUT = 0.85
    NEAR_CUT = 0.93
    NEAR_BELOW = 0.8
    LOAD_CUT = 0.7
    TOLERANCE = 2.0
    #: Rate growth per second: far from the refused rate, and near it (within -10 %/+10 %).
    GROW_FAR = 0.5
    GROWTH_STEP_S = 0.05
    #: Pacing stops once requests ran this many times the refused rate without a 429.
    FORGET = 4.0
    GROW_NEAR = 0.01
    #: Near the refused rate, growth speeds up with the time since the last cut: + `GROW_NEAR`
    #: per `NEAR_SPEED_UP_S` without a refusal (after a near cut, back at the refused rate
    #: in ~6 s instead of ~12 s; a limit learned low during the climb is passed sooner).
    NEAR_SPEED_UP_S = 3.0
    #: A start rate is measured over the last `MEASURE_S`, from at least `MIN_STARTS` starts
    #: spanning `MIN_SPAN_S`.
    MEASURE_S = 1.0
    MIN_STARTS = 10
    MIN_SPAN_S = 0.25
    #: Rows in progress while paced, per request the rate keeps in flight (the typical latency
    #: is a median: the slow tail holds rows longer), plus rows waiting (`useful_in_flight`).
    ROWS_PER_PACED_REQUEST = 3.0
    SPARE_ROWS = 16
    #: The typical latency assumed by a start-up pace set before any answer came back.
    STARTUP_LATENCY_GUESS_S = 0.1
    #: Catching up after a late tick, starts are still this share of an interval apart. Paced
    #: at 0.9 of a spike-arrest limit (45 of 50/s), 0.9 interval is one slot: any closer, the
    #: second start of a catch-up lands in its predecessor's slot and is refused.
    CATCH_UP_GAP = 0.97

    def __init__(
        self,
        ceiling: int,
        floor: int = 1,
        max_rate: float | None = None,
        *,
        initial: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError("concurrency must be at least 1 and min_concurrency at most that")
        if max_rate is not None and max_rate <= 0:
            raise ValueError("max_rate must be positive")
        self._floor, self._ceiling, self._max_rate = floor, ceiling, max_rate
        self._limit = float(min(ceiling, max(floor, initial or 4)))
        self._clock, self._sleeper = clock, sleeper
        # the concurrency slots: first come, first served, as many as the limit of the moment
        self._slots = RowGate(lambda: int(self._limit))
        self._next_start = float("-inf")
        self._paused_until = float("-inf")
        self._queue: deque[asyncio.Future[None]] = deque()  # slots waiting for their turn
        self._ticker: asyncio.Future[None] | None = None
        self._starts: deque[float] = deque(maxlen=256)
        self._accepted: deque[float] = deque(maxlen=256)  # when answers other than 429 came
        self._rate: float | None = None  # learned from 429s; None = not limited
        self._refused_rate: float | None = None
        self._refused_paced = False  # refused while paced: a limit worth creeping up to
        self._provisional = False  # the rate is a start-up guess (`_provisional_rate`)
        self._recent: deque[str] = deque(maxlen=self.WINDOW)  # "ok" | "rate" | "load"
        self._background = BackgroundFaults(self.WINDOW, self.LOAD_DROPS)
        self._samples: list[float] = []
        self._long: float | None = None
        self._slow_start = True
        self._last_cut = {"rate": float("-inf"), "load": float("-inf")}
        self._last_refused_start = float("-inf")
        self._last_growth = float("-inf")

    # --- the Limiter protocol -----------------------------------------------------------------
    async def acquire(self) -> None:
        await self._slots.enter()
        try:
            await self._wait_for_turn()
        except BaseException:
            self._slots.leave()
            raise

    def release(self, *, status: int | None, latency_s: float) -> None:
        self._slots.leave()
        now = self._clock()
        started = now - latency_s
        kind = _signal(status)
        self._recent.append(kind)
        if kind != "rate":
            self._accepted.append(now)
        if kind == "ok":
            self._grow_rate(now)
            self._on_success(latency_s)
        if kind == "rate":
            self._last_refused_start = started
        else:
            back_to = self._background.answer(started, kind == "load")
            if back_to is not None:  # the last load cut did not help: undo it
                self._limit = min(float(self._ceiling), max(self._limit, back_to))
                self._slots.wake()
        if kind in self._last_cut and started >= self._new_round(kind):  # not an older round
            drops = sum(1 for k in self._recent if k == kind)
            needed = self.RATE_DROPS if kind == "rate" else self._background.drops_needed()
            if drops >= needed:
                self._cut(kind, now)

    def pause_all(self, seconds: float) -> None:
        if seconds > 0:
            now = self._clock()
            self._paused_until = max(self._paused_until, now + seconds)
            if self._last_refused_start >= self._new_round("rate"):  # a 429 of a new round
                self._cut("rate", now)

    def snapshot(self) -> PacingSnapshot:
        return PacingSnapshot(int(self._limit), self._slots.active, self._effective_rate())

    def useful_in_flight(self) -> int:
        """Rows worth having in progress: enough to fill every slot, and, while paced, enough to
        keep `ROWS_PER_PACED_REQUEST` × the requests the rate keeps in flight (Little's law:
        rate × typical latency), plus `SPARE_ROWS` waiting for their turn.

        A paced run with 512 rows in progress had each row wait ~3 × 512 ÷ rate seconds for
        its turns: every row was half done, and a killed run left 512 rows to read again."""
        limit = int(self._limit)
        by_slots = limit + max(self.SPARE_ROWS, limit // 4)
        rate, typical = self._effective_rate(), self._long
        if rate is None or typical is None:
            return by_slots
        by_rate = math.ceil(self.ROWS_PER_PACED_REQUEST * rate * typical) + self.SPARE_ROWS
        return min(by_slots, by_rate)

    # --- slots and pacing -------------------------------------------------------------------
    def _effective_rate(self) -> float | None:
        rate, most = self._rate, self._max_rate  # on every start: no list built
        if rate is None:
            return most
        return rate if most is None else min(rate, most)

    async def _wait_for_turn(self) -> None:
        """Start now if nobody is queued and the pace allows it, else queue for the ticker.

        Turns are handed out one at a time, when they come (not reserved ahead): a rate cut or a
        pause applies at once to every request still waiting, and requests whose timers fired
        together after a stall of the event loop still leave one by one."""
        now = self._clock()
        if not self._queue and now >= self._next_start and now >= self._paused_until:
            self._started(now, idle=True)
            return
        turn = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())
        try:
            await turn
        except BaseException:
            if turn in self._queue:
                self._queue.remove(turn)
            raise

    async def _tick(self) -> None:
        """Hand the queued requests their turns, evenly spaced at the current rate."""
        while self._queue:
            now = self._clock()
            due = max(self._next_start, self._paused_until)
            if due > now:
                await self._sleeper(due - now)
                continue  # the rate or a pause may have changed while we slept
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                self._started(now)

    def _started(self, now: float, *, idle: bool = False) -> None:
        """A request starts now. The next may start one interval after this turn was due (a
        ticker that woke a little late catches up), but never less than `CATCH_UP_GAP` ×
        interval after this one: never two at once after a stall (spike arrest refuses the
        second). After an idle spell there is nothing to catch up: one whole interval."""
        rate = self._effective_rate()
        interval = 1.0 / rate if rate else 0.0
        catch_up = float("-inf") if idle else self._next_start + interval
        self._next_start = max(catch_up, now + (1.0 if idle else self.CATCH_UP_GAP) * interval)
        self._starts.append(now)

    def _measured_rate(self, now: float) -> float | None:
        """Requests started per second over the last second (None when too few to tell).

        One second, not longer: idle time before the rows start (the sheet read) must not
        dilute it."""
        recent = [t for t in self._starts if t > now - self.MEASURE_S]
        span = (recent[-1] - recent[0]) if len(recent) >= 2 else 0.0
        if len(recent) < self.MIN_STARTS or span < self.MIN_SPAN_S:
            return None
        return (len(recent) - 1) / span

    def _new_round(self, kind: str) -> float:
        """Refusals of requests started before this belong to the last cut's round: one typical
        round trip after it (the requests sent at the old rate are still being answered)."""
        typical = self._long or (statistics.median(self._samples) if self._samples else 0.1)
        return self._last_cut[kind] + typical

    # --- learning -----------------------------------------------------------------------------
    def _cut(self, kind: str, now: float) -> None:
        if kind == "load":
            self._last_cut[kind] = now
            self._recent.clear()
            self._slow_start = False
            self._background.cut(now, self._limit)
            self._limit = max(float(self._floor), self._limit * self.LOAD_CUT)
            return
        # A 429 says "too fast", not "too much at once": concurrency keeps its slow start.
        # The rate the server let through is the best estimate of its limit; the rate we were
        # starting at is an upper bound (far above it in a burst, so never the only one).
        current = self._paced_estimate(now) or self._unpaced_estimate(now)
        if current is None:
            self._provisional_rate(now)
            return
        self._last_cut[kind] = now
        self._recent.clear()
        # Refused again, paced, about where we were refused before: the limit is known and we
        # only crept over it, so a small step back is enough (a deep one wastes the allowance).
        # "About" reaches down to `NEAR_BELOW` × the known limit: a stall that bunched requests
        # is refused below the limit, and again in the next round right after the near cut; a
        # second cut of 0.85 × there (E3: to 0.73 × the limit) took 15 s to climb back from.
        # A limit that really dropped is still followed, one near cut per round.
        known = self._refused_rate
        again = (
            self._refused_paced
            and known is not None
            and self._rate is not None
            and self.NEAR_BELOW * known <= current <= 1.1 * known
        )
        # Refused while unpaced, the requests came in bursts: that says how bursty we were, not
        # which average rate the server allows, so there is no known limit to creep up to yet.
        # Nor while paced at a start-up guess: refused during the climb, the rate let through
        # says where the climb was, not where the limit is (creeping up from there at +1 %/s
        # took E3 twenty seconds to reach 90 % of its limit).
        self._refused_paced = self._rate is not None and not self._provisional
        self._provisional = False
        self._refused_rate = current
        self._rate = max(0.5, current * (self.NEAR_CUT if again else self.RATE_CUT))
        self._last_growth = now

    def _paced_estimate(self, now: float) -> float | None:
        """Refused while paced (not at a start-up guess): the rate let through is the pace (or
        the start rate, if requests started slower) × the share of the last `WINDOW` answers
        that were not refused (since the last cut; answers not seen yet count as let through).

        Not the answers of the last second: they come back as unevenly as latency varies (a
        slow spell bunches them), so one second of them read up to 20 % under a pace the
        server let through; that turned E3's small slips into deep cuts and 20 s of creeping
        back."""
        pace = self._effective_rate()
        if pace is None or self._provisional:
            return None
        # The typical spacing of the last second's starts, not their count: a stall of a few
        # tenths of a second is one long gap, which must not read as a start rate far below
        # the pace; requests that started slower than the pace (it was not what held them)
        # space out every gap.
        recent = [t for t in self._starts if t > now - self.MEASURE_S]
        gaps = sorted(b - a for a, b in itertools.pairwise(recent))
        if len(recent) >= self.MIN_STARTS and gaps[len(gaps) // 2] > 0:
            pace = min(pace, 1.0 / gaps[len(gaps) // 2])
        refused = sum(1 for kind in self._recent if kind == "rate")
        # over a whole window: right after a cut (the window is cleared), two refusals must not
        # read as "nothing let through"
        return pace * (1.0 - refused / self.WINDOW)

    def _unpaced_estimate(self, now: float) -> float | None:
        """Refused while unpaced or at a guess: the lower of the rate requests started at and
        the rate answers other than 429 came at over the last second."""
        started = self._measured_rate(now) or self._effective_rate()
        accepted = _rate_of(self._accepted, now, self.MEASURE_S, self.MIN_STARTS)
        return min(started, accepted) if started and accepted else started

    def _provisional_rate(self, now: float) -> None:
        """A 429 with too few starts to measure a rate (a start-up burst): pace at what the
        current concurrency sustains anyway (Little's law: limit ÷ typical latency).

        That costs no throughput, but stops a cascade: an instant refusal frees its slot at
        once, and without spacing the next waiting request would hit the same refusal. Refused
        before any answer came back (E3: the first requests, sent together, refused in their
        first millisecond, then their retries), the latency is a guess too:
        `STARTUP_LATENCY_GUESS_S`."""
        typical = self._long or (statistics.median(self._samples) if self._samples else None)
        self._rate = self._limit / (typical or self.STARTUP_LATENCY_GUESS_S)
        self._refused_rate = None  # a guess: no limit to creep up to, none to forget
        self._refused_paced = False
        self._provisional = True
        self._last_growth = self._last_cut["rate"] = now  # the burst's other 429s: same round

    def _on_success(self, latency_s: float) -> None:
        self._samples.append(latency_s)
        if len(self._samples) < max(10, int(self._limit)):
            return
        short = statistics.median(self._samples)
        self._samples = []
        long = self._long = short if self._long is None else 0.9 * self._long + 0.1 * short
        gradient = max(0.5, min(1.0, self.TOLERANCE * long / short)) if short > 0 else 1.0
        if gradient < 1.0:
            self._slow_start = False
            self._limit = max(float(self._floor), self._limit * gradient)
        elif self._background.testing:
            pass  # a load cut is under test: its answers must come from the lower limit
        elif self._slow_start:
            self._limit = min(float(self._ceiling), self._limit * 2)
        else:
            self._limit = min(float(self._ceiling), self._limit + math.sqrt(self._limit))
        self._slots.wake()

    def _grow_rate(self, now: float) -> None:
        """Raise the learned rate with time (at most 1 s counted), while it is what holds us.

        Growth is per second, not per answer: counting answers would stall it exactly when the
        rate is low. Below 90 % of the refused rate it grows by `GROW_FAR`/s, around it by
        `GROW_NEAR`/s, sped up the longer nothing is refused (`NEAR_SPEED_UP_S`), past 110 %
        by `GROW_FAR`/s again (the limit moved). It does not grow
        while requests start well below it (too few in flight to use it: nothing is learned),
        so it is only forgotten after requests really started far above the refused rate
        (`FORGET` ×): a pacing rate above what we use costs nothing, going unpaced too early
        brings back the bursts that were refused."""
        if self._rate is None:
            return
        if now - self._last_growth < self.GROWTH_STEP_S:
            return  # growth is per time: no need to look at every answer
        elapsed = min(1.0, now - self._last_growth)
        self._last_growth = now
        started = sum(1 for t in self._starts if t > now - self.MEASURE_S)
        if started < 0.7 * self._rate * self.MEASURE_S - 1:
            return  # well below the rate: it is not what holds us back
        refused = self._refused_rate
        near = (
            refused is not None
            and self._refused_paced
            and 0.9 * refused <= self._rate <= 1.1 * refused
        )
        if near:
            quiet = now - self._last_cut["rate"]  # the longer nothing is refused, the faster
            growth = self.GROW_NEAR * (1.0 + quiet / self.NEAR_SPEED_UP_S)
        else:
            growth = self.GROW_FAR
        self._rate *= 1.0 + growth * elapsed
        if refused is not None and self._rate > self.FORGET * refused:
            self._rate = self._refused_rate = None  # the limit has gone: stop pacing


def _rate_of(times: deque[float], now: float, window_s: float, least: int) -> float | None:
    """Events per second over the last `window_s` (None with fewer than `least` of them)."""
    count = 0
    for t in reversed(times):
        if t <= now - window_s:
            break
        count += 1
    return count / window_s if count >= least else None


def _signal(status: int | None) -> str:
    """`load` (too much at once), `rate` (too fast), `ok` (a latency sample) or `other`."""
    if status is None or status in LOAD_REFUSALS:
        return "load"
    if status in RATE_REFUSALS:
        return "rate"
    return "other" if status >= 500 else "ok"


class _PacingSettings(Protocol):
    @property
    def pacing(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def min_concurrency(self) -> int: ...
    @property
    def max_rate(self) -> float | None: ...


def limiter_from_settings(
    settings: _PacingSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleeper: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> FixedLimiter | AdaptiveLimiter:
    """`pacing=adaptive` (default) or `fixed`; `concurrency` is the ceiling of either."""
    if settings.pacing == "fixed":
        return FixedLimiter(settings.concurrency, settings.max_rate, clock=clock, sleeper=sleeper)
    return AdaptiveLimiter(
        settings.concurrency,
        min(settings.min_concurrency, settings.concurrency),
        settings.max_rate,
        clock=clock,
        sleeper=sleeper,
    )
