"""The run lock of a scale-out run: held from the plan step to the finish, whoever heartbeats it.

`phonesync plan` exits by design once the night is queued; the workers heartbeat the lock. Any
other `run`, `plan` (this date or another: one run per ledger) or `retry` must exit 5 naming the
holder while the run is open — never take the lock because the plan process's PID is gone — and
the lock is taken over only once nobody heartbeated it for the stale window (a crashed scale-out
stays recoverable). Real PostgreSQL; the plan step as a real process where its exit matters.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.ledger.helpers import dead_pid
from tests.scaleout.conftest import DAY, plan

from phonesync.cli import main
from phonesync.errors import RunInProgress
from phonesync.fhir.session import open_fhir
from phonesync.ledger import locks
from phonesync.ledger.schema import queue_runs
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.scaleout import queue
from phonesync.scaleout.coordinator import plan_night, sealer_for
from phonesync.scaleout.worker import Worker, run_worker
from phonesync.source import open_source
from phonesync.sync import RunRequest

pytestmark = pytest.mark.postgres


@pytest.fixture
def exited_plan(
    small_night: tuple[LocalSandbox, Ledger], monkeypatch: pytest.MonkeyPatch
) -> tuple[LocalSandbox, Ledger, str]:
    """The small night queued by a plan step whose process has exited (its PID is dead here)."""
    sb, ledger = small_night
    gone = locks.owner_here(dead_pid())
    with monkeypatch.context() as patch:
        patch.setattr("phonesync.scaleout.coordinator.default_owner", lambda: gone)
        planned = plan(sb, ledger, workers=2)
    assert planned.items > 0
    return sb, ledger, planned.run_id


def _queue_run_ids(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as conn:
        return sorted(conn.execute(sa.select(queue_runs.c.run_id)).scalars())


def _cli(sb: LocalSandbox, tmp_path: Path, *argv: str) -> int:
    env = sb.write_env(tmp_path / "cli.env")
    return main(["--env-file", str(env), *argv])


def test_run_after_the_plan_process_exited_exits_5_and_the_workers_finish(
    small_night: tuple[LocalSandbox, Ledger],
    synth_small: SandboxData,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real `phonesync plan` exits; `run` on this host is refused (5); the worker finishes."""
    sb, ledger = small_night
    env = sb.write_env(tmp_path / "plan.env")
    argv = [sys.executable, "-m", "phonesync", "--env-file", str(env), "plan",
            "--date", DAY.isoformat(), "--workers", "2"]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    qrun = queue.latest_for(ledger.engine, DAY)
    assert qrun is not None
    assert qrun.state == queue.READY
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert holder.run_id == qrun.run_id
    assert not locks.holder_is_dead(holder.owner)  # the plan's PID is gone; the run is not
    capsys.readouterr()

    code = main(["--env-file", str(env), "run", "--date", DAY.isoformat()])
    err = capsys.readouterr().err
    assert code == 5, err
    assert f"run {qrun.run_id} (scale-out" in err
    assert sb.store.writes == 0
    run = ledger.get_run(qrun.run_id)
    assert run is not None
    assert run.status == "running"

    outcome = asyncio.run(run_worker(sb.settings, ledger, DAY, "w0", open_fhir, wait_s=0))
    assert outcome.error is None
    assert outcome.summary is not None
    assert outcome.summary["status"] == "succeeded"
    got = {r.row: str(r.outcome) for r in ledger.results(qrun.run_id)}
    assert got == synth_small.expected
    assert ledger.lock_for(DAY) is None  # the finish released it: the next run may start


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--date", DAY.isoformat()],
        ["run", "--date", (DAY - timedelta(days=1)).isoformat()],
        ["run", "--date", DAY.isoformat(), "--from-source"],
        ["plan", "--date", DAY.isoformat(), "--workers", "2"],
        ["plan", "--date", (DAY - timedelta(days=1)).isoformat(), "--workers", "1"],
        ["retry", "latest"],
    ],
    ids=["run", "run-other-date", "run-from-source", "plan-again", "plan-other-date", "retry"],
)
def test_any_run_plan_or_retry_exits_5_while_the_queued_run_is_open(
    exited_plan: tuple[LocalSandbox, Ledger, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """Exit 5 naming the scale-out run; it stays open, queued once, nothing written to FHIR."""
    sb, ledger, run_id = exited_plan
    capsys.readouterr()
    code = _cli(sb, tmp_path, *argv)
    err = capsys.readouterr().err
    assert code == 5, err
    assert f"another run is in progress (for {DAY}): run {run_id} (scale-out" in err
    run = ledger.get_run(run_id)
    assert run is not None
    assert run.status == "running"
    assert _queue_run_ids(ledger) == [run_id]  # no second queue
    assert ledger.get_run("latest") == run
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert holder.run_id == run_id
    assert sb.store.writes == 0


def test_worker_heartbeats_keep_the_lock_and_only_silence_lets_it_go(
    exited_plan: tuple[LocalSandbox, Ledger, str],
) -> None:
    """Taken over only after the stale window without any heartbeat; the run is then aborted."""
    sb, ledger, run_id = exited_plan
    stale = sb.settings.lock_stale_s
    t0 = datetime.now(UTC)
    with pytest.raises(RunInProgress, match=f"run {run_id} "):
        ledger.acquire_lock(DAY, "next", "me:1", stale_after_s=stale, now=t0 + timedelta(seconds=1))
    ledger.heartbeat(DAY, run_id, t0 + timedelta(seconds=stale - 10))  # a worker's heartbeat
    with pytest.raises(RunInProgress, match=f"run {run_id} "):
        ledger.acquire_lock(DAY, "next", "me:1", stale_after_s=stale,
                            now=t0 + timedelta(seconds=stale + 50))  # fmt: skip
    ledger.acquire_lock(DAY, "next", "me:1", stale_after_s=stale,
                        now=t0 + timedelta(seconds=2 * stale))  # fmt: skip
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert holder.run_id == "next"
    run = ledger.get_run(run_id)
    assert run is not None
    assert run.status == "aborted"


def test_a_crashed_scale_out_is_planned_again_after_the_stale_window(
    exited_plan: tuple[LocalSandbox, Ledger, str],
) -> None:
    """All workers dead, no heartbeat for the stale window: a new plan takes the night over."""
    sb, ledger, run_id = exited_plan
    later = datetime.now(UTC) + timedelta(seconds=sb.settings.lock_stale_s + 1)
    source = open_source(sb.settings)
    again = asyncio.run(plan_night(sb.settings, ledger, source, RunRequest(DAY), 2,
                                   now=lambda: later))  # fmt: skip
    assert again.run_id != run_id
    assert again.items > 0
    old = ledger.get_run(run_id)
    assert old is not None
    assert old.status == "aborted"
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert holder.run_id == again.run_id
    assert sorted(_queue_run_ids(ledger)) == sorted([run_id, again.run_id])
    restarted = asyncio.run(run_worker(sb.settings, ledger, DAY, "w", open_fhir, wait_s=0,
                                       now=lambda: later))  # fmt: skip
    assert restarted.run_id == again.run_id
    assert restarted.summary is not None
    assert restarted.summary["status"] == "succeeded"


def test_after_a_take_over_workers_claim_nothing_and_drop_what_they_hold(
    exited_plan: tuple[LocalSandbox, Ledger, str],
) -> None:
    """The run lost its lock: no claim succeeds, and a worker starts none of its held rows."""
    sb, ledger, run_id = exited_plan
    settings = sb.settings.model_copy(update={"scaleout_lease_s": 0.3})
    qrun = queue.get(ledger.engine, run_id)
    assert qrun is not None
    worker = Worker(settings, ledger, qrun, "w-alive")
    assert worker.claim()
    held = list(worker.local)
    assert held
    later = datetime.now(UTC) + timedelta(seconds=settings.lock_stale_s + 1)
    ledger.acquire_lock(DAY, "next", "me:1", stale_after_s=settings.lock_stale_s, now=later)

    claimed = queue.claim(ledger.engine, run_id, "w-new", batch=10, lease_s=60, now=later,
                          sealer=sealer_for(settings))  # fmt: skip
    assert not claimed
    asyncio.run(asyncio.wait_for(worker.heartbeat(), timeout=10))
    assert worker.stop
    assert not worker.local  # rows claimed but not started are not applied any more
    assert isinstance(worker.outcome.error, RunInProgress)
    worker.local.extend(held)  # as if a claim had raced the heartbeat
    assert asyncio.run(worker.next_item()) is None
    assert not worker.local


def test_the_plan_step_hands_the_lock_to_the_run(
    small_night: tuple[LocalSandbox, Ledger],
) -> None:
    """Once queued, the lock names the scale-out run, not the plan's PID, and is fresh."""
    sb, ledger = small_night
    before = datetime.now(UTC)
    planned = plan(sb, ledger, workers=3)
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert holder.run_id == planned.run_id
    assert holder.owner.startswith("scale-out run of 3 workers, planned by ")
    assert locks.owner_here(os.getpid()) in holder.owner
    assert not locks.holder_is_dead(holder.owner)
    assert holder.heartbeat_at >= before


@pytest.mark.parametrize(("state", "taken_over"), [(queue.PLANNING, True), (queue.READY, False)])
def test_a_dead_plan_pid_frees_the_lock_only_while_the_run_is_planning(
    small_night: tuple[LocalSandbox, Ledger], state: str, taken_over: bool
) -> None:
    """Killed while reading the sheet: freed at once. Queued (even if the lock still names the
    plan's PID, as an older version left it): only after the stale window."""
    _, ledger = small_night
    now = datetime.now(UTC)
    ledger.create_run(run_id="planned", business_date=DAY, trigger="manual", config={},
                      dry_run=False, started_at=now)  # fmt: skip
    ledger.acquire_lock(DAY, "planned", locks.owner_here(dead_pid()), stale_after_s=300, now=now)
    queue.open_run(ledger.engine, "planned", DAY, 2, now)
    if state == queue.READY:
        with ledger.engine.begin() as conn:
            conn.execute(sa.update(queue_runs).values(state=queue.READY))
    later = now + timedelta(seconds=5)
    if taken_over:
        ledger.acquire_lock(DAY, "next", "me:1", stale_after_s=300, now=later)
        assert ledger.lock_for(DAY).run_id == "next"  # type: ignore[union-attr]
    else:
        with pytest.raises(RunInProgress, match="run planned "):
            ledger.acquire_lock(DAY, "next", "me:1", stale_after_s=300, now=later)
