"""What both baselines share: the sandbox env file, the work list, and the phone edit.

The work list is a CSV the harness writes (`row,nik,phone`): the rows phonesync's own plan sends to
the FHIR server, NIK cleaned and phone already E.164. The baselines therefore skip validation,
de-duplication and scoping entirely — a head start in their favour, stated in docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"


def read_env(path: str) -> dict[str, str]:
    """KEY=VALUE lines of the env file `phonesync sandbox` writes."""
    env: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def read_work(path: str, limit: int | None) -> list[tuple[int, str, str]]:
    with open(path, newline="") as f:
        rows = [(int(r["row"]), r["nik"], r["phone"]) for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


def digits(value: str) -> str:
    """Only the digits, with a national 0 turned into 62 (good enough for `already has it`)."""
    d = "".join(ch for ch in value if ch.isdigit())
    return "62" + d[1:] if d.startswith("0") else d


def set_mobile(patient: dict[str, Any], phone: str) -> dict[str, Any]:
    """Replace the first active phone/mobile ContactPoint's value, or append one."""
    telecom = patient.setdefault("telecom", [])
    for contact in telecom:
        if _active_mobile(contact):
            contact["value"] = phone
            return patient
    telecom.append({"system": "phone", "value": phone, "use": "mobile"})
    return patient


def current_mobile(patient: dict[str, Any]) -> str | None:
    for contact in patient.get("telecom", []):
        if _active_mobile(contact):
            return str(contact.get("value", ""))
    return None


def _active_mobile(contact: dict[str, Any]) -> bool:
    return (
        contact.get("system") == "phone"
        and contact.get("use") == "mobile"
        and not (contact.get("period") or {}).get("end")
    )


def write_stats(path: str, stats: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(stats, indent=2, sort_keys=True))
