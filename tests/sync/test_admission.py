"""Rows in progress at once (admission.py): as many as the pacing can use, not one per worker.

A paced run with hundreds of workers used to have every worker hold a half-done row; now a worker
starts a row only while the pacing can use one more (`Limiter.useful_in_flight`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.sync.nights import DAY, run_night

from phonesync.admission import RowGate
from phonesync.fhir.pacing import AdaptiveLimiter
from phonesync.fhir.updater import Updater
from phonesync.sandbox.fhir_profile import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import generate


def _most_rows_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """The most rows the real updater had in progress at once during one paced night."""
    data = generate(seed=5, patients=90, rows=80, business_date=DAY)
    now = most = 0
    update = Updater.update

    async def spy(self: Updater, *args: Any, **kw: Any) -> Any:
        nonlocal now, most
        now += 1
        most = max(most, now)
        try:
            return await update(self, *args, **kw)
        finally:
            now -= 1

    monkeypatch.setattr(Updater, "update", spy)
    profile = FhirProfile(latency_ms=20)
    settings = {"concurrency": 256, "max_rate": 100.0, **overrides}
    with LocalSandbox(data.patients, data.values, tmp_path, profile, overrides=settings) as sb:
        outcome = run_night(sb)
    return most, outcome.summary


def test_a_paced_run_keeps_only_the_rows_its_rate_can_use_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 requests/s at ~20 ms: about 2 in flight, so ~3 × 2 + 16 rows, not 256 workers' worth."""
    most, summary = _most_rows_at_once(tmp_path, monkeypatch, {})
    assert summary["status"] == "succeeded"
    assert summary["outcomes"]["updated"] > 50
    assert summary["outcomes"]["failed"] == 0
    assert most <= 40, most


def test_fixed_pacing_keeps_one_row_per_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contrast, and what every paced run did before: each of the workers holds a row."""
    most, summary = _most_rows_at_once(tmp_path, monkeypatch, {"pacing": "fixed"})
    assert summary["status"] == "succeeded"
    assert most > 60, most


# --- the gate itself ------------------------------------------------------------------------


async def test_the_gate_lets_in_no_more_than_wanted_and_the_next_when_one_leaves() -> None:
    wanted = 2
    gate = RowGate(lambda: wanted)
    await gate.enter()
    await gate.enter()
    third = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    assert not third.done()
    assert gate.active == 2
    gate.leave()
    await asyncio.sleep(0)
    assert third.done()
    assert gate.active == 2


async def test_the_gate_lets_in_more_when_wanted_grows_and_keeps_one_row_going_at_zero() -> None:
    wanted: int | None = 0
    gate = RowGate(lambda: wanted)
    await gate.enter()  # wanted 0 still lets one row in: a run always moves
    waiting = [asyncio.ensure_future(gate.enter()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)
    wanted = None  # no limit
    gate.wake()
    await asyncio.sleep(0)
    assert all(w.done() for w in waiting)
    assert gate.active == 4


async def test_a_worker_cancelled_while_waiting_takes_no_place() -> None:
    gate = RowGate(lambda: 1)
    await gate.enter()
    waiting = asyncio.ensure_future(gate.enter())
    behind = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    gate.leave()
    await asyncio.sleep(0)
    assert behind.done()
    assert gate.active == 1


async def test_a_worker_cancelled_just_as_it_was_let_in_passes_its_place_on() -> None:
    gate = RowGate(lambda: 1)
    await gate.enter()
    first = asyncio.ensure_future(gate.enter())
    second = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    gate.leave()  # `first` is let in, but is cancelled before it runs
    first.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert second.done()
    assert gate.active == 1


# --- what the adaptive pacing asks for -------------------------------------------------------


async def test_adaptive_pacing_wants_every_slot_filled_and_while_paced_what_the_rate_uses() -> None:
    clock = [0.0]
    limiter = AdaptiveLimiter(512, initial=64, clock=lambda: clock[0])
    assert limiter.useful_in_flight() == 64 + 16  # no latency known yet: the slots + a quarter
    for _ in range(64):  # one window of answers at 200 ms: the typical latency is known
        await limiter.acquire()
        limiter.release(status=200, latency_s=0.2)
    assert limiter.snapshot().rate is None
    assert limiter.useful_in_flight() == limiter.snapshot().limit * 5 // 4  # unpaced: slots
    paced = AdaptiveLimiter(512, initial=64, max_rate=50.0, clock=lambda: clock[0])
    for _ in range(64):
        clock[0] += 0.02
        await paced.acquire()
        paced.release(status=200, latency_s=0.2)
    assert paced.useful_in_flight() == 3 * 10 + 16  # 50/s × 0.2 s = 10 in flight
