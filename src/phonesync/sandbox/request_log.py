"""`GET /_sandbox/requests`: a read-only summary of what the sandbox FHIR server saw and holds.

For benchmarks and checks that must not disturb the server under test: it sits outside the gateway
(no latency, no rate limit, no auth) and costs no FHIR request. It gives the request log as counts
(by method and status, the longest run of consecutive 429 answers in completion order) and, for
every Patient that has been written to since it was seeded, how many versions were added and which
active mobile numbers its current version holds — enough to verify a night with no FHIR read.

A batch Bundle is one request (`POST`) in `requests`; its entries are counted apart, in
`batch_entries`, each as the single request it stands for. `written` comes from the versions the
store holds, so a PUT in a batch adds to it exactly as a single PUT does.

`requests.per_second` is the log as a time series: answers per whole second since the first
answer (index i = answers handed back in [i, i + 1) s after it), split into `accepted` (any status
but 429) and `refused_429`, plus `first_at`, the first answer's time on the gateway's clock
(`time.monotonic()` of the sandbox process, the system-wide CLOCK_MONOTONIC on Linux). Each record
carries its time (`RequestRecord.at`, taken once per answer); the series is counted only here, when
asked for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from phonesync.sandbox.fhir_store import JsonObject, PatientStore, RequestRecord


def longest_run(statuses: list[int], status: int) -> int:
    """The longest stretch of consecutive `status` answers."""
    longest = current = 0
    for answered in statuses:
        current = current + 1 if answered == status else 0
        longest = max(longest, current)
    return longest


def per_second(records: Sequence[RequestRecord]) -> JsonObject:
    """Answers per whole second since the first: accepted (not 429) and refused with 429."""
    if not records:
        return {"first_at": None, "accepted": [], "refused_429": []}
    first = min(record.at for record in records)
    size = int(max(record.at for record in records) - first) + 1
    accepted, refused = [0] * size, [0] * size
    for record in records:
        counts = refused if record.status == 429 else accepted
        counts[int(record.at - first)] += 1
    return {"first_at": first, "accepted": accepted, "refused_429": refused}


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
            "per_second": per_second(records),
        },
        "writes": store.writes,
        "written": written,
    }
