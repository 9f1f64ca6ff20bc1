"""AdaptiveLimiter: grows while latency is flat, cuts on refusals and rising latency, paces."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import pytest

from phonesync.fhir.pacing import AdaptiveLimiter, FixedLimiter, limiter_from_settings

from .conftest import FakeTime


def limiter(time: FakeTime, ceiling: int = 64, floor: int = 1, **kw: object) -> AdaptiveLimiter:
    return AdaptiveLimiter(ceiling, floor, clock=time.now, sleeper=time.sleep, **kw)  # type: ignore[arg-type]


async def exchange(
    lim: AdaptiveLimiter, time: FakeTime, status: int | None, latency: float
) -> None:
    """One request: acquire, `latency` seconds on the fake clock, release with `status`."""
    await lim.acquire()
    time.t += latency
    lim.release(status=status, latency_s=latency)


async def run(
    lim: AdaptiveLimiter, time: FakeTime, n: int, status: int | None, latency: float
) -> None:
    for _ in range(n):
        await exchange(lim, time, status, latency)


async def test_limit_grows_while_latency_is_flat(fake_time: FakeTime) -> None:
    """Flat latency, no refusals: the limit doubles per window up to the ceiling."""
    lim = limiter(fake_time, ceiling=64)
    assert lim.snapshot().limit == 4
    await run(lim, fake_time, 400, 200, 0.1)
    assert lim.snapshot().limit == 64


async def test_rising_latency_shrinks_the_limit(fake_time: FakeTime) -> None:
    """Latency four times the usual: the gradient cuts the limit (at most halving per window)."""
    lim = limiter(fake_time, ceiling=64, initial=32)
    await run(lim, fake_time, 200, 200, 0.1)
    grown = lim.snapshot().limit
    await run(lim, fake_time, 200, 200, 0.4)
    assert lim.snapshot().limit < grown


@pytest.mark.parametrize(
    ("status", "drops", "cut"),
    [
        (503, 3, True),  # load: three among the last 50
        (None, 3, True),  # network error / timeout
        (504, 2, False),  # two are the background noise of faults
        (500, 10, False),  # a plain server error says nothing about load
    ],
)
async def test_overload_signals_cut_concurrency(
    fake_time: FakeTime, status: int | None, drops: int, cut: bool
) -> None:
    """503/504/network errors cut the limit once there are enough of them; 500s do not."""
    lim = limiter(fake_time, ceiling=64, initial=40)
    await run(lim, fake_time, drops, status, 0.05)
    assert (lim.snapshot().limit < 40) is cut


async def test_refusals_of_one_round_cut_only_once(fake_time: FakeTime) -> None:
    """503s of requests that started before the cut are the same congestion: one cut only."""
    lim = limiter(fake_time, ceiling=64, initial=40)
    await asyncio.gather(*(lim.acquire() for _ in range(10)))
    fake_time.t += 1.0
    for _ in range(10):
        lim.release(status=503, latency_s=1.0)
    assert lim.snapshot().limit == 28  # 40 × 0.7, once


async def test_429s_cut_the_rate_to_below_what_was_refused(fake_time: FakeTime) -> None:
    """Two 429s while starting 100/s → requests are paced at 85/s, evenly."""
    lim = limiter(fake_time, ceiling=64, initial=64)
    for _ in range(100):
        await lim.acquire()
        fake_time.t += 0.01
        lim.release(status=200, latency_s=0.0)
    for _ in range(2):
        await exchange(lim, fake_time, 429, 0.0)
    rate = lim.snapshot().rate
    assert rate is not None
    assert rate == pytest.approx(85, rel=0.05)
    fake_time.waits.clear()
    await asyncio.gather(*(lim.acquire() for _ in range(4)))
    assert fake_time.waits == pytest.approx([1 / rate] * 3)  # one start every 1/rate s


async def test_retry_after_pauses_everyone_and_cuts_the_rate(fake_time: FakeTime) -> None:
    """pause_all(5) after a 429: no request starts for 5 s, and later ones are paced."""
    lim = limiter(fake_time, ceiling=8, initial=8)
    for _ in range(20):
        await lim.acquire()
        fake_time.t += 0.05
        lim.release(status=200, latency_s=0.0)
    await exchange(lim, fake_time, 429, 0.0)
    lim.pause_all(5.0)
    paused_at = fake_time.t
    await lim.acquire()
    assert fake_time.t == pytest.approx(paused_at + 5.0)
    assert lim.snapshot().rate is not None


async def test_rate_grows_back_and_is_forgotten(fake_time: FakeTime) -> None:
    """After a cut the rate grows again while nothing is refused, until pacing stops."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    for _ in range(50):
        await lim.acquire()
        fake_time.t += 0.02
        lim.release(status=200, latency_s=0.0)
    await run(lim, fake_time, 2, 429, 0.0)
    assert lim.snapshot().rate is not None
    await run(lim, fake_time, 5000, 200, 0.0)
    assert lim.snapshot().rate is None


