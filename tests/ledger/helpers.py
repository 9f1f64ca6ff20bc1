"""Builders for ledger tests: masked, keyed-hashed rows as the orchestrator records them."""

from __future__ import annotations

import subprocess
from datetime import date, datetime
from zoneinfo import ZoneInfo

from phonesync.ledger import Ledger, LedgerRow
from phonesync.masking import keyed_hash, mask_nik, mask_phone
from phonesync.outcomes import Outcome

KEY = b"ledger-test-key"
JAKARTA = ZoneInfo("Asia/Jakarta")
DAY = date(2024, 3, 15)
#: 23:00 WIB on DAY = 16:00 UTC.
T0 = datetime(2024, 3, 15, 23, 0, tzinfo=JAKARTA)


def nik(i: int) -> str:
    return f"3174{i:012d}"


def nik_hash(i: int) -> str:
    return keyed_hash(nik(i), KEY)


def phone_hash(phone: str) -> str:
    return keyed_hash(phone, KEY)


def row(
    number: int,
    outcome: Outcome = Outcome.UPDATED,
    *,
    who: int | None = None,
    phone: str = "+6281234567890",
    moment: datetime = T0,
    reason: str | None = None,
) -> LedgerRow:
    """Sheet row `number` for patient `who` (default: the row number)."""
    who = number if who is None else who
    return LedgerRow(
        row=number,
        outcome=outcome,
        reason=reason,
        nik_hash=nik_hash(who),
        nik_masked=mask_nik(nik(who)),
        phone_hash=phone_hash(phone),
        phone_masked=mask_phone(phone),
        moment=moment,
        patient_id=f"P{who:06d}",
        version_before="1",
        version_after="2" if outcome is Outcome.UPDATED else None,
        attempts=1,
        fingerprint=keyed_hash(f"{who}|{phone}|{moment.isoformat()}", KEY),
    )


def start_run(
    ledger: Ledger,
    run_id: str,
    *,
    business_date: date = DAY,
    dry_run: bool = False,
    started_at: datetime = T0,
) -> str:
    ledger.create_run(
        run_id=run_id,
        business_date=business_date,
        trigger="manual",
        config={"write_mode": "put", "hash_key": "[set]"},
        dry_run=dry_run,
        started_at=started_at,
    )
    return run_id


def dead_pid() -> int:
    """The PID of a process that ran on this machine and is gone (as after `kill -9`)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
