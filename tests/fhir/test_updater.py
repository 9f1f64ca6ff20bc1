"""Updater: one row against the sandbox FHIR server over real loopback HTTP (C4–C9, C15)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import UTC, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

from phonesync.errors import FhirUnavailable
from phonesync.fhir.updater import (
    UNCHANGED_AFTER_CONFLICT,
    UNCHANGED_ON_RECORD,
    UPDATED_ANSWER_LOST,
    Updater,
)
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore
from phonesync.sandbox.threaded import ThreadedServer

from .conftest import (
    NIK_A,
    NIK_B,
    NIK_SYSTEM,
    FakeTime,
    Serve,
    make_settings,
    open_http,
    open_updater,
    patient_a,
    work,
)

NEW = "+6282222222222"
SEARCH_A = f"/Patient?identifier={NIK_SYSTEM}|{NIK_A}"  # fault prefixes match the decoded target
SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
WIRE_SEARCH_A = "/Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C3174014203950001"


def patient_b(pid: str = "P002") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NIK_SYSTEM, "value": NIK_B}],
        "name": [{"text": "Budi"}],
        "gender": "male",
        "birthDate": "1985-12-31",
        "telecom": [{"system": "phone", "value": "081333333333", "use": "mobile"}],
    }


def fhir_requests(store: PatientStore) -> list[tuple[str, str, int]]:
    """(method, target without the national base, status) of every FHIR request."""
    return [
        (r.method, r.raw_path_qs.removeprefix("/fhir-r4/v1"), r.status)
        for r in store.requests
        if not r.raw_path_qs.startswith("/oauth2/")
    ]


def writes_sent(store: PatientStore) -> list[Any]:
    return [r for r in store.requests if r.method in ("PUT", "PATCH")]


_MOBILE = {"system": "phone", "use": "mobile", "rank": 1}


def _assert_pii_free(reason: str | None) -> None:
    """A reason never carries the NIK, the number or a patient id in clear."""
    assert reason
    for secret in (NIK_A, NEW, NEW.removeprefix("+62"), "P001"):
        assert secret not in reason


def active_mobiles(resource: dict[str, Any]) -> list[str]:
    return [
        t["value"]
        for t in resource["telecom"]
        if t.get("system") == "phone" and t.get("use") == "mobile"
    ]


# --- C4(ii): what goes on the wire ---------------------------------------------------------


@pytest.mark.parametrize("base", ["", "/fhir-r4/v1"])
@pytest.mark.parametrize("auth", ["api-key", "oauth2"])
async def test_search_target_is_encoded_and_authenticated(
    serve: Serve, store: PatientStore, fake_time: FakeTime, base: str, auth: str
) -> None:
    """C4(ii): the target is exactly the %-encoded identifier (no raw `|`), with the auth header."""
    server = serve(FhirProfile(auth=auth))  # type: ignore[arg-type]
    store.add(patient_a())
    settings = make_settings(server, fhir_auth=auth, fhir_base_url=server.url + base)
    async with open_http(settings, fake_time) as http:
        result = await Updater(http, settings, fake_time.wall().date()).update(work())
    assert result.outcome is Outcome.UPDATED
    search = next(r for r in store.requests if r.method == "GET")
    assert search.raw_path_qs == base + WIRE_SEARCH_A
    assert "|" not in search.raw_path_qs
    if auth == "api-key":
        assert search.headers["x-api-key"] == "sandbox-key"
    else:
        assert search.headers["Authorization"].startswith("Bearer ")


# --- C5: zero or several matches -------------------------------------------------------------


async def test_no_match_is_patient_not_found(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """C5(A): a searchset with total 0 and no entry → patient_not_found, no write, next row runs."""
    store.add(patient_b())
    store.faults.push(
        path_prefix=SEARCH_A,
        status=200,
        body={"resourceType": "Bundle", "type": "searchset", "total": 0},
    )
    async with open_updater(server, fake_time) as updater:
        first = await updater.update(work())
        second = await updater.update(work(NIK_B, row=3))
    assert (first.outcome, first.reason) == (
        Outcome.PATIENT_NOT_FOUND,
        "no Patient carries this NIK identifier",
    )
    assert first.attempts == 1
    assert second.outcome is Outcome.UPDATED
    assert store.writes == 1


async def test_two_patients_with_the_nik_are_ambiguous(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """C5(B): P001 and P002 both carry the NIK → ambiguous_patient, neither is written."""
    store.add(patient_a("P001"))
    store.add(patient_a("P002"))
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.AMBIGUOUS_PATIENT
    assert result.reason == "2 Patients carry this NIK (P001, P002)"
    assert store.writes == 0
    assert store.version_count("P001") == store.version_count("P002") == 1
    assert [m for m, _, _ in fhir_requests(store)] == ["GET"]


def _entry(resource: dict[str, Any], mode: str = "match") -> dict[str, Any]:
    return {"resource": resource, "search": {"mode": mode}}


_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "information", "code": "informational"}],
}
_NEWBORN = {
    "resourceType": "Patient",
    "id": "P009",
    "identifier": [{"system": NIK_SYSTEM + "-ibu", "value": NIK_A}],
}
_OTHER_VALUE = {
    "resourceType": "Patient",
    "id": "P008",
    "identifier": [{"system": NIK_SYSTEM, "value": NIK_B}],
}


@pytest.mark.parametrize(
    ("entries", "outcome"),
    [
        ([_entry(_OUTCOME, "outcome"), "P001"], Outcome.UPDATED),  # C5(C)
        ([_entry(_NEWBORN), "P001"], Outcome.UPDATED),
        (["P001", _entry(_OTHER_VALUE)], Outcome.UPDATED),
        (["P001", "P001"], Outcome.UPDATED),  # the same Patient twice is one Patient
        ([_entry(_NEWBORN)], Outcome.PATIENT_NOT_FOUND),
        ([_entry(_OUTCOME, "outcome")], Outcome.PATIENT_NOT_FOUND),
    ],
)
async def test_only_patients_with_exactly_our_identifier_count(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    entries: list[Any],
    outcome: Outcome,
) -> None:
    """C5(C): OperationOutcome entries, nik-ibu newborns and other values are never taken."""
    full = store.add(patient_a())
    reduced = {k: full[k] for k in ("resourceType", "id", "identifier", "meta")}
    bundle_entries = [_entry(reduced) if e == "P001" else e for e in entries]
    store.faults.push(
        path_prefix=SEARCH_A,
        status=200,
        body={"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": bundle_entries},
    )
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is outcome
    assert store.writes == (1 if outcome is Outcome.UPDATED else 0)
    assert store.version_count("P009") == 0


async def test_paged_search_result_is_ambiguous(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """A result with a `next` page may hide a second match: never write on a first page."""
    full = store.add(patient_a())
    store.faults.push(
        path_prefix=SEARCH_A,
        status=200,
        body={
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 2,
            "link": [{"relation": "next", "url": "http://x/Patient?page=2"}],
            "entry": [_entry(full)],
        },
    )
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.AMBIGUOUS_PATIENT
    assert store.writes == 0


# --- C6: exactly one write, nothing else changed ---------------------------------------------


@pytest.mark.parametrize("write_mode", ["put", "patch"])
@pytest.mark.parametrize("auth", ["api-key", "oauth2"])
@pytest.mark.parametrize("old_number", ["keep", "drop"])
async def test_one_write_changes_only_the_mobile(
    serve: Serve,
    store: PatientStore,
    fake_time: FakeTime,
    write_mode: str,
    auth: str,
    old_number: str,
) -> None:
    """C6: one write; every element but the mobile entry is unchanged; one active mobile."""
    server = serve(FhirProfile(auth=auth))  # type: ignore[arg-type]
    before = store.add(patient_a())
    async with open_updater(
        server, fake_time, fhir_auth=auth, write_mode=write_mode, old_number=old_number
    ) as updater:
        result = await updater.update(work(phone=NEW))
    after = store.get("P001")
    assert after is not None
    assert result.outcome is Outcome.UPDATED, result.reason
    assert store.writes == 1
    assert [m for m, _, _ in fhir_requests(store)] == ["GET", "GET", write_mode.upper()]
    for key in before:
        if key not in ("telecom", "meta"):
            assert json.dumps(after[key]) == json.dumps(before[key]), key
    assert list(after) == list(before)
    assert active_mobiles(after) == [NEW]
    assert {"system": "email", "value": "a@example.org"} in after["telecom"]
    assert after["contact"] == before["contact"]
    assert (result.patient_id, result.attempts) == ("P001", 3)
    assert result.version_before == before["meta"]["versionId"]
    assert result.version_after == after["meta"]["versionId"] != result.version_before
    assert (result.old_phone, result.new_phone) == ("+6281111111111", NEW)


async def test_patch_body_carries_current_name_birthdate_gender(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """National PATCH: replace ops only, telecom plus the current name/birthDate/gender."""
    store.add(patient_a())
    async with open_updater(server, fake_time, write_mode="patch") as updater:
        await updater.update(work())
    (patch,) = writes_sent(store)
    ops = json.loads(patch.body)
    assert [(op["op"], op["path"]) for op in ops] == [
        ("replace", "/telecom"),
        ("replace", "/name"),
        ("replace", "/birthDate"),
        ("replace", "/gender"),
    ]
    assert patch.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("missing", ["telecom", "name", "birthDate", "gender"])
async def test_patch_mode_does_not_send_what_the_national_patch_cannot_do(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, missing: str
) -> None:
    """The national PATCH allows only `replace` and validates the current name/birthDate/gender:
    a record without telecom (nothing to replace) or without one of those is not sent a PATCH
    the server must refuse; the reason says what would work (PUT mode)."""
    record = patient_a()
    del record[missing]
    store.add(record)
    async with open_updater(server, fake_time, write_mode="patch") as updater:
        preview = await updater.update(work(), dry_run=True)
        result = await updater.update(work())
    assert result.outcome is Outcome.FAILED
    assert result.reason is not None
    assert f"no {missing}" in result.reason
    assert "PHONESYNC_WRITE_MODE=put" in result.reason
    # the dry run's preview says the same (fresh-user test: it said "would update")
    assert (preview.outcome, preview.reason) == (result.outcome, result.reason)
    assert writes_sent(store) == []


# --- C7: If-Match and 412 --------------------------------------------------------------------


async def test_412_rereads_and_reapplies_on_top(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """C7: If-Match verbatim; after 412 re-read, re-apply, second If-Match is the new version."""
    store.add(patient_a(), version_id="djEtYWJjZGVm")

    def someone_else(pid: str) -> None:
        store.before_write.remove(someone_else)
        store.modify(
            pid,
            lambda p: p["telecom"].append({"system": "email", "value": "b@example.org"}),
            version_id="djItMTIzNDU2",
        )

    store.before_write.append(someone_else)
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.UPDATED
    assert [w.headers["If-Match"] for w in writes_sent(store)] == [
        'W/"djEtYWJjZGVm"',
        'W/"djItMTIzNDU2"',
    ]
    assert [s for _, _, s in fhir_requests(store)] == [200, 200, 412, 200, 200]
    final = store.get("P001")
    assert final is not None
    emails = [t["value"] for t in final["telecom"] if t["system"] == "email"]
    assert emails == ["a@example.org", "b@example.org"]
    assert active_mobiles(final) == [NEW]
    assert result.version_before == "djItMTIzNDU2"
    assert result.attempts == 5


def _always_edit(store: PatientStore) -> None:
    def edit(pid: str) -> None:
        if pid == "P001":
            store.modify(pid, lambda p: p.setdefault("extension", []).append({"url": "x"}))

    store.before_write.append(edit)


@pytest.mark.parametrize("status", [409, 412])
async def test_three_conflicts_end_the_row_as_conflict(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, status: int
) -> None:
    """C7: 3 conflicts in a row → conflict with the count in the reason; the next row runs."""
    store.add(patient_a())
    store.add(patient_b())
    if status == 412:
        _always_edit(store)
    else:
        store.faults.push(
            method="PUT",
            path_prefix="/Patient/P001",
            status=409,
            times=3,
            body={
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "conflict"}],
            },
        )
    async with open_updater(server, fake_time) as updater:
        first = await updater.update(work())
        second = await updater.update(work(NIK_B, row=3))
    assert first.outcome is Outcome.CONFLICT
    assert first.reason == (
        f"version conflict on 3 writes in a row (last: {status}); the record kept changing"
    )
    assert len([w for w in writes_sent(store) if "/P001" in w.raw_path_qs]) == 3
    assert second.outcome is Outcome.UPDATED
    assert store.writes == 1
    assert fake_time.waits == []


async def test_reread_after_another_write_of_our_number_is_unchanged(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """C7: someone else wrote our number between our read and our PUT → 412, re-read, no write."""
    store.add(patient_a())

    def landed(pid: str) -> None:
        store.before_write.remove(landed)
        store.modify(
            pid,
            lambda p: p.__setitem__(
                "telecom", [{"system": "phone", "value": NEW, "use": "mobile", "rank": 1}]
            ),
        )

    store.before_write.append(landed)
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work(phone=NEW))
    assert (result.outcome, result.reason) == (Outcome.UNCHANGED, UNCHANGED_AFTER_CONFLICT)
    assert store.writes == 0
    assert len(writes_sent(store)) == 1
    assert result.version_after == result.version_before
    _assert_pii_free(result.reason)


@pytest.mark.parametrize("status", [502, 504])
async def test_reread_after_our_lost_write_landed_is_updated(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, status: int
) -> None:
    """Our PUT landed but a gateway lost its answer: the retry's 412 re-reads, no second write,
    and the row is this run's update (`updated`, the answer-lost reason), not `unchanged`.

    The server side of "landed": the first PUT is answered by the fault, and the retry finds the
    record already at our number (as our first PUT left it), so its If-Match no longer matches.
    """
    first = store.add(patient_a())
    store.faults.push(method="PUT", path_prefix="/Patient/P001", status=status)

    def ours_landed(pid: str) -> None:
        store.before_write.remove(ours_landed)
        store.modify(pid, lambda p: p.__setitem__("telecom", [{**_MOBILE, "value": NEW}]))

    store.before_write.append(ours_landed)
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work(phone=NEW))
    assert (result.outcome, result.reason) == (Outcome.UPDATED, UPDATED_ANSWER_LOST)
    assert len(writes_sent(store)) == 2  # the lost one and its retry, refused by If-Match
    assert [s for m, _, s in fhir_requests(store) if m == "PUT"][-1] == 412
    assert store.version_count("P001") == 2  # the "landed" write only
    assert result.version_before == first["meta"]["versionId"]  # what our write was built on
    assert result.version_after == store.get("P001")["meta"]["versionId"]  # type: ignore[index]
    assert result.old_phone == "+6281111111111"
    _assert_pii_free(result.reason)


@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_write_applied_after_its_timeout_is_updated_once(
    serve: Serve, store: PatientStore, fake_time: FakeTime, write_mode: str
) -> None:
    """The user test in small (server frozen mid-write): the server holds our write past
    `REQUEST_TIMEOUT_S`, the client gives up, and the server then applies it anyway, its answer
    going nowhere. The retry (same If-Match) gets a 412; the re-read shows our number: `updated`
    with the answer-lost reason, one new version only, before/after versions of our write."""
    server = serve()
    first = store.add(patient_a())
    path = "/Patient/P001"
    # 1st write: held until the client has timed out, then handled (the write lands); the
    # retry: held 0.5 s so that it certainly reaches the server after the first one landed.
    store.faults.push(method=write_mode.upper(), path_prefix=path, status=0, delay_s=30.0)
    store.faults.push(method=write_mode.upper(), path_prefix=path, status=0, delay_s=0.5)
    async with open_updater(
        server, fake_time, write_mode=write_mode, request_timeout_s=1.0
    ) as updater:
        result = await updater.update(work(phone=NEW))
    assert (result.outcome, result.reason) == (Outcome.UPDATED, UPDATED_ANSWER_LOST)
    statuses = [s for m, _, s in fhir_requests(store) if m == write_mode.upper()]
    assert statuses[-1] == 412  # the retry, refused by If-Match: no second write
    assert store.writes == 1
    assert store.version_count("P001") == 2  # exactly one new version: the write that landed
    final = store.get("P001")
    assert final is not None
    assert active_mobiles(final) == [NEW]
    assert result.version_before == first["meta"]["versionId"]
    assert result.version_after == final["meta"]["versionId"] != result.version_before
    assert result.old_phone == "+6281111111111"
    _assert_pii_free(result.reason)


async def test_write_of_an_earlier_run_that_lost_its_answer_is_unchanged_on_the_next(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """An earlier run's write landed after its answer was lost, and that run never recorded it
    (killed, or out of attempts): the next run's first read shows the number — `unchanged`
    (an earlier run's change, `UNCHANGED_ON_RECORD`), not this run's update, no write."""
    server = serve()
    store.add(patient_a())
    store.faults.push(method="PUT", path_prefix="/Patient/P001", status=0, delay_s=30.0)
    async with open_updater(server, fake_time, request_timeout_s=0.5, max_attempts=1) as first:
        earlier = await first.update(work(phone=NEW))
    assert earlier.outcome is Outcome.FAILED  # its only attempt got no answer
    for _ in range(100):  # the server applies the held write once the client has gone
        if store.writes:
            break
        await asyncio.sleep(0.02)
    assert store.writes == 1
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work(phone=NEW))
    assert (result.outcome, result.reason) == (Outcome.UNCHANGED, UNCHANGED_ON_RECORD)
    assert store.writes == 1
    assert store.version_count("P001") == 2
    assert result.version_before == result.version_after


async def test_timeout_of_a_write_that_never_landed_is_retried_and_updated(
    serve: Serve, store: PatientStore, fake_time: FakeTime
) -> None:
    """A hang that never reaches the record (the gateway's `hang_s`, then a reset): the retry
    writes; `updated` without a reason, one new version."""
    server = serve()
    store.add(patient_a())
    store.faults.push(method="PUT", path_prefix="/Patient/P001", status=0, delay_s=30.0, reset=True)
    async with open_updater(server, fake_time, request_timeout_s=1.0) as updater:
        result = await updater.update(work(phone=NEW))
    assert (result.outcome, result.reason) == (Outcome.UPDATED, None)
    assert store.writes == 1
    assert store.version_count("P001") == 2


async def test_record_without_version_is_never_written(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """No meta.versionId and no ETag → failed, rather than an unconditional PUT."""
    full = store.add(patient_a())
    del full["meta"]
    store.faults.push(method="GET", path_prefix="/Patient/P001", status=200, body=full)
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.FAILED
    assert result.reason == "Patient has no versionId/ETag: refusing to write"
    assert writes_sent(store) == []


async def test_read_answering_another_patient_fails(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """GET Patient/P001 that returns P002 is never written over."""
    store.add(patient_a())
    store.faults.push(method="GET", path_prefix="/Patient/P001", status=200, body=patient_b())
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.FAILED
    assert writes_sent(store) == []


@pytest.mark.parametrize("write_mode", ["put", "patch"])
async def test_read_of_a_record_without_the_searched_nik_is_never_written(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, write_mode: str
) -> None:
    """The search finds P001 by NIK A, the full read of P001 carries another NIK (a stale search
    index, a NIK corrected in between): N's number must not go onto that record."""
    store.add(patient_a())
    other = patient_a()
    other["meta"] = {"versionId": "7"}
    other["identifier"] = [{"system": NIK_SYSTEM, "value": NIK_B}]
    store.faults.push(method="GET", path_prefix="/Patient/P001", status=200, body=other)
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.IDENTITY_MISMATCH
    assert result.reason is not None
    assert "does not carry the NIK" in result.reason
    _assert_pii_free(result.reason)
    assert writes_sent(store) == []


@pytest.mark.parametrize("write_mode", ["put", "patch"])
@pytest.mark.parametrize(
    "system", ["http://terminology.hl7.org/CodeSystem/v3-ObservationValue", None]
)
async def test_a_subsetted_read_is_never_written_back(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    write_mode: str,
    system: str | None,
) -> None:
    """A read tagged SUBSETTED is incomplete by the server's own word: a PUT of it would erase
    the fields left out, so nothing is written."""
    full = store.add(patient_a())
    cut = {k: v for k, v in full.items() if k not in ("address", "extension")}
    tag = {"code": "SUBSETTED"} | ({"system": system} if system else {})
    cut["meta"] = dict(full["meta"]) | {"tag": [tag]}
    store.faults.push(method="GET", path_prefix="/Patient/P001", status=200, body=cut)
    async with open_updater(server, fake_time, write_mode=write_mode) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.FAILED
    assert result.reason is not None
    assert "SUBSETTED" in result.reason
    assert writes_sent(store) == []


# --- C8(A): no-op ----------------------------------------------------------------------------


async def test_same_number_in_national_format_is_unchanged(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """C8(A): 081234567890 on the record, +62 812-3456-7890 in the row → unchanged, no write."""
    store.add(patient_a(telecom=[{"system": "phone", "value": "081234567890", "use": "mobile"}]))
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work(phone="+6281234567890"))
    assert (result.outcome, result.reason) == (Outcome.UNCHANGED, UNCHANGED_ON_RECORD)
    assert store.writes == 0
    assert store.version_count("P001") == 1
    assert result.attempts == 2
    assert result.old_phone == "+6281234567890"
    _assert_pii_free(result.reason)


@pytest.mark.parametrize("write_mode", ["put", "patch"])
@pytest.mark.parametrize("old_number", ["keep", "drop"])
async def test_new_number_already_on_the_record_as_old_is_written_once(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    write_mode: str,
    old_number: str,
) -> None:
    """The new number sits there as `use: old`: the stored record holds it once, as the mobile."""
    email = {
        "system": "email",
        "value": "a@example.org",
        "extension": [{"url": "x", "valueInteger": 7}],
    }
    home = {"system": "phone", "value": "0215550000", "use": "home"}
    older = {"system": "phone", "value": "+6281333333333", "use": "old", "period": {"end": "2020"}}
    new_as_old = {
        "system": "phone",
        "value": "0822-2222-2222",
        "use": "old",
        "period": {"end": "2023"},
    }
    current = {"system": "phone", "value": "+6281111111111", "use": "mobile", "rank": 1}
    store.add(patient_a(telecom=[email, new_as_old, home, current, older]))
    async with open_updater(
        server, fake_time, write_mode=write_mode, old_number=old_number
    ) as updater:
        result = await updater.update(work(phone=NEW))
    assert result.outcome is Outcome.UPDATED, result.reason
    after = store.get("P001")
    assert after is not None
    mobile = {"system": "phone", "value": NEW, "use": "mobile", "rank": 1}
    mobile["period"] = {"start": "2024-03-15"}  # in use since the row's date
    retired = {"system": "phone", "value": "+6281111111111", "use": "old"}
    retired["period"] = {"end": "2024-03-15"}
    kept = [retired] if old_number == "keep" else []
    assert json.dumps(after["telecom"]) == json.dumps([email, home, mobile, *kept, older])


# --- identity guard, dry run -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("guard", "outcome", "writes", "warned"),
    [
        ("enforce", Outcome.IDENTITY_MISMATCH, 0, False),
        ("warn", Outcome.UPDATED, 1, True),
        ("off", Outcome.UPDATED, 1, False),
    ],
)
async def test_identity_guard(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    guard: str,
    outcome: Outcome,
    writes: int,
    warned: bool,
) -> None:
    """A male Patient found by a woman's NIK: refused, warned about, or ignored per setting."""
    store.add(patient_a(gender="male"))
    caplog.set_level(logging.INFO)
    async with open_updater(server, fake_time, identity_guard=guard) as updater:
        result = await updater.update(work())
    assert result.outcome is outcome
    assert store.writes == writes
    if outcome is Outcome.IDENTITY_MISMATCH:
        assert result.reason == "gender on the record contradicts the NIK"
    assert any("identity_guard=warn" in r.getMessage() for r in caplog.records) is warned


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"deceasedBoolean": True}, "record is marked deceased (deceasedBoolean)"),
        ({"deceasedDateTime": "2023-01-05"}, "record is marked deceased (deceasedDateTime)"),
        ({"active": False}, "record is inactive (active=false)"),
        (
            {"link": [{"type": "replaced-by", "other": {"reference": "Patient/P009"}}]},
            "record was merged into another (link replaced-by)",
        ),
    ],
)
@pytest.mark.parametrize(
    ("guard", "outcome", "writes", "warned"),
    [
        ("enforce", Outcome.IDENTITY_MISMATCH, 0, False),
        ("warn", Outcome.UPDATED, 1, True),
        ("off", Outcome.UPDATED, 1, False),
    ],
)
async def test_identity_guard_refuses_deceased_inactive_and_merged_records(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    extra: dict[str, Any],
    reason: str,
    guard: str,
    outcome: Outcome,
    writes: int,
    warned: bool,
) -> None:
    """A deceased, inactive or merged-away Patient: refused, warned about or written per setting."""
    store.add(patient_a(**extra))
    store.add(patient_b("P009"))  # the merge target: never followed, never written
    caplog.set_level(logging.INFO)
    async with open_updater(server, fake_time, identity_guard=guard) as updater:
        result = await updater.update(work())
    assert result.outcome is outcome
    assert store.writes == writes
    assert store.version_count("P009") == 1
    assert all("P009" not in target for _, target, _ in fhir_requests(store))
    if outcome is Outcome.IDENTITY_MISMATCH:
        assert (result.reason, result.patient_id) == (reason, "P001")
    warnings = [r.getMessage() for r in caplog.records if "identity_guard=warn" in r.getMessage()]
    assert bool(warnings) is warned
    assert all(reason in w for w in warnings)


