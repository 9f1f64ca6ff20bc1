"""A scale-out worker whose FHIR server goes down: which rows say "not attempted", which not.

A row is "not attempted" only if no request can have been sent for it; a row the worker had in
flight, or one a stopped worker had claimed, says its write may have landed (as a single run
does, `sync.fail_remaining`, and as `plan --finish` does).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from tests.scaleout.conftest import DAY, open_sandbox, plan

from phonesync.errors import FhirUnavailable
from phonesync.fhir.session import open_fhir
from phonesync.ledger.schema import queue_items
from phonesync.ledger.store import Ledger
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.scaleout import queue
from phonesync.scaleout.coordinator import sealer_for
from phonesync.scaleout.worker import WorkerOutcome, run_worker

pytestmark = pytest.mark.postgres

NOT_ATTEMPTED = "not attempted: run aborted (FhirUnavailable)"
IN_FLIGHT = "interrupted: run aborted (FhirUnavailable) while this row was in flight"
MAY_HAVE_LANDED = "its write may have landed: the next run or retry reads the record first"


def _searched_niks(sb: LocalSandbox) -> set[str]:
    """Every NIK the sandbox was sent a search for, whatever it answered (503 included)."""
    niks: set[str] = set()
    for record in list(sb.store.requests):
        parts = urlsplit(record.raw_path_qs)
        if record.method == "GET" and parts.path.endswith("/Patient"):
            for value in parse_qs(parts.query).get("identifier", []):
                niks.add(value.rpartition("|")[2])
    return niks


def _nik_of_row(data: SandboxData) -> dict[int, str]:
    """Sheet row → the NIK its search carries (the cell's digits: queued rows are valid NIKs)."""
    col = data.values[0].index("NIK")
    return {
        i: re.sub(r"\D", "", str(row[col]))
        for i, row in enumerate(data.values[1:], start=2)
        if len(row) > col
    }


def _queue(ledger: Ledger, run_id: str) -> dict[int, tuple[str | None, int]]:
    """Each queued row: the worker that held it last and how many times it was claimed."""
    query = sa.select(queue_items.c.row, queue_items.c.worker, queue_items.c.claims).where(
        queue_items.c.run_id == run_id
    )
    with ledger.engine.connect() as conn:
        return {row: (worker, claims) for row, worker, claims in conn.execute(query)}


def test_a_worker_whose_server_goes_down_says_which_rows_may_have_been_written(
    tmp_path: Path, pg_url: str, synth_small: SandboxData
) -> None:
    """The sandbox goes down (outage knob) mid-run: the worker aborts (FhirUnavailable); rows
    it had sent a request for say "in flight … its write may have landed", never "not
    attempted"; rows it claimed but never started, and rows never claimed, stay "not
    attempted"; every row in scope has one record and the run ends `failed`."""
    profile = FhirProfile(write_latency_ms=300, write_latency_p99_ms=400)  # writes on the wire
    with (
        open_sandbox(
            synth_small, tmp_path, pg_url, profile, concurrency=8, pacing="fixed",
            scaleout_batch=100, breaker_window=10, outage_deadline_s=1.0,
        ) as sb,
        Ledger.open(pg_url) as ledger,
    ):  # fmt: skip
        planned = plan(sb, ledger, workers=1)

        async def go_down_mid_run() -> WorkerOutcome:
            worker = asyncio.create_task(
                run_worker(sb.settings, ledger, DAY, "w0", open_fhir, wait_s=0)
            )
            deadline = time.monotonic() + 60
            while sb.store.writes < 20:
                assert not worker.done(), "the worker ended before the server went down"
                assert time.monotonic() < deadline, "the worker wrote too slowly"
                await asyncio.sleep(0.01)
            profile.outage_duration_s = 1e9  # from now on every request: text/plain 503
            profile.outage_start_s = 0.0
            return await worker

        outcome = asyncio.run(go_down_mid_run())
        records = {r.row: r for r in ledger.results(planned.run_id)}
        run = ledger.get_run(planned.run_id)
        held = _queue(ledger, planned.run_id)
        searched = _searched_niks(sb)
    nik_of = _nik_of_row(synth_small)
    assert isinstance(outcome.error, FhirUnavailable)
    assert run is not None
    assert run.status == "failed"
    assert set(records) == set(synth_small.expected)  # one record per row in scope
    aborted = {
        row: str(r.reason)
        for row, r in records.items()
        if r.outcome is Outcome.FAILED and "run aborted (FhirUnavailable)" in str(r.reason)
    }
    sent = {row for row in aborted if nik_of[row] in searched}
    assert sent  # rows cut off after a request of theirs reached the server
    for row in sent:
        assert aborted[row].startswith(IN_FLIGHT), aborted[row]
        assert MAY_HAVE_LANDED in aborted[row]
    not_attempted = {row for row, reason in aborted.items() if reason.startswith(NOT_ATTEMPTED)}
    assert not_attempted
    assert not {nik_of[row] for row in not_attempted} & searched  # no request sent for them
    claimed_unstarted = {row for row in not_attempted if held[row] == ("w0", 1)}
    never_claimed = {row for row in not_attempted if held[row] == (None, 0)}
    assert claimed_unstarted  # the rest of the worker's batch, never handed to the updater
    assert never_claimed
    assert all(reason.startswith((NOT_ATTEMPTED, IN_FLIGHT)) for reason in aborted.values())


def test_fail_open_tells_rows_in_flight_and_rows_a_stopped_worker_held_from_rows_never_sent(
    small_night: tuple[LocalSandbox, Ledger],
) -> None:
    """`queue.fail_open` for a worker: its rows in flight get the in-flight reason, rows a dead
    worker had claimed the claimed reason, its unstarted rows and pending rows `reason`."""
    sb, ledger = small_night
    planned = plan(sb, ledger, workers=2)
    sealer, now = sealer_for(sb.settings), datetime.now(UTC)
    run_id = planned.run_id

    def take(worker: str, at: datetime) -> list[int]:
        got = queue.claim(ledger.engine, run_id, worker, batch=4, lease_s=30, now=at,
                          sealer=sealer)  # fmt: skip
        return [item.row for item, _ in got]

    dead = take("dead", now)  # then killed: its lease runs out
    later = now + timedelta(seconds=31)
    reclaimed = take("w", later)  # the dead worker's rows, claimed again by `w`
    fresh = take("w", later)  # rows nobody had claimed before
    lapsed = take("gone", now)  # another dead worker: lease out, never reclaimed
    assert reclaimed == dead
    in_flight = {reclaimed[0], fresh[0]}
    failed, remaining = queue.fail_open(
        ledger.engine, run_id, DAY, reason="never", worker="w", sealer=sealer, now=later,
        claimed_reason="held", in_flight=in_flight, in_flight_reason="flight",
    )  # fmt: skip
    reasons = {r.row: str(r.reason) for r in ledger.results(run_id)}
    assert failed == planned.items
    assert remaining == 0
    assert {row: reasons[row] for row in in_flight} == dict.fromkeys(in_flight, "flight")
    assert {row: reasons[row] for row in reclaimed[1:]} == dict.fromkeys(reclaimed[1:], "held")
    assert {row: reasons[row] for row in lapsed} == dict.fromkeys(lapsed, "held")
    assert {row: reasons[row] for row in fresh[1:]} == dict.fromkeys(fresh[1:], "never")
    pending = set(_queue(ledger, run_id)) - set(dead) - set(fresh) - set(lapsed)
    assert pending
    assert {reasons[row] for row in pending} == {"never"}
