"""FHIR `batch` Bundles on the sandbox over loopback HTTP: capability, entries, log, gateway."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.scenario import add_knob_options, profile_from_args

from .fhir_client import Sandbox, Start

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIK_A, NIK_B, NIK_NONE = "3174014203950001", "3174013112850002", "9171014506880003"
BATCH = FhirProfile(batch=True)
NEW_MOBILE = {"system": "phone", "value": "+6282222222222", "use": "mobile"}


def patient(pid: str, nik: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"use": "official", "system": NIK_SYSTEM, "value": nik}],
        "name": [{"use": "official", "text": f"Pasien {pid}"}],
        "gender": "female",
        "birthDate": "1995-03-02",
        "telecom": [{"system": "phone", "value": "+6281111111111", "use": "mobile"}],
    }


@pytest.fixture
def sandbox_patients() -> list[dict[str, Any]]:
    """Every sandbox here starts with P001 (NIK A) and P002 (NIK B)."""
    return [patient("P001", NIK_A), patient("P002", NIK_B)]


@pytest.fixture
def sandbox_profile() -> FhirProfile:
    """`start()` and `sb`: batch on (api-key auth, PUT and PATCH allowed)."""
    return BATCH


def search_url(nik: str) -> str:
    return "Patient?identifier=" + quote(f"{NIK_SYSTEM}|{nik}", safe="")


def get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def put(resource: dict[str, Any], if_match: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "PUT", "url": f"Patient/{resource['id']}"}
    if if_match is not None:
        request["ifMatch"] = if_match
    return {"request": request, "resource": resource}


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def with_new_mobile(sandbox: Sandbox, pid: str) -> dict[str, Any]:
    resource = sandbox.store.get(pid)
    assert resource is not None
    resource["telecom"] = [NEW_MOBILE]
    return resource


def etag(sandbox: Sandbox, pid: str) -> str:
    resource = sandbox.store.get(pid)
    assert resource is not None
    return f'W/"{resource["meta"]["versionId"]}"'


def statuses(reply: requests.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["resourceType"], body["type"]) == ("Bundle", "batch-response")
    return [entry["response"]["status"] for entry in body["entry"]]


def first_issue(reply: requests.Response) -> dict[str, Any]:
    body = reply.json()
    assert body["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = body["issue"][0]
    return issue


# -- capability --------------------------------------------------------------------------------


def test_capability_statement_advertises_batch_only_when_on(start: Start) -> None:
    """With batch on rest[0].interaction holds {"code": "batch"}; off, no batch anywhere."""
    on = start().get("/fhir-r4/v1/metadata").json()
    assert {"code": "batch"} in on["rest"][0]["interaction"]
    off = start(FhirProfile()).get("/metadata").json()
    assert {"code": "batch"} not in off["rest"][0].get("interaction", [])
    assert '"batch"' not in json.dumps(off)


# -- entries ----------------------------------------------------------------------------------


def test_mixed_bundle_answers_each_entry_as_its_single_request(sb: Sandbox) -> None:
    """Search hit and miss, read, PUT with a current If-Match, PUT with a stale one: in order."""
    stale = etag(sb, "P002")
    sb.store.modify("P002", lambda p: p.update(gender="male"))  # someone else wrote P002
    fresh = etag(sb, "P001")
    single_hit = sb.get("/fhir-r4/v1/" + search_url(NIK_A)).json()
    reply = sb.post(
        bundle(
            get(search_url(NIK_A)),
            get(search_url(NIK_NONE)),
            get("Patient/P002"),
            put(with_new_mobile(sb, "P001"), fresh),
            put(with_new_mobile(sb, "P002"), stale),
        )
    )
    assert statuses(reply) == ["200 OK", "200 OK", "200 OK", "200 OK", "412 Precondition Failed"]
    hit, miss, read, written, refused = reply.json()["entry"]
    assert hit["resource"] == single_hit  # the searchset exactly, reduced entries included
    assert set(hit["resource"]["entry"][0]["resource"]) == {
        "resourceType",
        "id",
        "identifier",
        "name",
        "meta",
    }
    assert (miss["resource"]["total"], "entry" in miss["resource"]) == (0, False)
    assert read["resource"] == sb.get("/Patient/P002").json()
    assert read["response"]["etag"] == etag(sb, "P002")
    assert written["resource"]["telecom"] == [NEW_MOBILE]
    assert written["response"]["etag"] == etag(sb, "P001") != fresh
    assert written["response"]["lastModified"] == written["resource"]["meta"]["lastUpdated"]
    assert refused["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert "resource" not in refused
    assert sb.store.version_count("P002") == 2  # the stale PUT wrote nothing
    assert sb.store.get("P002")["telecom"] != [NEW_MOBILE]  # type: ignore[index]


def test_entries_answer_in_the_order_sent(sb: Sandbox) -> None:
    """The response has as many entries as the request, in the same order."""
    pids = ["P002", "P404", "P001", "P002", "P001", "P999"]
    reply = sb.post(bundle(*(get(f"Patient/{pid}") for pid in pids)))
    assert statuses(reply) == [
        "200 OK",
        "404 Not Found",
        "200 OK",
        "200 OK",
        "200 OK",
        "404 Not Found",
    ]
    ids = [e.get("resource", {}).get("id") for e in reply.json()["entry"]]
    assert ids == ["P002", None, "P001", "P002", "P001", None]


def test_put_in_a_batch_adds_exactly_one_version_readable_by_plain_get(sb: Sandbox) -> None:
    """A batch PUT is one new version; plain GET and the history show it, the old one kept."""
    before = etag(sb, "P001")
    reply = sb.post(bundle(put(with_new_mobile(sb, "P001"), before)), path="/")
    assert statuses(reply) == ["200 OK"]
    assert sb.store.version_count("P001") == 2
    current = sb.get("/fhir-r4/v1/Patient/P001")
    assert current.json()["telecom"] == [NEW_MOBILE]
    assert current.headers["ETag"] == reply.json()["entry"][0]["response"]["etag"]
    history = sb.get("/Patient/P001/_history").json()
    assert [f'W/"{e["resource"]["meta"]["versionId"]}"' for e in history["entry"]][1] == before


def test_entry_with_another_method_is_405_and_the_others_still_run(sb: Sandbox) -> None:
    """PATCH or DELETE in an entry answer 405; the GET and PUT around them are processed."""
    resource = with_new_mobile(sb, "P002")
    entries = [
        get("Patient/P001"),
        {"request": {"method": "PATCH", "url": "Patient/P001"}, "resource": []},
        {"request": {"method": "DELETE", "url": "Patient/P001"}},
        put(resource),
    ]
    reply = sb.post(bundle(*entries), path="/fhir-r4/v1/")
    assert statuses(reply) == [
        "200 OK",
        "405 Method Not Allowed",
        "405 Method Not Allowed",
        "200 OK",
    ]
    assert reply.json()["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "not-supported"
    assert sb.store.version_count("P001") == 1
    assert sb.store.version_count("P002") == 2


def test_put_entry_follows_the_write_mode(start: Start) -> None:
    """A profile that allows PATCH only refuses a batch PUT 405, as it refuses a single PUT."""
    sandbox = start(FhirProfile(batch=True, write_modes=frozenset({"patch"})))
    reply = sandbox.post(bundle(put(with_new_mobile(sandbox, "P001"))))
    assert statuses(reply) == ["405 Method Not Allowed"]
    assert sandbox.store.version_count("P001") == 1


def test_bad_entries_answer_like_their_single_requests(sb: Sandbox) -> None:
    """A bad search, an unknown patient, a body for another id, a malformed entry."""
    other = with_new_mobile(sb, "P001")
    entries = [
        get("Patient?name=Siti"),
        put(patient("P404", NIK_NONE)),
        {"request": {"method": "PUT", "url": "Patient/P002"}, "resource": other},
        {"request": {"url": "Patient/P001"}},
    ]
    reply = sb.post(bundle(*entries))
    assert statuses(reply) == [
        "400 Bad Request",
        "404 Not Found",
        "400 Bad Request",
        "400 Bad Request",
    ]
    assert sb.store.writes == 0


# -- the whole bundle -------------------------------------------------------------------------


def test_batch_off_is_404_operation_outcome(start: Start) -> None:
    """Without the knob a batch POST answers 404 "batch is not supported" and writes nothing."""
    sandbox = start(FhirProfile())
    reply = sandbox.post(bundle(put(with_new_mobile(sandbox, "P001"))))
    assert reply.status_code == 404
    assert first_issue(reply)["diagnostics"] == "batch is not supported"
    assert sandbox.store.version_count("P001") == 1


def test_more_than_batch_max_entries_is_413(start: Start) -> None:
    """One entry above batch_max_entries refuses the whole bundle 413; at the limit it runs."""
    sandbox = start(FhirProfile(batch=True, batch_max_entries=3))
    too_many = sandbox.post(bundle(*[get("Patient/P001")] * 4))
    assert too_many.status_code == 413
    assert first_issue(too_many)["code"] == "too-costly"
    assert statuses(sandbox.post(bundle(*[get("Patient/P001")] * 3))) == ["200 OK"] * 3


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        {"resourceType": "Parameters"},
        {"resourceType": "Bundle", "type": "transaction", "entry": []},
        {"resourceType": "Bundle", "type": "batch", "entry": {}},
    ],
    ids=["bad-json", "not-a-bundle", "transaction", "entry-not-a-list"],
)
def test_a_body_that_is_not_a_batch_bundle_is_400(sb: Sandbox, body: Any) -> None:
    """Bad JSON, another resource, another Bundle type, entry not a list: 400 OperationOutcome."""
    reply = sb.post(body)
    assert reply.status_code == 400
    assert first_issue(reply)["severity"] == "error"


def test_an_empty_batch_answers_an_empty_batch_response(sb: Sandbox) -> None:
    """No entries: 200 with an empty entry list."""
    assert statuses(sb.post({"resourceType": "Bundle", "type": "batch"})) == []


# -- gateway and request log ------------------------------------------------------------------


def test_api_key_is_required_for_a_batch(sb: Sandbox) -> None:
    """Without the API key the bundle is refused 401 before any entry runs."""
    reply = sb.http.post(
        sb.url + "/fhir-r4/v1",
        data=json.dumps(bundle(put(with_new_mobile(sb, "P001")))),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert reply.status_code == 401
    assert sb.store.version_count("P001") == 1
    assert sb.store.batch_entries == []


def test_oauth2_bearer_is_required_for_a_batch(start: Start) -> None:
    """With OAuth2 a batch needs a valid bearer token, and works with one."""
    sandbox = start(FhirProfile(auth="oauth2", batch=True))
    body = bundle(get("Patient/P001"))
    assert sandbox.post(body, headers={"Authorization": "Bearer nope"}).status_code == 401
    form = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
    token = sandbox.http.post(
        f"{sandbox.url}/oauth2/v1/accesstoken?grant_type=client_credentials", data=form
    ).json()["access_token"]
    reply = sandbox.post(body, headers={"Authorization": f"Bearer {token}"})
    assert statuses(reply) == ["200 OK"]


def test_bundle_is_one_request_and_each_entry_is_recorded(sb: Sandbox) -> None:
    """The log holds one POST; batch_entries holds each entry as its single request would be."""
    fresh = etag(sb, "P001")
    entries = [get(search_url(NIK_A)), put(with_new_mobile(sb, "P001"), fresh), get("Patient/P9")]
    assert statuses(sb.post(bundle(*entries))) == ["200 OK", "200 OK", "404 Not Found"]
    assert [(r.method, r.status) for r in sb.store.requests] == [("POST", 200)]
    recorded = [(r.method, r.raw_path_qs, r.status) for r in sb.store.batch_entries]
    assert recorded == [
        ("GET", "/fhir-r4/v1/" + search_url(NIK_A), 200),
        ("PUT", "/fhir-r4/v1/Patient/P001", 200),
        ("GET", "/fhir-r4/v1/Patient/P9", 404),
    ]
    put_record = sb.store.batch_entries[1]
    assert put_record.headers["If-Match"] == fresh
    assert put_record.headers["x-api-key"] == "sandbox-key"
    assert json.loads(put_record.body)["telecom"] == [NEW_MOBILE]
    summary = sb.get("/_sandbox/requests").json()
    assert summary["requests"]["total"] == 1
    assert summary["requests"]["by_method"] == {"POST": 1}
    assert summary["batch_entries"]["total"] == 3
    assert summary["batch_entries"]["by_method"] == {"GET": 2, "PUT": 1}
    assert summary["written"]["P001"]["new_versions"] == 1
    assert summary["written"]["P001"]["mobiles"] == [NEW_MOBILE["value"]]
    assert summary["writes"] == 1
    stats = sb.get("/_sandbox/stats").json()
    assert stats["requests"]["by_status"] == {"200": 1}
    assert stats["batch_entries"]["by_status"] == {"200": 2, "404": 1}
    assert stats["writes"] == 1


def test_batch_latency_is_write_latency_with_a_put_plus_1_ms_per_entry(start: Start) -> None:
    """Reads only: the read latency (0) plus 1 ms per entry; any PUT: the write latency."""
    sandbox = start(FhirProfile(batch=True, write_latency_ms=400.0))
    began = time.monotonic()
    assert statuses(sandbox.post(bundle(*[get("Patient/P001")] * 100))) == ["200 OK"] * 100
    reads_s = time.monotonic() - began
    began = time.monotonic()
    assert statuses(
        sandbox.post(bundle(get("Patient/P002"), put(with_new_mobile(sandbox, "P001"))))
    )
    write_s = time.monotonic() - began
    assert 0.1 <= reads_s < 0.35
    assert write_s >= 0.12  # log-normal, median 400 ms, p99 800 ms


def test_batch_knobs_come_from_a_scenario_and_the_command_line(tmp_path: Path) -> None:
    """`batch = true` / `batch_max_entries` in TOML, `--batch` / `--no-batch` as options."""
    parser = argparse.ArgumentParser()
    add_knob_options(parser)
    scenario = tmp_path / "batch.toml"
    scenario.write_text("batch = true\nbatch_max_entries = 20\n")
    profile = profile_from_args(parser.parse_args(["--scenario", str(scenario)]))
    assert (profile.batch, profile.batch_max_entries) == (True, 20)
    assert profile_from_args(parser.parse_args(["--batch"])).batch is True
    off = parser.parse_args(["--scenario", str(scenario), "--no-batch"])
    assert profile_from_args(off).batch is False
    assert profile_from_args(parser.parse_args([])).batch is False
    with pytest.raises(ValueError, match="batch_max_entries must be at least 1"):
        FhirProfile(batch_max_entries=0)