async def test_ordinary_row_outcomes_are_not_logged_at_info(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """patient_not_found is in the ledger and the report; the log gets a DEBUG line, not INFO."""
    caplog.set_level(logging.DEBUG, logger="phonesync.fhir.updater")
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.PATIENT_NOT_FOUND
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.endswith("updater")]
    assert lines == [(logging.DEBUG, f"row 2: patient_not_found ({result.reason})")]


async def test_dry_run_reads_and_decides_but_never_writes(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """Dry run: search and read happen, the outcome says "would update", nothing is written."""
    store.add(patient_a())
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work(), dry_run=True)
    assert (result.outcome, result.reason) == (Outcome.UPDATED, "dry run: would update")
    assert [m for m, _, _ in fhir_requests(store)] == ["GET", "GET"]
    assert store.writes == 0


# --- C9: 429/503 and Retry-After -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        ({"Retry-After": "7"}, 7.0),  # C9(A)
        ("http-date+30", 30.0),  # C9(B)
        ({"Retry-After": "86400"}, 60.0),  # C9(E): capped at retry_max_wait_s
    ],
)
async def test_429_retry_after_is_honoured_and_capped(
    server: ThreadedServer,
    store: PatientStore,
    fake_time: FakeTime,
    headers: dict[str, str] | str,
    expected_wait: float,
) -> None:
    """C9(A,B,E): wait exactly the Retry-After (seconds or HTTP-date), never more than the cap."""
    store.add(patient_a())
    if headers == "http-date+30":
        when = fake_time.wall() + timedelta(seconds=30)
        headers = {"Retry-After": format_datetime(when.astimezone(UTC), usegmt=True)}
    assert isinstance(headers, dict)
    store.faults.push(
        path_prefix=SEARCH_A,
        status=429,
        headers=headers,
        body={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "throttled"}],
        },
    )
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.UPDATED
    assert fake_time.waits == [expected_wait]
    assert result.attempts == 4
    assert updater._http.stats.retries == 1
    assert updater._http.stats.by_status == {"429": 1, "200": 3}


