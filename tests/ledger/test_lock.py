"""The per-date run lock on SQLite and PostgreSQL: one holder, stale take-over, real processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from phonesync.errors import PhonesyncError, RunInProgress
from phonesync.ledger import Ledger, engine, locks

from .helpers import DAY, T0, dead_pid, start_run

STALE_S = 300.0


def test_second_acquire_raises_naming_the_holder(ledger: Ledger) -> None:
    """While run A holds the date, run B gets RunInProgress naming A (exit code 5)."""
    ledger.acquire_lock(DAY, "run-a", "host-a:1", stale_after_s=STALE_S, now=T0)
    later = T0 + timedelta(seconds=STALE_S - 1)
    with pytest.raises(RunInProgress, match="run run-a \\(host-a:1\\) holds the lock") as caught:
        ledger.acquire_lock(DAY, "run-b", "host-b:2", stale_after_s=STALE_S, now=later)
    assert caught.value.exit_code == 5
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert (holder.run_id, holder.heartbeat_at) == ("run-a", T0)


def test_one_run_at_a_time_whatever_the_date(ledger: Ledger) -> None:
    """A run for another date is refused too (newer-wins needs the other run's records)."""
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0)
    with pytest.raises(RunInProgress, match="run run-a") as caught:
        ledger.acquire_lock(date(2024, 3, 14), "run-b", "h:2", stale_after_s=STALE_S, now=T0)
    assert caught.value.exit_code == 5
    ledger.release_lock(DAY, "run-a")
    ledger.acquire_lock(date(2024, 3, 14), "run-b", "h:2", stale_after_s=STALE_S, now=T0)
    holder = ledger.lock_for()
    assert holder is not None
    assert holder.run_id == "run-b"


def test_reacquiring_own_lock_refreshes_it(ledger: Ledger) -> None:
    """The holder may acquire again (e.g. resuming); the heartbeat moves on."""
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0)
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0 + timedelta(minutes=1))
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert (holder.acquired_at, holder.heartbeat_at) == (T0, T0 + timedelta(minutes=1))


def test_stale_lock_is_taken_over_and_its_run_aborted(ledger: Ledger) -> None:
    """A holder silent for longer than stale_after_s loses the lock; its run ends `aborted`."""
    start_run(ledger, "run-a")
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0)
    ledger.heartbeat(DAY, "run-a", T0 + timedelta(seconds=60))
    later = T0 + timedelta(seconds=60 + STALE_S + 1)
    ledger.acquire_lock(DAY, "run-b", "h:2", stale_after_s=STALE_S, now=later)
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert (holder.run_id, holder.owner, holder.acquired_at) == ("run-b", "h:2", later)
    old = ledger.get_run("run-a")
    assert old is not None
    assert old.status == "aborted"
    assert old.finished_at == later
    assert old.error is not None
    assert "taken over by run run-b" in old.error


def test_heartbeat_keeps_the_lock_and_notices_losing_it(ledger: Ledger) -> None:
    """Heartbeats keep a long run's lock fresh; after a take-over the old holder must stop."""
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0)
    for minute in range(1, 20):
        ledger.heartbeat(DAY, "run-a", T0 + timedelta(minutes=minute))
    with pytest.raises(RunInProgress, match="run-a"):
        ledger.acquire_lock(
            DAY, "run-b", "h:2", stale_after_s=STALE_S, now=T0 + timedelta(minutes=20)
        )
    ledger.acquire_lock(DAY, "run-b", "h:2", stale_after_s=STALE_S, now=T0 + timedelta(hours=1))
    with pytest.raises(RunInProgress, match=r"run run-a no longer holds.*run-b"):
        ledger.heartbeat(DAY, "run-a", T0 + timedelta(hours=1, minutes=1))


def test_release_frees_the_date_but_only_for_the_holder(ledger: Ledger) -> None:
    """Only the holder's release frees the date; afterwards another run may take it."""
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0)
    ledger.release_lock(DAY, "run-b")
    assert ledger.lock_for(DAY) is not None
    ledger.release_lock(DAY, "run-a")
    assert ledger.lock_for(DAY) is None
    ledger.acquire_lock(DAY, "run-b", "h:2", stale_after_s=STALE_S, now=T0)
    holder = ledger.lock_for(DAY)
    assert holder is not None
    assert holder.run_id == "run-b"


