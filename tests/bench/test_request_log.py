"""`/_sandbox/requests`: the request-log summary the benchmark verifies a night with."""

from __future__ import annotations

import pytest

from phonesync.sandbox.fhir_store import PatientStore, RequestRecord
from phonesync.sandbox.request_log import longest_run, request_summary


@pytest.mark.parametrize(
    ("statuses", "longest"),
    [([], 0), ([200, 200], 0), ([429], 1), ([429, 200, 429, 429, 429, 200, 429], 3)],
)
def test_longest_run_counts_consecutive_answers(statuses: list[int], longest: int) -> None:
    """The longest stretch of consecutive 429s, in the order answers were recorded."""
    assert longest_run(statuses, 429) == longest


def test_summary_lists_written_patients_with_added_versions_and_mobiles() -> None:
    """Only patients written since seeding appear, with their added versions and active mobiles."""
    store = PatientStore()
    for pid in ("P1", "P2"):
        store.add({"resourceType": "Patient", "id": pid})
    ended = {"system": "phone", "use": "mobile", "value": "+628111", "period": {"end": "2024"}}
    new = {"system": "phone", "use": "mobile", "value": "+628222"}
    store.write("P1", {"resourceType": "Patient", "id": "P1", "telecom": [ended, new]}, "PUT")
    store.write("P1", {"resourceType": "Patient", "id": "P1", "telecom": [new]}, "PUT")
    for status in (429, 429, 200):
        store.record(RequestRecord("GET", "/Patient/P1", {}, status))
    summary = request_summary(store)
    assert summary["written"] == {
        "P1": {"new_versions": 2, "methods": ["PUT", "PUT"], "mobiles": ["+628222"]}
    }
    assert summary["requests"]["by_status"] == {"429": 2, "200": 1}
    assert summary["requests"]["longest_429_run"] == 2
