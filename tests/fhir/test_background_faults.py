"""Background faults: load faults that a concurrency cut does not lower must not hold a run down."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from phonesync.fhir.background import BackgroundFaults
from phonesync.fhir.pacing import AdaptiveLimiter

from .conftest import FakeTime
from .test_adaptive import exchange, limiter

#: A server's answer to the n-th request, given the concurrency limit of the moment.
Server = Callable[[int, int], int | None]


async def serve(lim: AdaptiveLimiter, time: FakeTime, n: int, server: Server) -> list[int]:
    """`n` exchanges of 0.1 s against `server`; the limit after each."""
    limits = []
    for i in range(n):
        await exchange(lim, time, server(i, lim.snapshot().limit), 0.1)
        limits.append(lim.snapshot().limit)
    return limits


def every(k: int, status: int | None) -> Server:
    """One fault in every `k` answers, whatever the load."""
    return lambda i, _limit: status if i % k == k - 1 else 200


@pytest.mark.parametrize("status", [503, 504, None])  # None: a reset or a timeout
async def test_a_steady_share_of_faults_at_any_load_does_not_hold_the_limit_down(
    fake_time: FakeTime, status: int | None
) -> None:
    """One load fault in 16 answers (6 %) at any concurrency: the first cut does not lower
    them, so the limit goes back and later cuts wait for more faults than that; the limit
    spends most of 3,000 answers high, not at the floor (where the old rule kept it)."""
    lim = limiter(fake_time, ceiling=64, initial=40)
    limits = await serve(lim, fake_time, 3000, every(16, status))
    late = limits[1000:]
    assert sum(late) / len(late) >= 32
    assert min(late) >= 16


async def test_faults_that_come_with_load_still_cut(fake_time: FakeTime) -> None:
    """Faults only above 20 in flight (one in four answers there): cuts help, so they stand and
    the limit stays around where the server holds."""
    lim = limiter(fake_time, ceiling=64, initial=40)

    def overloaded_above_20(i: int, limit: int) -> int | None:
        return 503 if limit > 20 and i % 4 == 3 else 200

    limits = await serve(lim, fake_time, 3000, overloaded_above_20)
    late = limits[1000:]
    assert sum(late) / len(late) <= 26
    assert max(late) <= 34


async def test_overload_on_top_of_background_faults_still_cuts(fake_time: FakeTime) -> None:
    """Background learned at 6 %; then the server overloads above 16 in flight (every other
    answer a 503 there): the cuts help, so the limit comes down below 16 all the same."""
    lim = limiter(fake_time, ceiling=64, initial=40)
    await serve(lim, fake_time, 1500, every(16, 503))
    assert lim.snapshot().limit >= 32

    def overloaded_above_16(i: int, limit: int) -> int | None:
        return 503 if (limit > 16 and i % 2) or i % 16 == 15 else 200

    limits = await serve(lim, fake_time, 1500, overloaded_above_16)
    late = limits[500:]
    assert sum(late) / len(late) <= 20


async def test_a_server_failing_most_requests_is_never_background(fake_time: FakeTime) -> None:
    """Politeness first: half the answers 503 at any load is more than `MOST` (20 %): the
    cuts stand and the limit goes down to the floor, background learned or not."""
    lim = limiter(fake_time, ceiling=64, initial=40)
    await serve(lim, fake_time, 1500, every(16, 503))
    limits = await serve(lim, fake_time, 400, every(2, 503))
    assert limits[-1] <= 4


@pytest.mark.parametrize(
    ("share", "needed"),
    [
        (0.0, 3),  # no background: the usual three in 50
        (0.01, 4),  # mean 0.5: ceil(0.5 + 2.1) + 1
        (0.06, 10),  # mean 3: ceil(3 + 5.2) + 1
        (0.135, 16),  # mean 6.75: ceil(6.75 + 7.8) + 1
    ],
)
def test_drops_needed_rise_with_the_background(share: float, needed: int) -> None:
    """A cut needs the background's mean in a window of 50 + 3 standard deviations, and one."""
    background = BackgroundFaults(window=50, least_drops=3)
    background.share = share
    assert background.drops_needed() == needed


def test_a_cut_is_judged_on_answers_sent_after_it() -> None:
    """Answers to requests started before the cut are not part of its test, and a cut that
    lowered the fault share below half is kept (the background is at most what followed)."""
    background = BackgroundFaults(window=50, least_drops=3)
    for i in range(200):
        background.answer(started=float(i), fault=i % 10 == 0)  # 10 % before
    background.cut(now=200.0, limit_before=40.0)
    for _ in range(500):
        assert background.answer(started=150.0, fault=True) is None  # the old concurrency's
    for i in range(BackgroundFaults.PROBE_ANSWERS):
        assert background.answer(started=201.0, fault=i % 25 == 0) is None  # 4 % after
    assert background.share == 0.0


def test_a_cut_that_did_not_help_gives_the_limit_back_and_learns_the_share() -> None:
    """Faults as frequent after the cut as before: the limit before the cut comes back."""
    background = BackgroundFaults(window=50, least_drops=3)
    for i in range(200):
        background.answer(started=float(i), fault=i % 20 == 0)  # 5 %
    background.cut(now=200.0, limit_before=40.0)
    background.cut(now=201.0, limit_before=28.0)  # a second cut of the same spell
    answers = [
        background.answer(started=202.0, fault=i % 20 == 0)
        for i in range(BackgroundFaults.PROBE_ANSWERS)
    ]
    assert answers[:-1] == [None] * (BackgroundFaults.PROBE_ANSWERS - 1)
    assert answers[-1] == 40.0
    assert background.share == pytest.approx(0.05)
