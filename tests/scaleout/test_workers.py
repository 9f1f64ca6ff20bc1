"""Scale-out on a real PostgreSQL and the loopback sandboxes: plan once, N workers, one outcome."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.scaleout.conftest import DAY, open_sandbox, plan, settings_env

from phonesync.cli import main
from phonesync.errors import ConfigError
from phonesync.fhir.session import open_fhir
from phonesync.ledger.schema import queue_items
from phonesync.ledger.store import Ledger
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.scaleout import queue
from phonesync.scaleout.coordinator import finish_by_operator, require_postgres, sealer_for
from phonesync.scaleout.worker import run_worker, worker_settings
from phonesync.settings import Settings

pytestmark = pytest.mark.postgres

RATE = 240.0  # the whole run's budget (PHONESYNC_MAX_RATE), requests per second


def _outcomes(ledger: Ledger, run_id: str) -> dict[int, str]:
    records = ledger.results(run_id)
    assert len(records) == len({r.row for r in records})  # the ledger's unique (run, row)
    return {r.row: str(r.outcome) for r in records}


def _new_versions(sb: LocalSandbox) -> Counter[str]:
    return Counter({pid: len(sb.store.history(pid)) - 1 for pid in sb.store.ids()})


def test_four_worker_processes_process_every_row_exactly_once(tmp_path: Path, pg_url: str) -> None:
    """Four `phonesync worker` processes: one outcome per row, one new version, no 429."""
    data = generate(seed=11, patients=2200, rows=2000, business_date=DAY)
    profile = FhirProfile(rate_limit_rps=RATE * 1.25, rate_limit_burst=20)
    with (
        open_sandbox(
            data, tmp_path, pg_url, profile, max_rate=RATE, concurrency=32, scaleout_batch=40
        ) as sb,
        Ledger.open(pg_url) as ledger,
    ):
        planned = plan(sb, ledger, workers=4)
        sheet_reads = sb.sheets_stats.read_requests
        env = os.environ | settings_env(sb.settings)
        argv = [sys.executable, "-m", "phonesync", "worker", "--date", DAY.isoformat()]
        workers = [
            subprocess.Popen(
                argv,
                env=env | {"JOB_COMPLETION_INDEX": str(i)},
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for i in range(4)
        ]
        logs = [p.communicate(timeout=240)[0].decode() for p in workers]
        codes = [p.returncode for p in workers]
        run = ledger.get_run(planned.run_id)
        got = _outcomes(ledger, planned.run_id)
        statuses = Counter(r.status for r in sb.store.requests)
        assert sb.sheets_stats.read_requests == sheet_reads  # the sheet was read once, by plan
    assert codes == [0, 0, 0, 0], logs
    assert run is not None
    assert run.status == "succeeded"
    assert run.summary is not None
    assert got == data.expected
    updated = {r.patient_id for r in ledger_results_updated(pg_url, planned.run_id)}
    versions = _new_versions(sb)
    assert {pid for pid, n in versions.items() if n} == updated
    assert set(versions.values()) <= {0, 1}
    # each worker paced at its share; the rare 429 is the in-process sandbox answering a backlog
    # at once after a stall (it counts arrivals when it gets to them), retried like any 429
    assert all(f"max_rate {RATE / 4}/s, concurrency 8" in log for log in logs)
    assert statuses[429] <= len(sb.store.requests) // 200
    assert run.summary["requests"]["total"] == len(sb.store.requests)
    assert sum(run.summary["outcomes"].values()) == run.summary["rows"]["in_scope"]


def ledger_results_updated(url: str, run_id: str) -> list[object]:
    with Ledger.open(url) as ledger:
        return [r for r in ledger.results(run_id) if r.outcome is Outcome.UPDATED]


def test_rows_of_a_dead_worker_are_claimed_again_and_never_written_twice(
    small_night: tuple[LocalSandbox, Ledger], synth_small: SandboxData
) -> None:
    """A worker that wrote rows and died: after its lease they end `unchanged`, one version."""
    sb, ledger = small_night
    planned = plan(sb, ledger, workers=2)
    sealer = sealer_for(sb.settings)
    now = datetime.now(UTC)
    claimed = queue.claim(ledger.engine, planned.run_id, "dead", batch=10, lease_s=60,
                          now=now, sealer=sealer)  # fmt: skip

    async def write_and_die() -> list[str]:
        async with open_fhir(sb.settings) as fhir:
            updater = fhir.updater(DAY)
            results = [await updater.update(item) for item, _ in claimed]
        return [r.patient_id for r in results if r.outcome is Outcome.UPDATED and r.patient_id]

    written = asyncio.run(write_and_die())
    later = now + timedelta(seconds=61)
    outcome = asyncio.run(
        run_worker(sb.settings, ledger, DAY, "alive", open_fhir, wait_s=0, now=lambda: later)
    )
    got = _outcomes(ledger, planned.run_id)
    assert written
    assert outcome.summary is not None
    assert outcome.summary["status"] == "succeeded"
    assert {row for row, _ in got.items()} == set(synth_small.expected)
    for item, _ in claimed:
        expected = synth_small.expected[item.row]
        assert got[item.row] == ("unchanged" if expected == "updated" else expected)
    assert all(len(sb.store.history(pid)) == 2 for pid in written)
    assert set(_new_versions(sb).values()) <= {0, 1}


def test_a_live_lease_is_not_claimed_by_another_worker(
    small_night: tuple[LocalSandbox, Ledger],
) -> None:
    """Claims skip items under a live lease; they come back once it has run out."""
    sb, ledger = small_night
    planned = plan(sb, ledger, workers=2)
    sealer, now = sealer_for(sb.settings), datetime.now(UTC)

    def take(worker: str, at: datetime) -> set[int]:
        got = queue.claim(ledger.engine, planned.run_id, worker, batch=5, lease_s=30, now=at,
                          sealer=sealer)  # fmt: skip
        return {item.row for item, _ in got}

    first = take("a", now)
    second = take("b", now)
    assert len(first) == len(second) == 5
    assert not first & second
    third = take("c", now + timedelta(seconds=20))
    assert not third & (first | second)
    assert queue.renew(ledger.engine, planned.run_id, "a", lease_s=30, now=now) == 5
    assert take("d", now + timedelta(seconds=31)) == first  # lapsed: first in sheet order


def test_work_items_are_stored_sealed_never_in_clear(
    small_night: tuple[LocalSandbox, Ledger], synth_small: SandboxData
) -> None:
    """The queue holds NIKs and phone numbers only encrypted (and as keyed hashes)."""
    sb, ledger = small_night
    planned = plan(sb, ledger, workers=3)
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(queue_items)).mappings().all()
    dump = repr([dict(m) for m in stored])
    niks = {str(r[1]).strip() for r in synth_small.values[1:] if len(r) > 1 and r[1]}
    digits = {n for n in niks if n.isdigit() and len(n) == 16}
    assert planned.items == len(stored) > 0
    assert digits
    assert not any(n in dump for n in digits)
    assert "+628" not in dump


def test_scale_out_refuses_sqlite(tmp_path: Path) -> None:
    """On SQLite there is no SKIP LOCKED: scale-out is refused with a clear ConfigError."""
    settings = Settings.load(env_file=None, database_url=f"sqlite:///{tmp_path / 'l.sqlite3'}")
    with pytest.raises(ConfigError, match="needs a PostgreSQL ledger"):
        require_postgres(settings)


def test_the_rate_budget_is_divided_among_workers() -> None:
    """Each worker gets max_rate / N and concurrency / N (at least one)."""
    settings = Settings.load(env_file=None, max_rate=100.0, concurrency=32)
    share = worker_settings(settings, 4)
    assert (share.max_rate, share.concurrency) == (25.0, 8)
    assert worker_settings(settings, 64).concurrency == 1


def test_operator_finish_fails_unworked_rows_and_aborts_the_run(
    small_night: tuple[LocalSandbox, Ledger], synth_small: SandboxData
) -> None:
    """`plan --finish` with no workers: every queued row failed, outcomes add up, `aborted`."""
    sb, ledger = small_night
    planned = plan(sb, ledger, workers=2)
    summary = finish_by_operator(ledger, sb.settings, DAY)
    got = _outcomes(ledger, planned.run_id)
    assert set(got) == set(synth_small.expected)
    assert summary["status"] == "aborted"
    assert summary["outcomes"]["failed"] >= planned.items
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"]
    assert ledger.lock_for(DAY) is None


def test_operator_finish_says_rows_claimed_by_a_stopped_worker_may_have_been_written(
    small_night: tuple[LocalSandbox, Ledger], synth_small: SandboxData
) -> None:
    """`plan --finish` after a worker was killed mid-batch: the rows it had claimed (some
    written) never say "not attempted"; rows no worker took do; the next run reads the records
    of the written ones and ends them `unchanged` without a second write."""
    from tests.sync.nights import results_by_row, run_night

    from phonesync.fhir.updater import UNCHANGED_ON_RECORD

    sb, ledger = small_night
    planned = plan(sb, ledger, workers=2)
    sealer, now = sealer_for(sb.settings), datetime.now(UTC)
    claimed = queue.claim(ledger.engine, planned.run_id, "killed", batch=10, lease_s=60,
                          now=now, sealer=sealer)  # fmt: skip

    async def write_and_die() -> set[int]:
        async with open_fhir(sb.settings) as fhir:
            updater = fhir.updater(DAY)
            results = [await updater.update(item) for item, _ in claimed[:6]]
        return {r.row for r in results if r.outcome is Outcome.UPDATED}

    written = asyncio.run(write_and_die())
    later = now + timedelta(seconds=61)  # the killed worker's lease has run out
    summary = finish_by_operator(ledger, sb.settings, DAY, now=lambda: later)
    records = {r.row: r for r in ledger.results(planned.run_id)}
    claimed_rows = {item.row for item, _ in claimed}
    second = run_night(sb)
    again = results_by_row(sb, second.stats.run_id)
    assert written
    assert summary["status"] == "aborted"
    for row in claimed_rows:
        reason = str(records[row].reason)
        assert not reason.startswith("not attempted"), reason
        assert "may have been written by a worker that stopped" in reason
        assert "the next run checks the record" in reason
    others = [
        r for row, r in records.items() if r.outcome is Outcome.FAILED and row not in claimed_rows
    ]
    assert others
    assert all(
        str(r.reason).startswith("not attempted: run finished by an operator") for r in others
    )
    for row in written:
        assert again[row].outcome is Outcome.UNCHANGED
        assert again[row].reason == UNCHANGED_ON_RECORD
    assert set(_new_versions(sb).values()) <= {0, 1}


def test_a_worker_joining_a_finished_run_does_nothing(
    small_night: tuple[LocalSandbox, Ledger],
) -> None:
    """A restarted worker after the run ended makes no request and records nothing."""
    sb, ledger = small_night
    planned = plan(sb, ledger, workers=1)
    first = asyncio.run(run_worker(sb.settings, ledger, DAY, "w1", open_fhir, wait_s=0))
    requests = len(sb.store.requests)
    again = asyncio.run(run_worker(sb.settings, ledger, DAY, "w2", open_fhir, wait_s=0))
    assert first.summary is not None
    assert first.run_id == planned.run_id
    assert again.rows == 0
    assert again.summary is None
    assert again.run_status == "succeeded"
    assert len(sb.store.requests) == requests


@pytest.mark.parametrize("command", [["plan", "--workers", "2"], ["worker"]])
def test_scale_out_commands_exit_2_on_sqlite(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync plan` and `worker` on a SQLite ledger: exit code 2, nothing started."""
    env_file = tmp_path / "sqlite.env"
    env_file.write_text(f"PHONESYNC_DATABASE_URL=sqlite:///{tmp_path / 'l.sqlite3'}\n")
    code = main(["--env-file", str(env_file), *command, "--date", DAY.isoformat()])
    assert code == 2
    assert "needs a PostgreSQL ledger" in capsys.readouterr().err
    assert not (tmp_path / "l.sqlite3").exists()


def test_a_scale_out_night_of_unknown_niks_is_not_a_success(
    tmp_path: Path, pg_url: str, synth_small: SandboxData
) -> None:
    """A wrong NIK system in scale-out: the finished run is completed_with_failures, warned."""
    wrong = "https://fhir.kemkes.go.id/id/nikk"
    with (
        open_sandbox(synth_small, tmp_path, pg_url, nik_system=wrong) as sb,
        Ledger.open(pg_url) as ledger,
    ):
        planned = plan(sb, ledger, workers=1)
        outcome = asyncio.run(run_worker(sb.settings, ledger, DAY, "w0", open_fhir, wait_s=0))
    assert outcome.summary is not None
    assert outcome.summary["status"] == "completed_with_failures"
    (warning,) = outcome.summary["warnings"]
    assert "PHONESYNC_NIK_SYSTEM" in warning
    assert outcome.summary["run_id"] == planned.run_id
    assert sb.store.writes == 0
