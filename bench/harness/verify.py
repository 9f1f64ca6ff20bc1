"""Correctness of a night from the server's side: what was written, to whom, how many times.

From `/_sandbox/requests` (every Patient with added versions, and its active mobile numbers):
- every expected `updated` patient holds the new number and exactly one new version;
- no patient has two or more new versions (a duplicate write);
- nothing was written to a patient outside the expected `updated` set.
"""

from __future__ import annotations

from typing import Any

from phonesync.normalise.phone import canonical_phone


def check(summary: dict[str, Any], targets: dict[str, str]) -> dict[str, Any]:
    written: dict[str, Any] = summary["written"]
    ok = missing = wrong_number = 0
    for pid, phone in targets.items():
        entry = written.get(pid)
        if entry is None:
            missing += 1
            continue
        mobiles = {canonical_phone(m) for m in entry["mobiles"]}
        if entry["new_versions"] == 1 and mobiles == {phone}:
            ok += 1
        elif phone not in mobiles:
            wrong_number += 1
    duplicates = sum(1 for entry in written.values() if entry["new_versions"] >= 2)
    strays = sum(1 for pid in written if pid not in targets)
    return {
        "expected_updates": len(targets),
        "ok": ok,
        "missing": missing,
        "wrong_number": wrong_number,
        "duplicate_writes": duplicates,
        "writes_outside_plan": strays,
        "correct": ok == len(targets) and duplicates == 0 and strays == 0,
    }