async def test_a_start_up_burst_refused_before_any_answer_spaces_the_next_starts(
    fake_time: FakeTime,
) -> None:
    """429s for a burst of the first few requests, before any answer told a latency, say
    nothing about the average rate, but their retries must not leave in a burst again: they are
    spaced at a guess (limit ÷ `STARTUP_LATENCY_GUESS_S`), which is no known limit."""
    lim = limiter(fake_time, ceiling=16, initial=4)
    await asyncio.gather(*(lim.acquire() for _ in range(4)))
    for _ in range(3):
        lim.release(status=429, latency_s=0.0)
    rate = lim.snapshot().rate
    assert rate is not None
    assert rate == pytest.approx(4 / AdaptiveLimiter.STARTUP_LATENCY_GUESS_S)
    fake_time.waits.clear()
    await asyncio.gather(*(lim.acquire() for _ in range(3)))
    assert fake_time.waits == pytest.approx([1 / rate] * 2)  # the retries leave one by one
    for _ in range(4):
        lim.release(status=200, latency_s=0.001)
    start = fake_time.t
    while fake_time.t - start < 2.0:
        await exchange(lim, fake_time, 200, 0.001)
    grown = lim.snapshot().rate
    assert grown is None or grown > 2 * rate  # a guess: far growth, no creep near it


async def test_a_start_up_refusal_spaces_the_next_starts(fake_time: FakeTime) -> None:
    """After a 429 too early to measure, requests start spaced (limit ÷ latency), no cascade."""
    lim = limiter(fake_time, ceiling=16, initial=4)
    await run(lim, fake_time, 2, 200, 0.2)
    await run(lim, fake_time, 2, 429, 0.0)
    rate = lim.snapshot().rate
    assert rate == pytest.approx(4 / 0.2)
    fake_time.waits.clear()
    await asyncio.gather(*(lim.acquire() for _ in range(3)))
    assert fake_time.waits == pytest.approx([1 / rate] * 2)  # one start every 1/rate s


async def test_a_pause_holds_requests_that_reserved_a_slot_before_it(
    fake_time: FakeTime,
) -> None:
    """pause_all while a paced request sleeps: it waits for the pause's end, not its old slot."""

    async def sleeper(seconds: float) -> None:
        if not fake_time.waits:  # a 429 with Retry-After: 10 arrives while we sleep
            lim.pause_all(10.0)
        await fake_time.sleep(seconds)

    lim = AdaptiveLimiter(8, 1, 1.0, initial=8, clock=fake_time.now, sleeper=sleeper)
    await lim.acquire()
    await lim.acquire()  # reserved a start 1 s from now, then the pause came
    assert fake_time.t == pytest.approx(1000.0 + 10.0)


async def cut_at(lim: AdaptiveLimiter, time: FakeTime, rate: float) -> None:
    """Start requests at `rate` per second for 2 s, then two 429s: a cut while paced."""
    for _ in range(int(2 * rate)):
        await lim.acquire()
        time.t += 1 / rate
        lim.release(status=200, latency_s=0.0)
    await run(lim, time, 2, 429, 0.0)


async def test_the_rate_grows_with_time_not_with_answers(fake_time: FakeTime) -> None:
    """A low rate recovers in seconds: growth counts time, so few answers do not stall it."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    await cut_at(lim, fake_time, 10.0)
    rate = lim.snapshot().rate
    assert rate == pytest.approx(8.5, rel=0.15)
    start = fake_time.t
    while fake_time.t - start < 20.0:  # paced requests, answered at once: the rate is binding
        await exchange(lim, fake_time, 200, 0.001)
    after = lim.snapshot().rate
    assert after is None or after > 4 * rate


async def test_the_rate_creeps_near_the_refused_rate(fake_time: FakeTime) -> None:
    """Around the rate that was refused (paced) it grows by a few percent a second only."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    await cut_at(lim, fake_time, 10.0)
    await cut_at(lim, fake_time, 10.0)  # refused again while paced: a known limit
    start = fake_time.t
    while fake_time.t - start < 3.0:
        await exchange(lim, fake_time, 200, 0.001)
    rate = lim.snapshot().rate
    assert rate is not None
    assert rate < 10.0 * 1.1