def test_abandoned_runs_are_marked_aborted(ledger: Ledger) -> None:
    """Runs left `running` behind a stale lock (or lockless for a day) end `aborted`."""
    start_run(ledger, "dead")
    ledger.acquire_lock(DAY, "dead", "h:1", stale_after_s=STALE_S, now=T0)
    start_run(ledger, "alive", business_date=date(2024, 3, 16))  # lockless (e.g. a dry run)
    start_run(ledger, "old-dry", business_date=date(2024, 3, 14), dry_run=True)
    start_run(ledger, "new-dry", business_date=date(2024, 3, 14), dry_run=True)
    now = T0 + timedelta(seconds=STALE_S + 10)
    ledger.finish_run("new-dry", status="succeeded", summary={}, finished_at=now)
    assert ledger.mark_abandoned_runs(STALE_S, now) == ["dead"]
    assert ledger.lock_for() is None
    statuses = {r.run_id: r.status for r in ledger.list_runs()}
    assert statuses == {
        "dead": "aborted",
        "alive": "running",
        "old-dry": "running",
        "new-dry": "succeeded",
    }
    assert ledger.mark_abandoned_runs(STALE_S, T0 + timedelta(days=1, seconds=1)) == [
        "alive",
        "old-dry",
    ]


def _race(url: str, name: str, days: list[date], barrier: Any, out: Any) -> None:
    """Child process: open the (maybe fresh) ledger with the rival, then race for every date."""
    barrier.wait(timeout=60)
    ledger = Ledger.open(url)
    try:
        for day in days:
            barrier.wait(timeout=60)
            try:
                ledger.acquire_lock(day, f"{name}-{day}", name, stale_after_s=STALE_S, now=T0)
            except RunInProgress as exc:
                out.put((day, name, False, str(exc), ""))
                barrier.wait(timeout=60)
            else:
                holder = ledger.lock_for()
                out.put((day, name, True, "", holder.run_id if holder else ""))
                barrier.wait(timeout=60)  # the rival has tried: give the lock back
                ledger.release_lock(day, f"{name}-{day}")
    finally:
        ledger.close()


def test_two_processes_racing_for_a_date_one_wins(ledger_url: str) -> None:
    """Two processes start the same dates at the same moment: exactly one wins each (C8 C).

    They also open the not yet migrated database together, so its migration must run once.
    """
    context = multiprocessing.get_context("spawn")
    days = [DAY + timedelta(days=i) for i in range(20)]
    barrier = context.Barrier(2)
    out = context.Queue()
    workers = [
        context.Process(target=_race, args=(ledger_url, name, days, barrier, out))
        for name in ("proc-1", "proc-2")
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=120) for _ in range(2 * len(days))]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    for day in days:
        outcomes = [r for r in results if r[0] == day]
        winners = [(name, holder) for _, name, won, _, holder in outcomes if won]
        assert len(winners) == 1, f"{day}: {outcomes}"
        [(winner, holder)] = winners
        [(_, _, _, message, _)] = [r for r in outcomes if not r[2]]
        assert f"run {winner}-{day} " in message
        assert holder == f"{winner}-{day}"


@pytest.mark.parametrize(
    ("owner", "taken_over"),
    [
        (lambda: locks.owner_here(dead_pid()), True),
        (lambda: locks.owner_here(os.getpid()), False),
        (lambda: f"another-host/1:{dead_pid()}", False),
        (lambda: f"old-format-host:{dead_pid()}", False),
    ],
    ids=["killed-here", "alive-here", "other-machine", "unknown-format"],
)
def test_a_killed_holder_on_this_machine_is_taken_over_at_once(
    ledger: Ledger, owner: Any, taken_over: bool
) -> None:
    """After kill -9 the next run needn't wait: a dead PID here frees the lock; doubt keeps it."""
    ledger.acquire_lock(DAY, "run-dead", owner(), stale_after_s=300, now=T0)
    later = T0 + timedelta(seconds=5)
    if taken_over:
        ledger.acquire_lock(DAY, "run-next", "me:1", stale_after_s=300, now=later)
        assert ledger.lock_for(DAY).run_id == "run-next"  # type: ignore[union-attr]
    else:
        with pytest.raises(RunInProgress):
            ledger.acquire_lock(DAY, "run-next", "me:1", stale_after_s=300, now=later)


