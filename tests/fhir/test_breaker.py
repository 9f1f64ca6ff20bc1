"""CircuitBreaker: opens on an error ratio, probes one at a time, closes, gives up in time."""

from __future__ import annotations

import asyncio

import pytest

from phonesync.errors import FhirUnavailable
from phonesync.fhir.breaker import CircuitBreaker, State
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore
from phonesync.sandbox.threaded import ThreadedServer

from .conftest import NIK_A, FakeTime, Serve, make_settings, open_http, patient_a


def breaker(time: FakeTime, **kw: float) -> CircuitBreaker:
    return CircuitBreaker(
        window=10, min_calls=10, cooldown_s=2.0, clock=time.now, sleeper=time.sleep, **kw
    )


async def feed(b: CircuitBreaker, statuses: list[int | None]) -> None:
    for status in statuses:
        b.record(await b.admit(), status)


@pytest.mark.parametrize(
    ("statuses", "state"),
    [
        ([503] * 5 + [200] * 5, State.OPEN),  # half errors
        ([None] * 5 + [200] * 5, State.OPEN),  # network errors count
        ([503] * 4 + [200] * 6, State.CLOSED),
        ([429] * 10, State.CLOSED),  # a 429 is the server talking
        ([404, 412, 422] * 3 + [500], State.CLOSED),
        ([503] * 9, State.CLOSED),  # fewer than min_calls: too early to judge
    ],
)
async def test_error_ratio_over_the_window_opens(
    fake_time: FakeTime, statuses: list[int | None], state: State
) -> None:
    """5xx and network errors over half the window open the breaker; 4xx and 429 do not."""
    b = breaker(fake_time)
    await feed(b, statuses)
    assert b.state is state


async def test_open_breaker_lets_one_probe_through_then_closes(fake_time: FakeTime) -> None:
    """While open, requests wait for the cool-down; one probe goes, its success closes."""
    b = breaker(fake_time)
    await feed(b, [503] * 10)
    opened_at = fake_time.t
    probe = await b.admit()
    assert probe.probe
    assert fake_time.t == pytest.approx(opened_at + 2.0)
    others = [asyncio.create_task(b.admit()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in others)  # one probe at a time
    b.record(probe, 200)
    tickets = await asyncio.gather(*others)
    assert b.state is State.CLOSED
    assert not any(t.probe for t in tickets)


async def test_failed_probe_reopens_with_a_longer_cooldown(fake_time: FakeTime) -> None:
    """A failed probe doubles the cool-down before the next one."""
    b = breaker(fake_time)
    await feed(b, [503] * 10)
    first = await b.admit()
    b.record(first, 503)
    failed_at = fake_time.t
    second = await b.admit()
    assert second.probe
    assert fake_time.t == pytest.approx(failed_at + 4.0)


async def test_outage_past_the_deadline_aborts(fake_time: FakeTime) -> None:
    """Down for longer than deadline_s: every admit raises FhirUnavailable."""
    b = breaker(fake_time, deadline_s=60.0, max_cooldown_s=8.0)
    await feed(b, [503] * 10)

    async def probe_forever() -> None:
        while True:
            b.record(await b.admit(), None)

    with pytest.raises(FhirUnavailable, match="unavailable for 6"):
        await probe_forever()
    with pytest.raises(FhirUnavailable):
        await b.admit()


async def test_outage_on_the_sandbox_is_waited_out_without_spending_attempts(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """A 90 s outage: requests pause behind the breaker and all succeed afterwards."""
    store.add(patient_a())
    profile = FhirProfile(outage_start_s=0.0, outage_duration_s=90.0)
    server: ThreadedServer = serve(profile, clock=fake_time.now)
    settings = make_settings(server, max_attempts=3, retry_total_s=30.0)
    b = CircuitBreaker(window=10, min_calls=4, clock=fake_time.now, sleeper=fake_time.sleep)
    async with open_http(settings, fake_time, breaker=b) as http:
        answers = await asyncio.gather(
            *(http.request("GET", "Patient/P001", label="GET Patient") for _ in range(8))
        )
    assert {a.status for a in answers} == {200}
    assert b.opened == 1
    assert b.state is State.CLOSED
    assert fake_time.t - 1000.0 >= 90.0
    assert http.stats.by_status["503"] >= 4


async def test_outage_longer_than_the_deadline_raises_fhir_unavailable(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """The server stays down past outage_deadline_s: the request raises FhirUnavailable."""
    store.add(patient_a())
    profile = FhirProfile(outage_start_s=0.0, outage_duration_s=10_000.0)
    server = serve(profile, clock=fake_time.now)
    settings = make_settings(server)
    b = CircuitBreaker(
        window=10, min_calls=4, deadline_s=120.0, clock=fake_time.now, sleeper=fake_time.sleep
    )
    async with open_http(settings, fake_time, breaker=b) as http:
        with pytest.raises(FhirUnavailable, match="outage_deadline_s=120"):
            await asyncio.gather(
                *(http.request("GET", "Patient", params={"identifier": NIK_A}) for _ in range(6))
            )