async def test_near_the_refused_rate_growth_speeds_up_while_nothing_is_refused(
    fake_time: FakeTime,
) -> None:
    """The creep near a known limit speeds up with the time since the last cut: a limit learned
    low (during the climb) or a small slip is passed in seconds, not after +1 %/s for 20 s."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    await cut_at(lim, fake_time, 10.0)
    await cut_at(lim, fake_time, 10.0)  # refused again while paced: a known limit
    full = lim.snapshot().rate
    assert full is not None
    known = full / AdaptiveLimiter.RATE_CUT
    start = fake_time.t
    while fake_time.t - start < 6.0:
        await exchange(lim, fake_time, 200, 0.001)
    rate = lim.snapshot().rate
    assert rate is not None
    assert rate > 0.99 * known  # ~1.01 ×; at a steady +1 %/s it would be ~0.95 × after 6 s
    assert rate < 1.1 * known  # still near it: no jump


async def test_an_unused_rate_does_not_grow(fake_time: FakeTime) -> None:
    """Requests starting far below the paced rate teach nothing: it neither grows nor goes."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    await cut_at(lim, fake_time, 100.0)
    rate = lim.snapshot().rate
    start = fake_time.t
    while fake_time.t - start < 30.0:  # one request at a time, 0.5 s each: 2/s, not 85/s
        await exchange(lim, fake_time, 200, 0.5)
    assert lim.snapshot().rate == pytest.approx(rate)


async def test_max_rate_paces_evenly_and_limit_stays_within_bounds(fake_time: FakeTime) -> None:
    """max_rate 4/s spaces starts 0.25 s apart; refusals never push the limit below the floor."""
    lim = limiter(fake_time, ceiling=8, floor=3, max_rate=4.0)
    starts = []
    for _ in range(4):
        await lim.acquire()
        starts.append(fake_time.t - 1000.0)
        lim.release(status=200, latency_s=0.0)
    assert starts == pytest.approx([0.0, 0.25, 0.5, 0.75])
    await run(lim, fake_time, 200, 503, 0.0)
    assert lim.snapshot().limit == 3


async def test_waiters_get_slots_in_order_and_cancellation_frees_them(fake_time: FakeTime) -> None:
    """Beyond the limit requests wait; a cancelled waiter never leaks a slot."""
    lim = limiter(fake_time, ceiling=2, initial=2)
    await lim.acquire()
    await lim.acquire()
    first = asyncio.create_task(lim.acquire())
    second = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    first.cancel()
    lim.release(status=200, latency_s=0.0)
    await asyncio.wait_for(second, 1)
    assert lim.snapshot().in_flight == 2


@pytest.mark.parametrize(
    ("pacing", "kind"), [("adaptive", AdaptiveLimiter), ("fixed", FixedLimiter)]
)
def test_pacing_setting_chooses_the_limiter(pacing: str, kind: type) -> None:
    """pacing=adaptive (default) or fixed; concurrency is the ceiling of both."""
    settings = SimpleNamespace(pacing=pacing, concurrency=8, min_concurrency=20, max_rate=None)
    assert isinstance(limiter_from_settings(settings), kind)


@pytest.mark.parametrize(("ceiling", "floor", "rate"), [(0, 1, None), (4, 5, None), (4, 1, 0.0)])
def test_bad_bounds_are_refused(ceiling: int, floor: int, rate: float | None) -> None:
    """A floor above the ceiling or a zero rate fails loudly."""
    with pytest.raises(ValueError, match="must be"):
        AdaptiveLimiter(ceiling, floor, rate)


async def test_a_rate_cut_applies_at_once_to_requests_already_waiting(
    fake_time: FakeTime,
) -> None:
    """Requests queued for their turn at the old rate start at the new one after a cut (turns
    are handed out when they come, not reserved ahead at the rate of the moment)."""
    lim = limiter(fake_time, ceiling=32, initial=32)
    await cut_at(lim, fake_time, 100.0)
    old = lim.snapshot().rate
    assert old is not None
    await lim.acquire()
    await lim.acquire()  # two requests in flight, answered 429 while the others wait
    real_sleep = fake_time.sleep
    cut: list[float] = []

    async def sleeper(seconds: float) -> None:
        if not cut:
            for _ in range(2):
                lim.release(status=429, latency_s=0.0)
            cut.append(fake_time.t)
        await real_sleep(seconds)

    lim._sleeper = sleeper
    fake_time.waits.clear()
    await asyncio.gather(*(lim.acquire() for _ in range(8)))
    new = lim.snapshot().rate
    assert new is not None
    assert new < old
    assert fake_time.waits[1:] == pytest.approx([1 / new] * (len(fake_time.waits) - 1))


