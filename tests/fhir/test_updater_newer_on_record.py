"""Updater: a record already carrying a newer change is never written over (loopback sandbox).

Whatever the ledger knows: the read record itself shows a number retired (or started) after
this run's business date → `superseded`, no PUT/PATCH, in both write modes, in a dry run, after
a version conflict's re-read and inside batch Bundles. A date there that cannot be read → `failed`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from phonesync.fhir.session import FhirSession
from phonesync.fhir.updater import UNCHANGED_ON_RECORD, Updater
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore
from phonesync.sandbox.threaded import ThreadedServer

from .conftest import (
    NIK_A,
    D,
    FakeTime,
    Serve,
    make_settings,
    open_http,
    open_updater,
    patient_a,
    work,
)

A = "+6282222222222"  # the row's (older) number
B = "+6281111111111"  # the number C replaced on 2024-03-16
C = "+6283333333333"  # set by the night of 2024-03-16
EMAIL = {"system": "email", "value": "a@example.org"}
SUPERSEDED_REASON = (
    "the record's numbers changed on 2024-03-16, after this run's business date 2024-03-15: "
    "a newer update is already applied (not written)"
)
UNREADABLE_REASON = (
    "cannot tell whether the record's numbers changed after this run's business date "
    "2024-03-15: a phone entry's period.end is not a FHIR date; not written, as a newer "
    "update may already be applied: correct that entry on the server, then retry"
)


def _retired(value: str, end: Any) -> dict[str, Any]:
    return {"system": "phone", "value": value, "use": "old", "period": {"end": end}}


def _mobile(value: str) -> dict[str, Any]:
    return {"system": "phone", "value": value, "use": "mobile", "rank": 1}


def after_the_16th(pid: str = "P001") -> dict[str, Any]:
    """What the night of 2024-03-16 left: B retired on the 16th, C the active mobile."""
    return patient_a(pid, telecom=[EMAIL, _retired(B, "2024-03-16"), _mobile(C)])


def methods(store: PatientStore) -> list[str]:
    return [r.method for r in store.requests]


def _pii_free(reason: str | None) -> None:
    assert reason
    for secret in (NIK_A, A, B, C, A[3:], B[3:], C[3:], "P001"):
        assert secret not in reason


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_a_number_retired_after_the_business_date_is_never_written_over(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, write_mode: str, dry_run: bool
) -> None:
    """The user's case: the row of 2024-03-15 (A) meets C, set on the 16th → superseded."""
    store.add(after_the_16th())
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work(phone=A), dry_run=dry_run)
    assert (result.outcome, result.reason) == (Outcome.SUPERSEDED, SUPERSEDED_REASON)
    assert methods(store) == ["GET", "GET"]  # search and read, never a write
    assert store.writes == 0
    assert store.version_count("P001") == 1
    assert result.patient_id == "P001"
    assert result.old_phone == C
    _pii_free(result.reason)


@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_the_active_mobile_started_after_the_business_date_is_never_written_over(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, write_mode: str
) -> None:
    started = {**_mobile(C), "period": {"start": "2024-03-16T08:00:00+07:00"}}
    store.add(patient_a(telecom=[EMAIL, started]))
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work(phone=A))
    assert (result.outcome, result.reason) == (Outcome.SUPERSEDED, SUPERSEDED_REASON)
    assert store.writes == 0


@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_a_rerun_of_the_same_night_still_writes(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, write_mode: str
) -> None:
    """`period.end` equal to the business date is this night's own: a later row still lands."""
    store.add(patient_a(telecom=[EMAIL, _retired(B, "2024-03-15"), _mobile(C)]))
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work(phone=A))
    assert result.outcome is Outcome.UPDATED, result.reason
    after = store.get("P001")
    assert after is not None
    assert after["telecom"] == [
        EMAIL,
        _retired(B, "2024-03-15"),
        {**_mobile(A), "period": {"start": "2024-03-15"}},
        _retired(C, "2024-03-15"),
    ]


async def test_a_number_already_there_stays_unchanged_whatever_the_history(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """Nothing to write (C is the record's one active mobile): unchanged, as before."""
    store.add(after_the_16th())
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work(phone=C))
    assert (result.outcome, result.reason) == (Outcome.UNCHANGED, UNCHANGED_ON_RECORD)
    assert store.writes == 0


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_an_unreadable_date_on_the_record_is_never_written_over(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, write_mode: str, dry_run: bool
) -> None:
    """`16/03/2024` may be a newer night: nothing tells, so nothing is written (failed)."""
    store.add(patient_a(telecom=[EMAIL, _retired(B, "16/03/2024"), _mobile(C)]))
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work(phone=A), dry_run=dry_run)
    assert (result.outcome, result.reason) == (Outcome.FAILED, UNREADABLE_REASON)
    assert store.writes == 0
    _pii_free(result.reason)


@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_a_newer_night_landing_between_read_and_write_is_seen_on_the_re_read(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, write_mode: str
) -> None:
    """Our write meets 412 (the night of the 16th wrote meanwhile): the re-read refuses."""
    store.add(patient_a(telecom=[EMAIL, _mobile(B)]))

    def night_of_the_16th(pid: str) -> None:
        store.before_write.remove(night_of_the_16th)
        store.modify(pid, lambda p: p.update(telecom=after_the_16th()["telecom"]))

    store.before_write.append(night_of_the_16th)
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work(phone=A))
    assert (result.outcome, result.reason) == (Outcome.SUPERSEDED, SUPERSEDED_REASON)
    assert methods(store) == ["GET", "GET", write_mode.upper(), "GET"]
    assert [r.status for r in store.requests][2] == 412
    assert store.version_count("P001") == 2  # the original, the other night's; none of ours
    final = store.get("P001")
    assert final is not None
    assert final["telecom"] == after_the_16th()["telecom"]


async def test_inside_batch_bundles_only_the_newer_record_is_spared(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """Rows sharing Bundles: the record with the newer change gets no PUT entry at all."""
    niks = [f"31740142039500{n:02d}" for n in range(1, 5)]
    for n, nik_value in enumerate(niks, start=1):
        resource = after_the_16th(f"P00{n}") if n == 2 else patient_a(f"P00{n}")
        resource["identifier"][0]["value"] = nik_value
        store.add(resource)
    server = serve(FhirProfile(batch=True))
    settings = make_settings(server, concurrency=16)
    items = [work(v, phone=f"+628222222{i:04d}", row=i + 2) for i, v in enumerate(niks)]
    async with open_http(settings, fake_time) as http:
        session = FhirSession(http, settings)
        await session.preflight()
        updater = Updater(http, settings, D)
        results = await asyncio.gather(*(updater.update(item) for item in items))
    assert [r.outcome for r in results] == [
        Outcome.UPDATED,
        Outcome.SUPERSEDED,
        Outcome.UPDATED,
        Outcome.UPDATED,
    ]
    assert results[1].reason == SUPERSEDED_REASON
    assert any(r.method == "POST" for r in store.requests)  # the rows did share bundles
    puts = [e.raw_path_qs for e in store.batch_entries if e.method == "PUT"]
    assert sorted(p.rsplit("/", 1)[-1] for p in puts) == ["P001", "P003", "P004"]
    assert [store.version_count(f"P00{n}") for n in (1, 2, 3, 4)] == [2, 1, 2, 2]