class _BusyCursor:
    """A DBAPI cursor whose journal-mode switch answers "database is locked" `busy` times."""

    def __init__(self, busy: int, error: str = "database is locked") -> None:
        self.busy = busy
        self.error = error
        self.calls = 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            raise sqlite3.OperationalError(self.error)


def test_switching_a_new_file_to_wal_is_retried_while_a_rival_holds_it() -> None:
    """The WAL switch answers "locked" at once (no busy timeout): retried until it succeeds."""
    waits: list[float] = []
    cursor = _BusyCursor(busy=3)
    engine.enable_wal(cursor, sleep=waits.append, clock=lambda: 0.0)
    assert cursor.calls == 4
    assert waits == [0.005, 0.01, 0.02]


def test_switching_to_wal_gives_up_after_the_busy_timeout_and_on_other_errors() -> None:
    """Still locked at the deadline → the error; any other error → at once, not retried."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        engine.enable_wal(_BusyCursor(busy=10**6), timeout_s=1.0, sleep=sleep, clock=lambda: now[0])
    assert 1.0 <= now[0] < 1.2
    cursor = _BusyCursor(busy=1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk"):
        engine.enable_wal(cursor, sleep=sleep, clock=lambda: now[0])
    assert cursor.calls == 1


def _open_and_lock(url: str, name: str, barrier: threading.Barrier, results: list[str]) -> None:
    """What `phonesync run` does first: open (create, migrate) the ledger, take the date."""
    barrier.wait(timeout=30)
    try:
        with Ledger.open(url) as ledger:
            ledger.acquire_lock(DAY, name, name, stale_after_s=STALE_S, now=T0)
        results.append("locked")
    except RunInProgress:
        results.append("exit 5")
    except PhonesyncError as exc:
        results.append(f"exit {exc.exit_code}: {exc}")


def test_two_threads_opening_a_new_file_for_one_date_give_one_run_and_one_exit_5(
    tmp_path: Path,
) -> None:
    """40 times: two connections create, migrate and lock a new SQLite file at the same moment;
    one gets the lock, the other RunInProgress — never "the ledger cannot be reached"."""
    for attempt in range(40):
        url = f"sqlite:///{tmp_path / f'race-{attempt}.sqlite3'}"
        barrier = threading.Barrier(2)
        results: list[str] = []
        threads = [
            threading.Thread(target=_open_and_lock, args=(url, f"run-{i}", barrier, results))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == ["exit 5", "locked"], f"attempt {attempt}: {results}"


@pytest.fixture
def write_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ledger, sqlite3.Connection]]:
    """A SQLite ledger and a rival connection holding the file's write lock (BEGIN IMMEDIATE,
    not committed: the test lets go with `rival.execute("COMMIT")`); busy timeout 50 ms."""
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(f"sqlite:///{path}")
    rival = sqlite3.connect(path, isolation_level=None)
    try:
        rival.execute("BEGIN IMMEDIATE")
        yield ledger, rival
    finally:
        rival.close()
        ledger.close()


def test_a_locked_sqlite_file_while_taking_the_lock_is_contention_exit_5(
    write_locked: tuple[Ledger, sqlite3.Connection],
) -> None:
    """Another process keeps the file's write lock: retried, then RunInProgress (exit 5)."""
    ledger, rival = write_locked  # a writer that does not let go
    waits: list[float] = []
    with pytest.raises(RunInProgress, match="database is locked") as caught:
        locks.acquire(
            ledger.engine, DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0, sleep=waits.append
        )
    assert caught.value.exit_code == 5
    assert waits == list(locks._BUSY_PAUSES_S)
    rival.execute("COMMIT")
    ledger.acquire_lock(DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0)
    assert ledger.lock_for(DAY).run_id == "run-a"  # type: ignore[union-attr]


def test_a_briefly_locked_sqlite_file_is_waited_for(
    write_locked: tuple[Ledger, sqlite3.Connection],
) -> None:
    """The write lock is given back after the first round: the second round takes the lock."""
    ledger, rival = write_locked

    def let_go(_seconds: float) -> None:
        rival.execute("COMMIT")

    locks.acquire(ledger.engine, DAY, "run-a", "h:1", stale_after_s=STALE_S, now=T0, sleep=let_go)
    assert locks.lock_for(ledger.engine, DAY).run_id == "run-a"  # type: ignore[union-attr]