async def test_starts_due_together_after_a_stall_still_leave_one_by_one(
    fake_time: FakeTime,
) -> None:
    """The event loop stalled past several turns: the waiting requests do not all leave at
    once (spike arrest would refuse all but one); at least 0.9 interval apart."""
    lim = limiter(fake_time, ceiling=16, initial=16, max_rate=10.0)
    starts: list[float] = []

    async def one() -> None:
        await lim.acquire()
        starts.append(fake_time.t)

    real_sleep = fake_time.sleep

    async def stalling(seconds: float) -> None:
        await asyncio.sleep(0)  # let the request just given its turn record its start
        await real_sleep(seconds + (1.0 if len(fake_time.waits) == 0 else 0.0))  # a 1 s stall

    lim._sleeper = stalling
    await asyncio.gather(*(one() for _ in range(6)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.9 * 0.1 - 1e-9
    assert gaps[0] > 1.0  # the stall itself


async def paced_near_known_limit(lim: AdaptiveLimiter, time: FakeTime) -> tuple[float, float]:
    """Refused unpaced, then paced (the limit is known), then paced again up to 97 % of that
    limit: returns the rate after the paced cut and the pace reached."""
    await cut_at(lim, time, 25.0)  # unpaced: says how bursty we were, no known limit yet
    await cut_at(lim, time, 25.0)  # paced: the limit is about here
    full = lim.snapshot().rate
    assert full == pytest.approx(25.0 * AdaptiveLimiter.RATE_CUT, rel=0.1)
    assert full is not None
    known = full / AdaptiveLimiter.RATE_CUT
    while (lim.snapshot().rate or 0.0) < 0.97 * known:  # paced, creeping back up to it
        await exchange(lim, time, 200, 0.001)
    for _ in range(48):  # the last 50 answers: 48 let through, then 2 refused
        await exchange(lim, time, 200, 0.001)
    pace = lim.snapshot().rate
    assert pace is not None
    return full, pace


async def test_refused_again_at_the_known_limit_steps_back_a_little(fake_time: FakeTime) -> None:
    """Refused while paced, then again at about that rate: the limit is known and we only crept
    over it, so the cut is `NEAR_CUT` × what was let through (not 0.85 ×): the pace × the share of
    answers not refused."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    full, pace = await paced_near_known_limit(lim, fake_time)
    await run(lim, fake_time, 2, 429, 0.0)
    near = lim.snapshot().rate
    assert near is not None
    assert near > full  # 0.85 × would have gone below the last cut
    assert near == pytest.approx(AdaptiveLimiter.NEAR_CUT * 0.96 * pace, rel=0.03)


async def test_a_slow_spell_of_answers_does_not_deepen_a_paced_cut(fake_time: FakeTime) -> None:
    """Paced, the answers of the last second can be few (a slow spell bunches them) while the
    server let every paced request through: the cut still starts from the pace (E3 had cut to
    0.85 × a rate read 20 % low, then crept back for 20 s)."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    _, pace = await paced_near_known_limit(lim, fake_time)
    fake_time.t += 0.7  # no answer for 0.7 s: the last second holds a third of the usual
    await run(lim, fake_time, 2, 429, 0.0)
    cut = lim.snapshot().rate
    assert cut == pytest.approx(AdaptiveLimiter.NEAR_CUT * 0.96 * pace, rel=0.03)


async def test_refused_again_right_after_a_near_cut_steps_back_a_little_again(
    fake_time: FakeTime,
) -> None:
    """A stall bunches requests: refused near the known limit, then in the next round again,
    below it (two refusals the first answers after the cut). Both cuts are near cuts, not
    0.85 × (E3 fell to 0.73 × its limit that way), and two refusals right after a cut do not
    read as "nothing let through"."""
    lim = limiter(fake_time, ceiling=16, initial=16)
    await paced_near_known_limit(lim, fake_time)
    await run(lim, fake_time, 2, 429, 0.0)
    first = lim.snapshot().rate
    assert first is not None
    fake_time.t += 0.2  # the next round: one round trip after the cut
    await run(lim, fake_time, 2, 429, 0.0)
    second = lim.snapshot().rate
    assert second == pytest.approx(AdaptiveLimiter.NEAR_CUT * 0.96 * first, rel=0.03)


async def test_a_refusal_while_paced_at_a_start_up_guess_is_no_known_limit(
    fake_time: FakeTime,
) -> None:
    """A start-up burst refused → paced at a guess; refused again during the climb: the rate
    let through then says where the climb was, so growth stays fast (+50 %/s), not the +1 %/s
    creep kept for a limit met while really paced."""
    lim = limiter(fake_time, ceiling=16, initial=4)
    await run(lim, fake_time, 2, 200, 0.2)
    await run(lim, fake_time, 2, 429, 0.0)  # too early to measure: the provisional rate
    assert lim.snapshot().rate == pytest.approx(4 / 0.2)
    await cut_at(lim, fake_time, 10.0)  # refused while paced at the guess
    cut = lim.snapshot().rate
    assert cut == pytest.approx(10.0 * AdaptiveLimiter.RATE_CUT, rel=0.15)
    start = fake_time.t
    while fake_time.t - start < 2.0:
        await exchange(lim, fake_time, 200, 0.001)
    grown = lim.snapshot().rate
    assert grown is None or grown > 1.3 * 10.0  # far growth, past the rate of the climb
