"""`phonesync demo`: a whole night against the sandboxes, then a check of what the server holds.

1. starts `phonesync sandbox` in a separate process (its own CPU core) with fresh state,
2. runs `phonesync run` for the business date with the env file the sandbox wrote,
3. compares every row's recorded outcome with what the synthetic data was built to produce, and
   reads every updated patient back with plain FHIR reads (`GET Patient/{id}`, `_history`) to
   check the new number is there and exactly one version was added;
4. then (unless `--no-extra-nights`) edits the sheet late, runs night D+1 and replays D−3, and
   checks the late edits were caught up and the replay changed nothing newer (`demo_nights.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from phonesync import logs
from phonesync.cli import execute
from phonesync.sandbox.scenario import knob_args
from phonesync.settings import Settings
from phonesync.sync import RunRequest

console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sandbox_command(args: argparse.Namespace, env_file: Path, ports: tuple[int, int]) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "phonesync",
        "sandbox",
        "--patients",
        str(args.patients),
        "--rows",
        str(args.rows),
        "--seed",
        str(args.seed),
        "--write-mode",
        args.write_mode,
        "--auth",
        args.auth,
        *knob_args(args),  # --scenario and every knob option given (latency, limits, faults)
        "--fhir-port",
        str(ports[0]),
        "--sheets-port",
        str(ports[1]),
        "--state-dir",
        str(args.state_dir),
        "--write-env",
        str(env_file),
    ]
    if args.date:
        cmd += ["--date", args.date.isoformat()]
    return cmd


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox exited early (code {proc.returncode}); see its output")
        if time.monotonic() > deadline:
            raise SystemExit("the sandbox did not start within 120 s")
        time.sleep(0.1)


def run_demo(args: argparse.Namespace) -> int:
    if args.date is None and args.extra_nights and args.late_edits > 0:
        args.date = yesterday_in_jakarta()  # night D+1 is then today, never a future date
    state: Path = args.state_dir
    shutil.rmtree(state, ignore_errors=True)  # a demo is a fresh night every time
    state.mkdir(parents=True)
    env_file = state / "sandbox.env"
    ports = (_free_port(), _free_port())
    console.print(
        f"[bold]phonesync demo[/]: {args.rows:,} sheet rows, {args.patients:,} patients, "
        f"{args.latency_ms:g} ms latency — starting the sandbox…"
    )
    started = time.monotonic()
    proc = subprocess.Popen(_sandbox_command(args, env_file, ports))  # noqa: S603 - our own CLI
    try:
        _wait_for(env_file, proc)
        console.print(f"sandbox ready after {time.monotonic() - started:.1f} s; running the sync")
        settings = Settings.load(env_file=env_file, concurrency=args.concurrency)
        logs.configure(settings.log_level, settings.log_format)
        expected = json.loads((state / "expected.json").read_text())
        business_date = expected["business_date"]
        request = RunRequest(business_date=date.fromisoformat(business_date), trigger="demo")
        summary_path = state / "summary.json"
        code = execute(settings, request, str(summary_path))
        summary = json.loads(summary_path.read_text())
        ok = verify(settings, summary, expected)
        cpu_ms = 1000 * summary.get("client_cpu_s", 0.0) / max(summary["rows"]["in_scope"], 1)
        console.print(
            f"wall time {summary['duration_s']:.1f} s · {summary['requests']['total']:,} FHIR "
            f"requests · client CPU {cpu_ms:.2f} ms per row"
        )
        console.print(f"summary file: {summary_path}")
        if args.extra_nights and args.late_edits > 0:
            ok = _extra_nights(args, settings, summary, expected, main_ok=ok)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    shown = sa.engine.make_url(settings.database_url).render_as_string(hide_password=True)
    console.print(f"ledger: {shown}")
    return code if ok else 1


def yesterday_in_jakarta(now: datetime | None = None) -> date:
    """The demo's night D when it also runs night D+1: yesterday in Asia/Jakarta (the sandbox's
    zone), so that D+1 is today — a business date after today is refused everywhere else."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(ZoneInfo("Asia/Jakarta")).date() - timedelta(days=1)


