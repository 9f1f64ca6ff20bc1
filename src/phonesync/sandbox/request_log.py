"""`GET /_sandbox/requests`: a read-only summary of what the sandbox FHIR server saw and holds.

For benchmarks and checks that must not disturb the server under test: it sits outside the gateway
(no latency, no rate limit, no auth) and costs no FHIR request. It gives the request log as counts
(by method and status, the longest run of consecutive 429 answers in completion order) and, for
every Patient that has been written to since it was seeded, how many versions were added and which
active mobile numbers its current version holds — enough to verify a night with no FHIR read.

A batch Bundle is one request (`POST`) in `requests`; its entries are counted apart, in
`batch_entries`, each as the single request it stands for. `written` comes from the versions the
store holds, so a PUT in a batch adds to it exactly as a single PUT does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from phonesync.sandbox.fhir_store import JsonObject, PatientStore


def longest_run(statuses: list[int], status: int) -> int:
    """The longest stretch of consecutive `status` answers."""
    longest = current = 0
    for answered in statuses:
        current = current + 1 if answered == status else 0
        longest = max(longest, current)
    return longest


def active_mobiles(patient: JsonObject) -> list[str]:
    """Values of the phone/mobile ContactPoints without a `period.end`."""
    telecom: list[Any] = patient.get("telecom") or []
    return [
        str(t.get("value", ""))
        for t in telecom
        if isinstance(t, dict)
        and t.get("system") == "phone"
        and t.get("use") == "mobile"
        and not (t.get("period") or {}).get("end")
    ]


def request_summary(store: PatientStore) -> JsonObject:
    """Counts from the request log (and of batch entries), every written Patient's versions."""
    records = list(store.requests)
    statuses = [record.status for record in records]
    by_status = Counter(str(status) for status in statuses)
    by_method = Counter(record.method for record in records)
    written: dict[str, JsonObject] = {}
    for pid in store.ids():
        added = store.version_count(pid) - 1
        current = store.current(pid)
        if added > 0 and current is not None:
            written[pid] = {
                "new_versions": added,
                "methods": [v.method for v in store.versions(pid)[1:]],
                "mobiles": active_mobiles(current.resource),
            }
    entries = list(store.batch_entries)
    return {
        "batch_entries": {
            "total": len(entries),
            "by_status": dict(Counter(str(entry.status) for entry in entries)),
            "by_method": dict(Counter(entry.method for entry in entries)),
        },
        "requests": {
            "total": len(records),
            "by_status": dict(by_status),
            "by_method": dict(by_method),
            "longest_429_run": longest_run(statuses, 429),
        },
        "writes": store.writes,
        "written": written,
    }
