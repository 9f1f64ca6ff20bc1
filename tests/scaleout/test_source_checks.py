"""The checks on the sheet itself in scale-out: the same warnings, status and exit code as `run`.

A single run ends `completed_with_failures` (exit 1) when the sheet has rows but none for the
night ("no rows for D …", off with PHONESYNC_QUIET_NIGHTS=true) or rows dated after tomorrow
(`sync.source_anomalies`). A scale-out run is finished by another process than the one that read
the sheet — the plan step itself when nothing needs the FHIR server, else the worker that
records the last item — so the plan step stores the warnings with the queued run (migration
0007). Each night here runs twice on the same sheet and FHIR data: once as `run` on a SQLite
ledger, once as `plan` + `worker` on a real PostgreSQL one; the warnings must be the same text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from tests.safety.nights import night_of, nik_for, patient
from tests.safety.nights import run as run_at
from tests.scaleout.conftest import DAY

from phonesync.cli import main
from phonesync.crypto import new_key
from phonesync.fhir.session import open_fhir
from phonesync.ledger.migrate import alembic_config, head_revision
from phonesync.ledger.schema import metadata, queue_runs
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.scaleout import queue
from phonesync.scaleout.coordinator import plan_night
from phonesync.scaleout.worker import run_worker
from phonesync.source import open_source
from phonesync.sync import RunRequest

HEADER: list[Any] = ["NIK", "No HP", "last_updated_date"]
NIK_A = "3174014203950001"  # no patient carries it: not found
NIK_B = "3174013112850002"
BEFORE_0007 = "0006_dashboard_sessions"
NO_ROWS_FOR_DAY = (
    "no rows for 2024-03-15: the sheet has 3 data rows, the newest dated 2024-03-12: is the "
    "sheet still being filled, or PHONESYNC_SHEET_RANGE pointing at the old tab?"
)
FUTURE_ROWS = (
    "2 rows are dated after tomorrow (today is 2024-03-15 in Asia/Jakarta), the furthest "
    "2025-12-04 (sheet rows 3, 5): a typo in the year? No night takes such a row before its "
    "date, and then it overwrites what was set meanwhile (newer wins): fix the date in the sheet"
)


def _sandbox(
    values: list[list[Any]],
    state_dir: Path,
    url: str | None = None,
    patients: Sequence[dict[str, Any]] = (),
    **over: Any,
) -> LocalSandbox:
    """Both sandboxes on `values`; a PostgreSQL ledger at `url`, else SQLite in `state_dir`."""
    overrides = {"snapshot_key": new_key(), "sync_mode": "daily"} | over
    return LocalSandbox(list(patients), values, state_dir, database_url=url, overrides=overrides)


def _env(sb: LocalSandbox, path: Path, *, quiet_nights: bool = False) -> Path:
    """The sandbox's env file; `quiet_nights`: the same with PHONESYNC_QUIET_NIGHTS=true."""
    sb.write_env(path)
    if quiet_nights:
        text = path.read_text()
        assert "PHONESYNC_QUIET_NIGHTS=False\n" in text
        path.write_text(
            text.replace("PHONESYNC_QUIET_NIGHTS=False\n", "PHONESYNC_QUIET_NIGHTS=true\n")
        )
    return path


def _cli(env: Path, *argv: str, day: date = DAY) -> int:
    return main(["--env-file", str(env), *argv, "--date", day.isoformat()])