def _extra_nights(
    args: argparse.Namespace,
    settings: Settings,
    summary: dict[str, Any],
    expected: dict[str, Any],
    *,
    main_ok: bool,
) -> bool:
    """Late edits, night D+1 and a replay of D−3; only after a main night that passed its check."""
    from phonesync.sandbox.demo_nights import run_extra_nights

    if not main_ok or summary["status"] != "succeeded":
        console.print("[red]late edits and replay skipped[/]: the main night did not pass")
        return False
    console.print(f"late edits ({args.late_edits:,}), night D+1 and a replay of D−3…")
    report = run_extra_nights(
        settings,
        summary["run_id"],
        date.fromisoformat(expected["business_date"]),
        expected["expected"],
        late_edits=args.late_edits,
        seed=args.seed,
        state_dir=args.state_dir,
        console=console,
    )
    return report.ok


def verify(settings: Settings, summary: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Outcomes as built into the data, and the server's state read back with plain FHIR reads."""
    from phonesync.ledger.store import Ledger

    ledger = Ledger.open(settings.database_url)
    try:
        records = ledger.results(summary["run_id"])
    finally:
        ledger.close()
    want: dict[str, str] = expected["expected"]
    got = {str(r.row): str(r.outcome) for r in records}
    mismatched = Counter(
        f"{want[row]} → {got.get(row, 'missing')}" for row in want if got.get(row) != want[row]
    )
    extra = [row for row in got if row not in want]
    updated = {r.patient_id for r in records if str(r.outcome) == "updated" and r.patient_id}
    readback = asyncio.run(_read_back(settings, sorted(updated)))
    table = Table(title="check against the sandbox")
    table.add_column("check")
    table.add_column("result", justify="right")
    adds_up = sum(summary["outcomes"].values()) == summary["rows"]["in_scope"]
    table.add_row("outcomes add up to rows in scope", "yes" if adds_up else "NO")
    table.add_row(
        "rows with the outcome the data was built for",
        f"{len(want) - sum(mismatched.values()):,} / {len(want):,}",
    )
    table.add_row(
        "updated patients read back with exactly one new version",
        f"{readback['one_new_version']:,} / {len(updated):,}",
    )
    table.add_row(
        "updated patients whose record holds one active mobile number",
        f"{readback['one_mobile']:,} / {len(updated):,}",
    )
    console.print(table)
    for what, count in mismatched.most_common(10):
        console.print(f"  [red]mismatch[/] {what}: {count}")
    ok = adds_up and not mismatched and not extra and readback["one_new_version"] == len(updated)
    ok = ok and readback["one_mobile"] == len(updated)
    console.print("[green]demo check passed[/]" if ok else "[red]demo check FAILED[/]")
    return ok


async def _read_back(settings: Settings, ids: list[str]) -> dict[str, int]:
    assert settings.fhir_base_url is not None  # noqa: S101 - the sandbox env sets it
    headers = {}
    if settings.fhir_api_key is not None:
        headers[settings.fhir_api_key_header] = settings.fhir_api_key.get_secret_value()
    base = settings.fhir_base_url.rstrip("/")
    counts: Counter[str] = Counter()
    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def check(pid: str) -> None:
            async with sem:
                async with session.get(f"{base}/Patient/{pid}/_history") as resp:
                    history = await resp.json(content_type=None)
                async with session.get(f"{base}/Patient/{pid}") as resp:
                    patient = await resp.json(content_type=None)
            if history.get("total", len(history.get("entry", []))) == 2:
                counts["one_new_version"] += 1
            mobiles = [
                t
                for t in patient.get("telecom", [])
                if t.get("system") == "phone"
                and t.get("use") == "mobile"
                and not (t.get("period") or {}).get("end")
            ]
            if len(mobiles) == 1:
                counts["one_mobile"] += 1

        await asyncio.gather(*(check(pid) for pid in ids))
    return {"one_new_version": counts["one_new_version"], "one_mobile": counts["one_mobile"]}
