"""`phonesync demo`, after the main night D: late edits, night D+1, and a replay of D−3.

The sandbox runs in another process, so the demo changes its sheet the way a person would, through
the Sheets sandbox's own write endpoints (`POST /_sandbox/sheet/edit` and `/_sandbox/sheet/append`,
which are not Google's API):

1. **late edits**: the phone cell of N rows that night D updated gets another number; the date
   cell still says D — what an edit made after the 23:00 run looks like;
2. rows dated D+1 (a further new number for other patients night D updated), and backfill rows
   dated D−3 (older numbers for patients that D or D+1 set);
3. **night D+1** must take by catch-up (`rows.from_catch_up`) exactly the late edits plus night
   D's `patient_not_found` rows (they stay open: the patient may be registered since), update
   the late edits, and update its own rows; the server must then hold the new numbers;
4. **a replay of D−3** must add no version to any patient that D or D+1 wrote (read from the FHIR
   sandbox's `GET /_sandbox/requests`, not from phonesync's own ledger), and its backfill rows
   must all end `superseded`.

The rows changed are chosen among night D's `updated` rows whose NIK has no other row in the
sheet, so every count below has one explanation. Numbers are never printed, only counted.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console
from rich.table import Table

from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.normalise.nik import parse_nik
from phonesync.normalise.phone import normalise_phone
from phonesync.outcomes import Rejected
from phonesync.report import write_summary
from phonesync.sandbox import synth_people as people
from phonesync.settings import Settings
from phonesync.source import SheetRow, open_source
from phonesync.sync import RunRequest, run_sync

# The synthetic sheet's headers (synth.HEADER) the demo writes to.
NIK_COLUMN = "NIK"
PHONE_COLUMN = "No WhatsApp"
DATE_COLUMN = "last_updated_date"
NOTE_COLUMN = "Catatan"


@dataclass
class ExtraNights:
    """What the extra nights did and what the checks found (written to `extra-nights.json`)."""

    late_edits: int = 0
    next_day_rows: int = 0
    backfill_rows: int = 0
    next_day_run: str = ""
    next_day_status: str = ""
    from_catch_up: int = 0
    not_found_on_d: int = 0  # night D's patient_not_found rows: open, so searched again on D+1
    not_found_retried: int = 0
    late_edits_picked_up: int = 0
    late_edits_updated: int = 0
    late_edits_on_server: int = 0
    next_day_updated: int = 0
    replay_run: str = ""
    replay_status: str = ""
    replay_in_scope: int = 0
    replay_outcomes: dict[str, int] = field(default_factory=dict)
    backfill_superseded: int = 0
    replay_write_requests: int = 0
    replay_versions_on_newer: int = 0  # versions added to patients D or D+1 had written: must be 0
    replay_versions_on_others: int = 0  # a legitimate backfill: nothing newer for those patients

    @property
    def ok(self) -> bool:
        n, m = self.late_edits, self.next_day_rows
        return (
            self.next_day_status == self.replay_status == "succeeded"
            and self.late_edits_picked_up == n
            and self.not_found_retried == self.not_found_on_d
            and self.from_catch_up == n + self.not_found_on_d
            and self.late_edits_updated == self.late_edits_on_server == n
            and self.next_day_updated == m
            and self.backfill_superseded == self.backfill_rows
            and self.replay_versions_on_newer == 0
        )


def run_extra_nights(
    settings: Settings,
    main_run_id: str,
    business_date: date,
    expected: dict[str, str],
    *,
    late_edits: int,
    seed: int,
    state_dir: Path,
    console: Console,
) -> ExtraNights:
    """Edit the sheet, run D+1, replay D−3, check; prints a table and writes a JSON file."""
    day = business_date
    rows = list(open_source(settings).read())
    night_d = _results(settings, main_run_id)
    rng = random.Random(seed)
    chosen = _candidates(rows, expected, night_d)
    n = min(late_edits, len(chosen) * 2 // 3)
    picks = rng.sample(chosen, n + n // 2)
    edited, next_day = picks[:n], picks[n:]
    backfill = edited[: (n + 1) // 2] + next_day
    by_row = {r.row: r for r in rows}
    want: dict[str, str] = {}  # patient id → the E.164 number the server must hold afterwards
    edits: list[dict[str, object]] = []
    for row in edited:
        phone = _new_number(rng, by_row[row].phone)
        edits.append({"row": row, "column": PHONE_COLUMN, "value": phone})
        want[night_d[row][1]] = _e164(phone)
    new_rows = []
    for row in next_day:
        phone = _new_number(rng, by_row[row].phone)
        new_rows.append(_sheet_row(by_row[row].nik, phone, day + timedelta(1), "demo: D+1"))
    for row in backfill:
        phone = _new_number(rng, by_row[row].phone)
        new_rows.append(_sheet_row(by_row[row].nik, phone, day - timedelta(3), "demo: backfill"))

    report = ExtraNights(late_edits=n, next_day_rows=len(next_day), backfill_rows=len(backfill))
    sheets = settings.sheets_api_url.rstrip("/")
    appended = asyncio.run(_edit_sheet(sheets, edits, new_rows))
    next_rows, backfill_rows = appended[: len(next_day)], appended[len(next_day) :]

    summary = _night(settings, day + timedelta(1), state_dir / "summary-next-day.json")
    report.next_day_run, report.next_day_status = summary["run_id"], summary["status"]
    report.from_catch_up = summary["rows"]["from_catch_up"]
    d1 = _results(settings, summary["run_id"])
    report.late_edits_picked_up = sum(1 for row in edited if row in d1)
    not_found = [row for row, (outcome, _) in night_d.items() if outcome == "patient_not_found"]
    report.not_found_on_d = len(not_found)
    report.not_found_retried = sum(1 for row in not_found if row in d1)
    report.late_edits_updated = sum(1 for row in edited if d1.get(row, ("",))[0] == "updated")
    report.next_day_updated = sum(1 for row in next_rows if d1.get(row, ("",))[0] == "updated")
    written, writes_before = asyncio.run(_server_state(settings))
    report.late_edits_on_server = sum(
        1
        for pid, number in want.items()
        if pid in written and written[pid] == {"new_versions": 2, "mobiles": [number]}
    )

    before = {pid: w["new_versions"] for pid, w in written.items()}
    summary = _night(settings, day - timedelta(3), state_dir / "summary-replay.json")
    written, writes_after = asyncio.run(_server_state(settings))
    after = {pid: w["new_versions"] for pid, w in written.items()}
    report.replay_write_requests = writes_after - writes_before
    report.replay_run, report.replay_status = summary["run_id"], summary["status"]
    report.replay_in_scope = summary["rows"]["in_scope"]
    report.replay_outcomes = {k: v for k, v in summary["outcomes"].items() if v}
    replay = _results(settings, summary["run_id"])
    report.backfill_superseded = sum(
        1 for row in backfill_rows if replay.get(row, ("",))[0] == "superseded"
    )
    report.replay_versions_on_newer = sum(after[p] - before[p] for p in before)
    report.replay_versions_on_others = sum(v for p, v in after.items() if p not in before)

    (state_dir / "extra-nights.json").write_text(
        json.dumps({**asdict(report), "ok": report.ok}, indent=2) + "\n"
    )
    _print(console, report, day)
    return report


def _candidates(
    rows: list[SheetRow], expected: dict[str, str], night_d: dict[int, tuple[str, str]]
) -> list[int]:
    """Rows night D updated, as built, whose NIK is plain digits and has no other sheet row."""
    niks = Counter(nik.value for r in rows if not isinstance(nik := parse_nik(r.nik), Rejected))
    return sorted(
        r.row
        for r in rows
        if expected.get(str(r.row)) == "updated"
        and night_d.get(r.row, ("",))[0] == "updated"
        and night_d[r.row][1]
        and isinstance(r.nik, str)
        and r.nik.isdigit()
        and niks[r.nik] == 1
    )


def _new_number(rng: random.Random, current: object) -> str:
    """A mobile number, written as people write it, other than the row's current one."""
    number = people.grouped(people.new_mobile(rng))
    while _e164(number) == normalise_phone(current):
        number = people.grouped(people.new_mobile(rng))
    return number


