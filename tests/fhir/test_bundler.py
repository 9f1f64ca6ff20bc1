"""Bundler: concurrent single requests become batch Bundles, and each gets its own answer back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from phonesync.fhir.bundler import Bundler, ParsedBody, split_response, supports_batch


def batch_response(*entries: dict[str, Any]) -> bytes:
    return json.dumps(
        {"resourceType": "Bundle", "type": "batch-response", "entry": list(entries)}
    ).encode()


OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "conflict", "diagnostics": "version mismatch"}],
}


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ({"rest": [{"mode": "server", "interaction": [{"code": "batch"}]}]}, True),
        ({"rest": [{"mode": "server", "interaction": [{"code": "transaction"}]}]}, False),
        ({"rest": [{"mode": "server"}]}, False),
        ({"rest": "nonsense"}, False),
        (None, False),
        ("text", False),
    ],
)
def test_batch_is_used_only_when_the_capability_statement_lists_it(
    capability: Any, expected: bool
) -> None:
    """Only a `batch` interaction in `rest[]` turns batching on; anything odd leaves it off."""
    assert supports_batch(capability) is expected


def test_each_entry_becomes_its_own_exchange() -> None:
    """Statuses, ETags and resources (already parsed) go to the request in the same position."""
    body = batch_response(
        {"response": {"status": "200 OK", "etag": 'W/"v1"'}, "resource": {"id": "P1"}},
        {"response": {"status": "412 Precondition Failed", "outcome": OUTCOME}},
        {"response": {"status": "404 Not Found"}},
    )
    first, second, third = split_response(200, {}, body, 3)
    assert first[0] == 200
    assert first[1]["ETag"] == 'W/"v1"'
    assert isinstance(first[2], ParsedBody)
    assert first[2].json == {"id": "P1"}
    assert second[0] == 412
    assert json.loads(second[2]) == OUTCOME
    assert third[0] == 404


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b"", 429),  # the bundle was refused: every request retries on its own
        (503, b"Service Unavailable", 503),
        (None, b"", None),  # network error
        (200, b"not json", 502),  # an unreadable answer is never taken as success
        (200, batch_response({"response": {"status": "200 OK"}}), 502),  # 1 entry for 2
        (200, json.dumps({"resourceType": "Bundle", "type": "searchset"}).encode(), 502),
    ],
)
def test_a_failed_bundle_fails_every_request_in_it(
    status: int | None, body: bytes, expected: int | None
) -> None:
    """Whatever went wrong with the bundle, each request sees it and decides on its own."""
    answers = split_response(status, {}, body, 2)
    assert [a[0] for a in answers] == [expected, expected]


@pytest.mark.parametrize("status", ["OK", "", "2000 OK", None])
def test_an_entry_without_a_readable_status_is_not_a_success(status: Any) -> None:
    """A batch-response entry must say its status; otherwise it is a retryable 502."""
    (answer,) = split_response(200, {}, batch_response({"response": {"status": status}}), 1)
    assert answer[0] == 502


async def test_concurrent_requests_share_bundles_of_at_most_size() -> None:
    """Seven requests at once with size 3 → bundles of 3, 3 and 1, in order, If-Match kept."""
    sent: list[dict[str, Any]] = []

    async def post(payload: bytes) -> tuple[int | None, Mapping[str, str], bytes]:
        bundle = json.loads(payload)
        sent.append(bundle)
        entries = [
            {"response": {"status": "200 OK"}, "resource": {"url": e["request"]["url"]}}
            for e in bundle["entry"]
        ]
        return 200, {}, batch_response(*entries)

    bundler = Bundler(post, size=3, linger_s=0.001)
    answers = await asyncio.gather(
        *(
            bundler.exchange("PUT", f"Patient/P{i}", b'{"id": "x"}', {"If-Match": 'W/"7"'})
            for i in range(7)
        )
    )
    assert [len(b["entry"]) for b in sent] == [3, 3, 1]
    assert all(b["type"] == "batch" for b in sent)
    assert sent[0]["entry"][0]["request"] == {
        "method": "PUT",
        "url": "Patient/P0",
        "ifMatch": 'W/"7"',
    }
    assert sent[0]["entry"][0]["resource"] == {"id": "x"}
    assert [a[2].json["url"] for a in answers] == [f"Patient/P{i}" for i in range(7)]  # type: ignore[attr-defined]
    assert (bundler.bundles, bundler.entries) == (3, 7)


async def test_a_network_error_while_posting_reaches_every_waiting_request() -> None:
    """An exception from the bundle POST is raised in each request, none hangs."""

    async def post(payload: bytes) -> tuple[int | None, Mapping[str, str], bytes]:
        raise ConnectionResetError("reset")

    bundler = Bundler(post, size=10, linger_s=0.001)
    results = await asyncio.gather(
        *(bundler.exchange("GET", f"Patient/P{i}", None, {}) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ConnectionResetError) for r in results)


def test_a_bundle_of_one_is_refused() -> None:
    """size < 2 is a configuration mistake, not a bundler."""

    async def post(payload: bytes) -> tuple[int | None, Mapping[str, str], bytes]:
        raise AssertionError

    with pytest.raises(ValueError, match="at least 2"):
        Bundler(post, size=1)
