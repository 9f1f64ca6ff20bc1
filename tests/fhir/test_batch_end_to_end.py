"""Batch Bundles end to end: concurrent rows share bundles on the wire; each row is safe alone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from phonesync.fhir.session import FhirSession
from phonesync.fhir.telecom import active_mobiles
from phonesync.fhir.updater import UPDATED_ANSWER_LOST, Updater
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore

from .conftest import D, FakeTime, Serve, make_settings, open_http, patient_a, work

PROBE = "https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C0000000000000000"  # the pre-flight search
NIKS = [f"31740142039500{n:02d}" for n in range(1, 9)]  # women born 1995-03-02, serials 1-8


def patients(store: PatientStore) -> None:
    for n, nik_value in enumerate(NIKS, start=1):
        resource = patient_a(f"P{n:03d}")
        resource["identifier"][0]["value"] = nik_value
        store.add(resource, version_id=f"v1-{n}")


def http_requests(store: PatientStore) -> list[tuple[str, str, int]]:
    return [(r.method, r.raw_path_qs.removeprefix("/fhir-r4/v1"), r.status) for r in store.requests]


async def update_all(
    server: Any, fake_time: FakeTime, items: list[Any], **overrides: Any
) -> tuple[list[Any], FhirSession]:
    settings = make_settings(server, concurrency=16, **overrides)
    async with open_http(settings, fake_time) as http:
        session = FhirSession(http, settings)
        await session.preflight()
        updater = Updater(http, settings, D)
        results = await asyncio.gather(*(updater.update(item) for item in items))
        return list(results), session


async def test_rows_share_bundles_and_each_patient_gets_one_new_version(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """8 rows at once → a handful of POSTs instead of 24 requests; every record written once."""
    patients(store)
    server = serve(FhirProfile(batch=True))
    items = [work(n, phone=f"+628222222{i:04d}", row=i + 2) for i, n in enumerate(NIKS)]
    results, session = await update_all(server, fake_time, items)
    assert [r.outcome for r in results] == [Outcome.UPDATED] * len(NIKS)
    posts = [r for r in http_requests(store) if r[0] == "POST"]
    singles = [r for r in http_requests(store) if r[0] != "POST"]
    assert singles == [
        ("GET", "/metadata", 200),
        (
            "GET",
            "/Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C0000000000000000",
            200,
        ),
    ]
    assert 3 <= len(posts) <= 6  # search, read and write rounds (a round may split in two)
    bundles, entries = session.batch_stats()
    assert (bundles, entries) == (len(posts), 3 * len(NIKS))
    for n, item in enumerate(items, start=1):
        final = store.get(f"P{n:03d}")
        assert final is not None
        assert store.version_count(f"P{n:03d}") == 2
        assert active_mobiles(final, D) == [item.phone]
        assert [t["value"] for t in final["telecom"] if t["system"] == "email"] == ["a@example.org"]


async def test_a_stale_version_inside_a_bundle_is_that_rows_conflict_only(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """Someone edits P001 between read and write: its entry gets 412, it re-reads and keeps
    the edit; the other rows in the same bundle are written at once."""
    patients(store)

    def someone_else(pid: str) -> None:
        if pid == "P001":
            store.before_write.remove(someone_else)
            store.modify(
                pid, lambda p: p["telecom"].append({"system": "email", "value": "b@example.org"})
            )

    store.before_write.append(someone_else)
    server = serve(FhirProfile(batch=True))
    items = [work(n, phone=f"+628222222{i:04d}", row=i + 2) for i, n in enumerate(NIKS[:4])]
    results, _ = await update_all(server, fake_time, items)
    assert [r.outcome for r in results] == [Outcome.UPDATED] * 4
    first = store.get("P001")
    assert first is not None
    assert [t["value"] for t in first["telecom"] if t["system"] == "email"] == [
        "a@example.org",
        "b@example.org",
    ]
    assert active_mobiles(first, D) == [items[0].phone]
    assert store.version_count("P001") == 3  # the other editor's version, then ours
    assert [store.version_count(f"P00{n}") for n in (2, 3, 4)] == [2, 2, 2]
    statuses = [e.status for e in store.batch_entries if e.method == "PUT"]
    assert sorted(statuses) == [200, 200, 200, 200, 412]


async def test_without_batch_in_the_capability_statement_nothing_is_bundled(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """The national server does not list `batch`: single requests only, no POST at all."""
    patients(store)
    server = serve(FhirProfile())
    items = [work(n, phone=f"+628222222{i:04d}", row=i + 2) for i, n in enumerate(NIKS[:3])]
    results, session = await update_all(server, fake_time, items)
    assert [r.outcome for r in results] == [Outcome.UPDATED] * 3
    assert not [r for r in http_requests(store) if r[0] == "POST"]
    assert session.batch_stats() == (0, 0)


async def test_batch_size_below_two_turns_it_off(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """PHONESYNC_BATCH_SIZE=1 keeps single requests even when the server offers batch."""
    patients(store)
    server = serve(FhirProfile(batch=True))
    items = [work(NIKS[0], phone="+6282222220000")]
    _, session = await update_all(server, fake_time, items, batch_size=1)
    assert not [r for r in http_requests(store) if r[0] == "POST"]
    assert session.batch_stats() == (0, 0)


async def test_a_refused_bundle_is_retried_request_by_request(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """A 503 for the whole bundle: each row retries on its own and still ends updated once."""
    patients(store)
    server = serve(FhirProfile(batch=True))
    store.faults.push(method="POST", status=503, times=1)
    items = [work(n, phone=f"+628222222{i:04d}", row=i + 2) for i, n in enumerate(NIKS[:3])]
    results, _ = await update_all(server, fake_time, items)
    assert [r.outcome for r in results] == [Outcome.UPDATED] * 3
    assert next(r[2] for r in http_requests(store) if r[0] == "POST") == 503
    assert [store.version_count(f"P00{n}") for n in (1, 2, 3)] == [2, 2, 2]
    finals = [store.get(f"P00{n}") for n in (1, 2, 3)]
    assert [active_mobiles(f, D) for f in finals if f] == [[i.phone] for i in items]


async def test_a_bundle_that_landed_but_lost_its_answer_ends_updated_once(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """The server freezes on the write bundle (as under `kill -STOP`) past the request timeout,
    then applies it: every write in it landed, its answer lost. Each request retries on its own
    with the same If-Match, gets a 412 entry, re-reads: `updated` with the answer-lost reason
    (this run's change), one new version per patient."""
    patients(store)
    server = serve(FhirProfile(batch=True))

    def freeze(pid: str) -> None:
        store.before_write.remove(freeze)
        time.sleep(1.5)  # the server's event loop stops: the client times out after 1 s

    store.before_write.append(freeze)
    items = [work(n, phone=f"+628222222{i:04d}", row=i + 2) for i, n in enumerate(NIKS[:3])]
    results, _ = await update_all(server, fake_time, items, request_timeout_s=1.0)
    assert {r.outcome for r in results} == {Outcome.UPDATED}
    # every write in the bundle the server froze on (a round may split in two)
    assert UPDATED_ANSWER_LOST in {r.reason for r in results}
    assert {r.reason for r in results} <= {UPDATED_ANSWER_LOST, None}
    assert 412 in [r.status for r in store.batch_entries if r.method == "PUT"]
    assert store.writes == 3
    assert [store.version_count(f"P00{n}") for n in (1, 2, 3)] == [2, 2, 2]
    finals = [store.get(f"P00{n}") for n in (1, 2, 3)]
    assert [active_mobiles(f, D) for f in finals if f] == [[i.phone] for i in items]
    for result, n in zip(results, (1, 2, 3), strict=True):
        assert result.version_before == f"v1-{n}"
        assert result.version_after == store.versions(f"P00{n}")[-1].vid
