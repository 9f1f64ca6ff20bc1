"""One night's data for every contender: synthetic patients and sheet, and the plan's work list.

Generated once per scenario from a seed and written to files; every contender's sandbox is started
from the same `patients.ndjson` and `sheet.json`, so "same rows, same patients" holds by
construction. The work list (`work.csv`: row, NIK, E.164 phone) is what phonesync's own plan sends
to the FHIR server; the baselines read it instead of the sheet.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from phonesync.normalise.phone import canonical_phone, normalise_phone
from phonesync.plan import build_plan
from phonesync.sandbox.synth import generate, write_patients_ndjson, write_sheet_json
from phonesync.source.rows import ColumnMap, rows_from_values

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
ZONE = ZoneInfo("Asia/Jakarta")
PHONE_COL = 3
# requests the plan needs at minimum on a cold night: (reads, writes) per expected outcome
COST = {
    "updated": (2, 1),
    "unchanged": (2, 0),
    "identity_mismatch": (2, 0),
    "ambiguous_patient": (1, 0),
    "patient_not_found": (1, 0),
}


@dataclass
class Night:
    business_date: date
    patients: list[dict[str, Any]]
    values: list[list[Any]]
    expected: dict[int, str]  # sheet row → outcome phonesync must give (in-scope rows)
    work: list[tuple[int, str, str]] = field(default_factory=list)  # row, nik, +62 phone
    pids: dict[str, list[str]] = field(default_factory=dict)  # NIK → patient ids
    ledger_known: set[int] = field(default_factory=set)  # rows the ledger settles (delta night)

    def plan(self) -> None:
        header = [str(c) for c in self.values[0]]
        columns = ColumnMap(
            nik=header.index("NIK"),
            phone=header.index("No WhatsApp"),
            date=header.index("last_updated_date"),
        )
        plan = build_plan(
            rows_from_values(self.values[1:], 2, columns),
            business_date=self.business_date,
            zone=ZONE,
            hash_key=b"bench",
        )
        self.work = [(w.row, w.nik.value, w.phone) for w in plan.work]
        self.pids = {}
        for patient in self.patients:
            for ident in patient.get("identifier", []):
                if ident.get("system") == NIK_SYSTEM:
                    self.pids.setdefault(ident["value"], []).append(patient["id"])

    def targets(self, limit: int | None = None) -> dict[str, str]:
        """Patient id → the canonical number it must end with, for expected `updated` rows."""
        out = {}
        for row, nik, phone in self.work[:limit] if limit else self.work:
            if self.expected.get(row) == "updated":
                (pid,) = self.pids[nik]
                out[pid] = canonical_phone(phone) or phone
        return out

    def minimum_requests(self, limit: int | None = None) -> tuple[int, int]:
        reads = writes = 0
        for row, _nik, _phone in self.work[:limit] if limit else self.work:
            if row in self.ledger_known:
                continue
            r, w = COST.get(self.expected.get(row, ""), (0, 0))
            reads, writes = reads + r, writes + w
        return reads, writes

    def outcome_counts(self) -> dict[str, int]:
        return dict(Counter(self.expected.values()))

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_patients_ndjson(directory / "patients.ndjson", self.patients)
        write_sheet_json(directory / "sheet.json", self.values)
        with (directory / "work.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["row", "nik", "phone"])
            out.writerows(self.work)


def synthetic(seed: int, rows: int, business_date: date) -> Night:
    data = generate(seed=seed, patients=rows, rows=rows, business_date=business_date)
    night = Night(business_date, data.patients, data.values, dict(data.expected))
    night.plan()
    return night


def delta(night: Night, share: float, seed: int, patients_after: list[dict[str, Any]]) -> Night:
    """Tomorrow's sheet: the same rows; `share` of all rows (`updated` ones) get a new number.

    `patients_after` is the FHIR state after the first night (read back from its sandbox). Rows
    the first night applied (`updated` or `unchanged`) and that did not change are settled by the
    ledger; the changed ones must be `updated`; every other row keeps its first-night outcome.
    """
    rng = random.Random(seed)
    updated = sorted(row for row, outcome in night.expected.items() if outcome == "updated")
    changed = set(rng.sample(updated, round(share * len(night.expected))))
    values = [list(r) for r in night.values]
    for row in changed:
        values[row - 1][PHONE_COL] = new_number(rng)
    expected = dict(night.expected)
    known = set()
    for row, outcome in night.expected.items():
        if row in changed:
            expected[row] = "updated"
        elif outcome in ("updated", "unchanged"):
            expected[row] = "unchanged"
            known.add(row)
    tomorrow = Night(night.business_date, patients_after, values, expected, ledger_known=known)
    tomorrow.plan()
    return tomorrow


def new_number(rng: random.Random) -> str:
    while True:
        number = f"0812{rng.randrange(10**8):08d}"
        if isinstance(normalise_phone(number), str):
            return number


def load_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