def _e164(phone: str) -> str:
    normal = normalise_phone(phone)
    assert isinstance(normal, str)  # noqa: S101 - new_mobile() only makes valid numbers
    return normal


def _sheet_row(nik: object, phone: str, day: date, note: str) -> dict[str, object]:
    return {
        NIK_COLUMN: nik,
        PHONE_COLUMN: phone,
        DATE_COLUMN: day.strftime("%d/%m/%Y"),
        NOTE_COLUMN: note,
    }


def _results(settings: Settings, run_id: str) -> dict[int, tuple[str, str]]:
    """Sheet row → (outcome, patient id) as the ledger recorded them for `run_id`."""
    ledger = Ledger.open(settings.database_url)
    try:
        return {r.row: (str(r.outcome), r.patient_id or "") for r in ledger.results(run_id)}
    finally:
        ledger.close()


def _night(settings: Settings, day: date, summary_path: Path) -> dict[str, Any]:
    """One run for `day` with the real collaborators (no progress bar); its summary."""
    ledger = Ledger.open(settings.database_url)
    try:
        outcome = asyncio.run(
            run_sync(
                settings,
                ledger,
                open_source(settings),
                RunRequest(business_date=day, trigger="demo"),
                open_fhir,
            )
        )
    finally:
        ledger.close()
    write_summary(str(summary_path), outcome.summary)
    return outcome.summary