def _summary(path: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary


def test_a_scale_out_night_without_rows_for_its_date_ends_completed_with_failures(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows dated earlier days only: nothing in scope, so `plan` ends the run at once — with the
    "no rows for D" warning, completed_with_failures, exit 1, like `run`; a worker started
    afterwards exits 1 too. With PHONESYNC_QUIET_NIGHTS=true both succeed (exit 0)."""
    values = [HEADER] + [[NIK_A, f"0812-3456-78{d}", f"{d}/03/2024 10:00"] for d in (10, 11, 12)]
    with (
        _sandbox(values, tmp_path / "single") as single,
        _sandbox(values, tmp_path / "scale", pg_url) as scale,
        Ledger.open(pg_url) as ledger,
    ):
        single_env = _env(single, tmp_path / "single.env")
        scale_env = _env(scale, tmp_path / "scale.env")
        run_code = _cli(single_env, "run", "--summary-json", str(tmp_path / "run.json"))
        capsys.readouterr()
        plan_code = _cli(scale_env, "plan", "--workers", "2", "--summary-json",
                         str(tmp_path / "plan.json"))  # fmt: skip
        err = capsys.readouterr().err
        worker_code = _cli(scale_env, "worker", "--wait-s", "0")
        qrun = queue.latest_for(ledger.engine, DAY)
        assert qrun is not None
        recorded = ledger.get_run(qrun.run_id)
        lock = ledger.lock_for(DAY)
        quiet_run = _cli(_env(single, tmp_path / "q1.env", quiet_nights=True), "run")
        quiet_env = _env(scale, tmp_path / "q2.env", quiet_nights=True)
        quiet_plan = _cli(quiet_env, "plan", "--workers", "2", "--summary-json",
                          str(tmp_path / "quiet.json"))  # fmt: skip
        quiet_worker = _cli(quiet_env, "worker", "--wait-s", "0")
        assert scale.fhir_requests() == 0  # the plan step never talks to the FHIR server
    run, planned, quiet = (_summary(tmp_path / f"{n}.json") for n in ("run", "plan", "quiet"))
    assert (run_code, plan_code, worker_code) == (1, 1, 1)
    assert planned["rows"]["in_scope"] == run["rows"]["in_scope"] == 0
    assert planned["warnings"] == run["warnings"] == [NO_ROWS_FOR_DAY]
    assert planned["status"] == run["status"] == "completed_with_failures"
    assert planned["error"] == run["error"] == NO_ROWS_FOR_DAY
    assert NO_ROWS_FOR_DAY in err
    assert qrun.state == queue.FINISHED
    assert qrun.source_warnings == (NO_ROWS_FOR_DAY,)
    assert recorded is not None
    assert (recorded.status, recorded.error) == ("completed_with_failures", NO_ROWS_FOR_DAY)
    assert lock is None
    assert (quiet_run, quiet_plan, quiet_worker) == (0, 0, 0)
    assert (quiet["status"], quiet["warnings"], quiet["error"]) == ("succeeded", [], None)


def test_a_night_whose_sheet_stopped_is_reported_by_the_worker_that_finishes_it(
    tmp_path: Path, pg_url: str
) -> None:
    """Night D+1 has work — D's not-found row searched again by catch-up — but no row of its
    own: the worker that finishes the run reports "no rows for D+1" and exits 1, the same text
    as `run` gives. Night D (rows of its own) succeeds both ways."""
    values = [
        HEADER,
        [NIK_A, "0812-3456-7890", "15/03/2024 10:00"],  # not found: open for catch-up
        [NIK_B, "0812-3456-7891", "kemarin"],  # no readable date: in every night's scope
    ]
    nights = (DAY, DAY + timedelta(1))
    with (
        _sandbox(values, tmp_path / "single", sync_mode="catch-up") as single,
        _sandbox(values, tmp_path / "scale", pg_url, sync_mode="catch-up") as scale,
        Ledger.open(pg_url) as ledger,
    ):
        env = _env(scale, tmp_path / "scale.env")
        singles = [run_at(single, day, night_of(day)).summary for day in nights]
        codes, summaries = [], []
        for n, day in enumerate(nights):
            assert _cli(env, "plan", "--workers", "1", day=day) == 0  # rows queued
            path = tmp_path / f"worker{n}.json"
            codes.append(_cli(env, "worker", "--wait-s", "0", "--summary-json", str(path), day=day))
            summaries.append(_summary(path))
        qrun = queue.latest_for(ledger.engine, nights[1])
        assert qrun is not None
        results = {r.row: str(r.outcome) for r in ledger.results(qrun.run_id)}
    assert codes == [0, 1]
    assert results == {2: "patient_not_found", 3: "invalid_date"}
    for got, want in zip(summaries, singles, strict=True):
        assert got["rows"]["in_scope"] == want["rows"]["in_scope"]
        assert (got["status"], got["warnings"]) == (want["status"], want["warnings"])
    assert summaries[0]["warnings"] == []
    assert summaries[1]["warnings"] == [
        "no rows for 2024-03-16: the sheet has 2 data rows, the newest dated 2024-03-15: is the "
        "sheet still being filled, or PHONESYNC_SHEET_RANGE pointing at the old tab?"
    ]
    assert summaries[1]["status"] == "completed_with_failures"


def test_rows_dated_after_tomorrow_are_reported_by_a_scale_out_night(
    tmp_path: Path, pg_url: str
) -> None:
    """A year typo (`04/12/2025` on 2024-03-15) in a night with work for the workers: the worker
    that finishes reports the rows (count, furthest date, sheet rows) with the text `run` gives,
    today taken on the plan step's clock; tomorrow's row is not counted."""
    births = {"P1": (date(1995, 3, 2), "female"), "P2": (date(1985, 12, 31), "male")}
    niks = {pid: nik_for(birth, sex, n) for n, (pid, (birth, sex)) in enumerate(births.items(), 1)}
    patients = [
        patient(pid, niks[pid], birth, sex, f"+62811000000{n}")
        for n, (pid, (birth, sex)) in enumerate(births.items(), 1)
    ]
    # the later rows carry a third NIK: a later row of P1's or P2's would hold their rows of the
    # night back (newer wins), and the workers would have nothing to do
    other = nik_for(date(1990, 1, 1), "male", 3)
    values = [
        HEADER,
        [niks["P1"], "0812-3456-7890", "15/03/2024 10:00"],
        [other, "0812-3456-7891", "04/12/2025 10:00"],  # r3: the year typed 2025
        [other, "0812-3456-7892", "16/03/2024 00:30"],  # tomorrow (a WIT clock)
        [other, "0812-3456-7893", "20/03/2024"],  # r5
        [niks["P2"], "0812-3456-7894", "15/03/2024 09:00"],
    ]
    at = night_of(DAY)
    with (
        _sandbox(values, tmp_path / "single", patients=patients) as single,
        _sandbox(values, tmp_path / "scale", pg_url, patients=patients) as scale,
        Ledger.open(pg_url) as ledger,
    ):
        want = run_at(single, DAY, at).summary
        source = open_source(scale.settings)
        request = RunRequest(DAY)
        planned = asyncio.run(
            plan_night(scale.settings, ledger, source, request, 2, now=lambda: at)
        )
        path = tmp_path / "worker.json"
        env = _env(scale, tmp_path / "scale.env")
        code = _cli(env, "worker", "--wait-s", "0", "--summary-json", str(path))
        writes = scale.store.writes
    got = _summary(path)
    assert planned.items == 2  # both rows of the night go to the workers
    assert planned.summary is None
    assert code == 1
    assert got["outcomes"]["updated"] == want["outcomes"]["updated"] == 2
    assert writes == 2
    assert got["warnings"] == want["warnings"] == [FUTURE_ROWS]
    assert got["status"] == want["status"] == "completed_with_failures"
    assert got["error"] == want["error"] == got["warnings"][0]
    assert not any(n in json.dumps(got) for n in niks.values())
    assert "+628" not in json.dumps(got)


def _columns(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns("queue_runs")}


def _migrate(engine: sa.Engine, *, down_to: str | None = None) -> None:
    with engine.begin() as conn:
        config = alembic_config(conn)
        if down_to is None:
            command.upgrade(config, "head")
        else:
            command.downgrade(config, down_to)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migration_0007_adds_the_source_warnings_column_and_takes_it_back(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """0007 adds `queue_runs.source_warnings` (then the ledger matches `schema.py`) on SQLite
    and PostgreSQL; its downgrade drops it again, and upgrading once more brings it back."""
    url = (
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    with Ledger.open(url) as ledger:
        engine = ledger.engine
        assert "source_warnings" in _columns(engine)
        _migrate(engine, down_to=BEFORE_0007)
        assert "source_warnings" not in _columns(engine)
        assert "error" in _columns(engine)
        _migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == head_revision() == "0007_queue_source_warnings"
            assert compare_metadata(context, metadata) == []


@pytest.mark.postgres
def test_a_run_queued_before_0007_finishes_after_the_upgrade_without_source_checks(
    tmp_path: Path, pg_url: str
) -> None:
    """A night queued by a phonesync without the column (downgraded to 0006 after its plan):
    once migrated, its `source_warnings` is NULL and its worker finishes it as before."""
    values = [
        HEADER,
        [NIK_A, "0812-3456-7890", "15/03/2024 10:00"],
        [NIK_B, "0812-3456-7891", "20/03/2024"],  # a future row: the old plan never checked
    ]
    with _sandbox(values, tmp_path / "scale", pg_url) as scale:
        with Ledger.open(pg_url) as ledger:
            source = open_source(scale.settings)
            planned = asyncio.run(
                plan_night(
                    scale.settings, ledger, source, RunRequest(DAY), 1, now=lambda: night_of(DAY)
                )
            )
            assert planned.items == 1
            _migrate(ledger.engine, down_to=BEFORE_0007)
        with Ledger.open(pg_url) as ledger:  # migrates to head
            with ledger.engine.connect() as conn:
                stored = conn.execute(sa.select(queue_runs.c.source_warnings)).scalar_one()
            outcome = asyncio.run(
                run_worker(scale.settings, ledger, DAY, "w0", open_fhir, wait_s=0)
            )
    assert stored is None
    assert outcome.summary is not None
    assert (outcome.summary["status"], outcome.summary["warnings"]) == ("succeeded", [])
