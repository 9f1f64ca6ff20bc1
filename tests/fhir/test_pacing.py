"""FixedLimiter: concurrency bound, even pacing (no bursts), pause_all."""

from __future__ import annotations

import asyncio

import pytest

from phonesync.fhir.pacing import FixedLimiter

from .conftest import FakeTime


async def _starts(limiter: FixedLimiter, time: FakeTime, n: int) -> list[float]:
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(time.now() - 1000.0)
        limiter.release(status=200, latency_s=0.0)

    await asyncio.gather(*(one() for _ in range(n)))
    return sorted(starts)


async def test_requests_start_evenly_never_in_a_burst(fake_time: FakeTime) -> None:
    """max_rate=4/s: five concurrent requests start 0.25 s apart, the first at once."""
    limiter = FixedLimiter(10, 4.0, clock=fake_time.now, sleeper=fake_time.sleep)
    starts = await _starts(limiter, fake_time, 5)
    assert starts == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


async def test_concurrent_waiters_reserve_distinct_slots() -> None:
    """Waiters arriving together sleep 0.25, 0.5, 0.75, 1.0 s: they never all wake at once."""
    waits: list[float] = []

    async def sleeper(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    limiter = FixedLimiter(10, 4.0, clock=lambda: 50.0, sleeper=sleeper)
    await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert sorted(waits) == pytest.approx([0.25, 0.5, 0.75, 1.0])


async def test_without_rate_nothing_waits(fake_time: FakeTime) -> None:
    """No max_rate: no pacing, no sleeps."""
    limiter = FixedLimiter(10, None, clock=fake_time.now, sleeper=fake_time.sleep)
    assert await _starts(limiter, fake_time, 5) == [0.0] * 5
    assert fake_time.waits == []


async def test_pause_all_holds_every_new_request(fake_time: FakeTime) -> None:
    """After pause_all(7) no request starts for 7 s; then pacing resumes."""
    limiter = FixedLimiter(10, 2.0, clock=fake_time.now, sleeper=fake_time.sleep)
    limiter.pause_all(7.0)
    starts = await _starts(limiter, fake_time, 3)
    assert starts == pytest.approx([7.0, 7.5, 8.0])


async def test_concurrency_bound(fake_time: FakeTime) -> None:
    """At most `concurrency` holders at once; a release lets the next one in."""
    limiter = FixedLimiter(2, None, clock=fake_time.now, sleeper=fake_time.sleep)
    await limiter.acquire()
    await limiter.acquire()
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    limiter.release(status=503, latency_s=1.0)
    await asyncio.wait_for(third, 1)
    assert third.done()


@pytest.mark.parametrize(("concurrency", "rate"), [(0, None), (1, 0.0), (1, -1.0)])
def test_bad_configuration_is_refused(concurrency: int, rate: float | None) -> None:
    """Nonsense limits fail loudly instead of blocking forever."""
    with pytest.raises(ValueError, match="must be"):
        FixedLimiter(concurrency, rate, clock=lambda: 0.0, sleeper=asyncio.sleep)