async def test_422_is_not_retried_and_diagnostics_are_recorded_masked(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """C9(C): 422 → failed at once with the server's diagnostics, masked."""
    store.add(patient_a())
    store.faults.push(
        method="PUT",
        status=422,
        body={
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "invalid",
                    "code": "invariant",
                    "diagnostics": f"telecom {NEW} rejected for NIK {NIK_A}",
                }
            ],
        },
    )
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.FAILED
    assert result.reason == (
        "PUT rejected: 422 invalid: telecom +628******2222 rejected for NIK 317401******0001"
    )
    assert len(writes_sent(store)) == 1
    assert fake_time.waits == []


class _MaxJitter(random.Random):
    """Full jitter that always draws the ceiling: makes the back-off schedule visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize("jitter", ["max", "seeded"])
async def test_503_always_gives_bounded_growing_waits_then_failed(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, jitter: str
) -> None:
    """C9(D): 5 attempts, jittered waits under 1, 2, 4, 8 s; row failed; the next row runs."""
    store.add(patient_a())
    store.add(patient_b())
    store.faults.push(path_prefix=SEARCH_A, status=503, body="Service Unavailable", times=99)
    settings = make_settings(server)
    rng = _MaxJitter() if jitter == "max" else random.Random(3)
    async with open_http(settings, fake_time, rng=rng) as http:
        updater = Updater(http, settings, fake_time.wall().date())
        first = await updater.update(work())
        second = await updater.update(work(NIK_B, row=3))
    assert first.outcome is Outcome.FAILED
    assert first.reason == "GET search: 503 after 5 attempts (Service Unavailable)"
    assert first.attempts == 5
    assert second.outcome is Outcome.UPDATED
    ceilings = [1.0, 2.0, 4.0, 8.0]
    assert len(fake_time.waits) == 4
    assert all(0 <= w <= c for w, c in zip(fake_time.waits, ceilings, strict=True))
    if jitter == "max":
        assert fake_time.waits == ceilings
    else:
        assert len(set(fake_time.waits)) == 4  # jittered, not a fixed schedule


async def test_retry_budget_bounds_the_total_time(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """retry_total_s stops retrying before the next wait would exceed it."""
    store.add(patient_a())
    store.faults.push(path_prefix=SEARCH_A, status=503, headers={"Retry-After": "6"}, times=99)
    async with open_updater(server, fake_time, retry_total_s=10) as updater:
        result = await updater.update(work())
    assert result.outcome is Outcome.FAILED
    assert result.reason == "GET search: 503 after 2 attempts (retry budget of 10 s spent)"
    assert fake_time.waits == [6.0]


# --- C15: nothing personal or secret leaks ---------------------------------------------------


@pytest.mark.parametrize("raise_for_status", [False, True])
async def test_500_with_url_in_body_and_error_leaks_nothing(
    serve: Serve,
    store: PatientStore,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    raise_for_status: bool,
) -> None:
    """C15: a 500 echoing the URL, NIK, phone and key → no clear value in logs, errors or reason."""
    server = serve(FhirProfile(api_key="test-key-123"))
    store.add(patient_a())
    echo = (
        f"error at {server.url}/fhir-r4/v1{SEARCH_A} ({WIRE_SEARCH_A}) "
        f"phone +6281234567890 / 081234567890, x-api-key: test-key-123"
    )
    store.faults.push(path_prefix=SEARCH_A, status=500, body=echo, times=99)
    caplog.set_level(logging.DEBUG)
    settings = make_settings(server, fhir_api_key="test-key-123")
    async with (
        aiohttp.ClientSession(raise_for_status=raise_for_status) as session,
        open_http(settings, fake_time, session=session) as http,
    ):
        result = await Updater(http, settings, fake_time.wall().date()).update(
            work(phone="+6281234567890")
        )
    assert result.outcome is Outcome.FAILED
    assert result.reason is not None
    assert result.reason.startswith("GET search: 500 after 5")
    texts = [result.reason, *(r.getMessage() for r in caplog.records)]
    texts += [str(r.exc_info) for r in caplog.records if r.exc_info]
    assert len(texts) > 2
    for text in texts:
        for secret in (NIK_A, "6281234567890", "81234567890", "test-key-123"):
            assert secret not in text


# --- fail fast --------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["api-key", "oauth2"])
async def test_persisting_401_propagates_fhir_unavailable(
    serve: Serve, store: PatientStore, fake_time: FakeTime, auth: str
) -> None:
    """C10: credentials refused after one re-auth → FhirUnavailable (the run aborts)."""
    server = serve(FhirProfile(auth=auth, api_key="other-key"))  # type: ignore[arg-type]
    store.add(patient_a())
    if auth == "oauth2":
        store.faults.push(method="GET", status=401, times=2)
    async with open_updater(server, fake_time, fhir_auth=auth) as updater:
        with pytest.raises(FhirUnavailable, match="refuses our credentials"):
            await updater.update(work())
    assert store.writes == 0