async def _edit_sheet(
    sheets: str, edits: list[dict[str, object]], rows: list[dict[str, object]]
) -> list[int]:
    """The late edits, one request each, then the new rows in one; their row numbers."""
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        for edit in edits:
            async with session.post(f"{sheets}/_sandbox/sheet/edit", json=edit):
                pass
        async with session.post(f"{sheets}/_sandbox/sheet/append", json={"rows": rows}) as resp:
            body = await resp.json()
    return [int(n) for n in body["rows"]]


def _sandbox_url(settings: Settings, path: str) -> str:
    assert settings.fhir_base_url is not None  # noqa: S101 - the sandbox env sets it
    parts = urlsplit(settings.fhir_base_url)
    return f"{parts.scheme}://{parts.netloc}/_sandbox/{path}"


async def _server_state(settings: Settings) -> tuple[dict[str, dict[str, Any]], int]:
    """From the FHIR sandbox's own log: every Patient written since it started (versions added,
    active mobiles), and the write requests it has answered."""
    url = _sandbox_url(settings, "requests")
    async with aiohttp.ClientSession(raise_for_status=True) as session, session.get(url) as resp:
        body = await resp.json()
    written = {
        pid: {"new_versions": w["new_versions"], "mobiles": w["mobiles"]}
        for pid, w in body["written"].items()
    }
    by_method = body["requests"]["by_method"]
    return written, sum(int(by_method.get(m, 0)) for m in ("PUT", "PATCH", "POST"))


def _print(console: Console, r: ExtraNights, day: date) -> None:
    d1, d3 = day + timedelta(1), day - timedelta(3)
    table = Table(title=f"late edits and a replay (D = {day})")
    table.add_column("check")
    table.add_column("result", justify="right")
    table.add_row("late edits made to rows of D (phone changed, date still D)", f"{r.late_edits:,}")
    table.add_row(
        f"night D+1 ({d1}, {r.next_day_status}): rows from catch-up",
        f"{r.from_catch_up:,} / {r.late_edits + r.not_found_on_d:,}",
    )
    table.add_row(
        "  D's patient_not_found rows searched again",
        f"{r.not_found_retried:,} / {r.not_found_on_d:,}",
    )
    table.add_row("  late edits picked up by D+1", f"{r.late_edits_picked_up:,} / {r.late_edits:,}")
    table.add_row("  late edits updated", f"{r.late_edits_updated:,} / {r.late_edits:,}")
    table.add_row(
        "  … new number active on the server, one version each night",
        f"{r.late_edits_on_server:,} / {r.late_edits:,}",
    )
    table.add_row("  rows dated D+1 updated", f"{r.next_day_updated:,} / {r.next_day_rows:,}")
    table.add_section()
    table.add_row(
        f"replay of D−3 ({d3}, {r.replay_status}): rows in scope", f"{r.replay_in_scope:,}"
    )
    table.add_row(
        "  backfill rows older than D / D+1 ended superseded",
        f"{r.backfill_superseded:,} / {r.backfill_rows:,}",
    )
    table.add_row("  write requests sent", f"{r.replay_write_requests:,}")
    table.add_row(
        "  … new versions on patients D or D+1 had set", f"{r.replay_versions_on_newer:,}"
    )
    table.add_row(
        "  … on patients nothing newer had set (a true backfill)",
        f"{r.replay_versions_on_others:,}",
    )
    console.print(table)
    outcomes = ", ".join(f"{k} {v:,}" for k, v in r.replay_outcomes.items())
    console.print(f"replay outcomes: {outcomes or 'none'}")
    console.print(
        "[green]late edits and replay check passed[/]"
        if r.ok
        else "[red]late edits and replay check FAILED[/]"
    )
