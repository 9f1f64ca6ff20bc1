"""Helpers for issue-3 nights: a few real patients, a small sheet, runs on an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.source import open_source
from phonesync.sync import RunOutcome, RunRequest, run_sync

WIB = ZoneInfo("Asia/Jakarta")
D = date(2024, 3, 15)
NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
HEADER: list[Any] = ["NIK", "No HP", "last_updated_date"]


def nik_for(birth: date, sex: str, serial: int) -> str:
    """A valid Jakarta NIK for this birth date and sex (women: day + 40)."""
    day = birth.day + (40 if sex == "female" else 0)
    return f"317401{day:02d}{birth.month:02d}{birth.year % 100:02d}{serial:04d}"


def niks_for(births: dict[str, tuple[date, str]]) -> dict[str, str]:
    """A valid NIK for each patient id, from its birth date and sex (numbered in order)."""
    return {pid: nik_for(birth, sex, n) for n, (pid, (birth, sex)) in enumerate(births.items(), 1)}


def patients_for(births: dict[str, tuple[date, str]], niks: dict[str, str]) -> list[dict[str, Any]]:
    """One `patient()` per id, each with its own current mobile (+628110000000N)."""
    return [
        patient(pid, niks[pid], birth, sex, f"+628110000000{n}")
        for n, (pid, (birth, sex)) in enumerate(births.items(), 1)
    ]


def patient(pid: str, nik: str, birth: date, sex: str, mobile: str) -> dict[str, Any]:
    """A Patient with an email, one active mobile, and a contact person with her own mobile."""
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NIK_SYSTEM, "value": nik}],
        "name": [{"text": f"Pasien {pid}"}],
        "telecom": [
            {"system": "email", "value": f"{pid.lower()}@example.org"},
            {"system": "phone", "value": mobile, "use": "mobile"},
        ],
        "gender": sex,
        "birthDate": birth.isoformat(),
        "contact": [{"telecom": [{"system": "phone", "value": "+6281399998888", "use": "mobile"}]}],
    }


def night_of(day: date) -> datetime:
    """23:00 WIB on `day`: when the nightly run starts."""
    return datetime.combine(day, time(23, 0), tzinfo=WIB)


def run(sb: LocalSandbox, day: date, at: datetime, **request: Any) -> RunOutcome:
    """One run for `day` through the real collaborators, its clock frozen at `at`."""
    ledger = Ledger.open(sb.settings.database_url)
    try:
        return asyncio.run(
            run_sync(
                sb.settings,
                ledger,
                open_source(sb.settings),
                RunRequest(business_date=day, **request),
                open_fhir,
                now=lambda: at,
            )
        )
    finally:
        ledger.close()


def outcomes_by_row(sb: LocalSandbox, run_id: str) -> dict[int, str]:
    ledger = Ledger.open(sb.settings.database_url)
    try:
        return {r.row: str(r.outcome) for r in ledger.results(run_id)}
    finally:
        ledger.close()


def mobiles(sb: LocalSandbox, pid: str) -> list[str]:
    """The active mobile numbers on the current record."""
    current = sb.store.get(pid)
    assert current is not None
    return [
        t["value"]
        for t in current.get("telecom", [])
        if t.get("use") == "mobile" and not (t.get("period") or {}).get("end")
    ]


# --- one patient, one row: the date-refusal tests (future dates, the earliest date) ------------
ONE_BIRTH = date(1995, 3, 2)
ONE_NIK = nik_for(ONE_BIRTH, "female", 1)


def at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at `moment` (for `main(..., now=…)`)."""
    return lambda: moment


def one_row_sandbox(tmp_path: Path) -> LocalSandbox:
    """One patient and one sheet row for it, dated 2024-03-15."""
    patients = [patient("P1", ONE_NIK, ONE_BIRTH, "female", "+6281111111111")]
    sheet = [list(HEADER), [ONE_NIK, "0822-2222-2222", "15/03/2024"]]
    return LocalSandbox(patients, sheet, tmp_path)


def run_ids(sb: LocalSandbox) -> list[str]:
    """The runs the sandbox's ledger holds, newest first."""
    ledger = Ledger.open(sb.settings.database_url)
    try:
        return [r.run_id for r in ledger.list_runs(limit=50)]
    finally:
        ledger.close()
