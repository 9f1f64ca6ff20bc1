"""The sandbox FHIR server over real loopback HTTP: search, read, writes, auth, faults, limits."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from phonesync.sandbox.fhir_server import FhirProfile, load_patients_ndjson

from .fhir_client import KEY, Sandbox, Start

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIK_IBU_SYSTEM = "https://fhir.kemkes.go.id/id/nik-ibu"
NIK_A, NIK_B = "3174014203950001", "3174013112850002"


def patient(pid: str, nik: str, system: str = NIK_SYSTEM, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"use": "official", "system": system, "value": nik}],
        "name": [{"use": "official", "text": f"Pasien {pid}", "given": ["Pasien"]}],
        "gender": "female",
        "birthDate": "1995-03-02",
        **extra,
    }


P001_EXTRA: dict[str, Any] = {
    "address": [{"city": "Jakarta Timur", "country": "ID"}],
    "extension": [{"url": "https://example.org/ext/religion", "valueCode": "1"}],
    "telecom": [
        {"system": "email", "value": "a@example.org"},
        {"system": "phone", "value": "+6281111111111", "use": "mobile"},
    ],
}


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sandbox_patients() -> list[dict[str, Any]]:
    """Every sandbox here starts with P001 (NIK A), P002 (NIK B), P003 (newborn, nik-ibu A)."""
    return [
        patient("P001", NIK_A, **P001_EXTRA),
        patient("P002", NIK_B, gender="male", birthDate="1985-12-31"),
        patient("P003", NIK_A, NIK_IBU_SYSTEM),
    ]


def raw_get(
    sandbox: Sandbox, target: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET with the request target sent byte-for-byte (no client-side re-encoding)."""
    host, port = sandbox.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", target, headers=KEY if headers is None else headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def stored(sandbox: Sandbox, pid: str) -> dict[str, Any]:
    resource = sandbox.store.get(pid)
    assert resource is not None
    return resource


def issue(response: requests.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


def validation_ops(current: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"op": "replace", "path": f"/{k}", "value": current[k]}
        for k in ("name", "birthDate", "gender")
    ]


NEW_TELECOM = [{"system": "phone", "value": "+6282222222222", "use": "mobile"}]


# -- search ---------------------------------------------------------------------------------


def test_search_matches_system_and_value_and_excludes_nik_ibu(sb: Sandbox) -> None:
    """A NIK search finds only the patient whose identifier has exactly that system and value."""
    bundle = sb.get(f"/Patient?identifier={NIK_SYSTEM}|{NIK_A}").json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["P001"]
    ibu = sb.get(f"/Patient?identifier={NIK_IBU_SYSTEM}|{NIK_A}").json()
    assert [e["resource"]["id"] for e in ibu["entry"]] == ["P003"]


def test_search_entries_are_reduced_like_the_national_server(sb: Sandbox) -> None:
    """Search entries carry only id, identifier, name.text and meta, with mode match and fullUrl."""
    bundle = sb.get(f"/fhir-r4/v1/Patient?identifier={NIK_SYSTEM}|{NIK_A}").json()
    entry = bundle["entry"][0]
    assert set(entry["resource"]) == {"resourceType", "id", "identifier", "name", "meta"}
    assert entry["resource"]["name"] == [{"text": "Pasien P001"}]
    assert entry["search"] == {"mode": "match"}
    assert entry["fullUrl"] == f"{sb.url}/fhir-r4/v1/Patient/P001"
    assert bundle["link"][0]["relation"] == "self"
    assert stored(sb, "P001")["telecom"] == P001_EXTRA["telecom"]


def test_search_without_match_has_total_zero_and_no_entry(sb: Sandbox) -> None:
    """Nothing found: total 0 and no `entry` key at all."""
    bundle = sb.get(f"/Patient?identifier={NIK_SYSTEM}|9171014506880003").json()
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_search_finds_several_patients_sharing_a_nik(sb: Sandbox) -> None:
    """Two patients carrying the same NIK are both returned (the client must see the ambiguity)."""
    sb.store.add(patient("P004", NIK_B))
    bundle = sb.get(f"/Patient?identifier={NIK_SYSTEM}|{NIK_B}").json()
    assert bundle["total"] == 2
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == ["P002", "P004"]


@pytest.mark.parametrize(
    "target",
    [
        f"/Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id%2Fid%2Fnik%7C{NIK_A}",
        f"/Patient?identifier={NIK_SYSTEM}|{NIK_A}",
        f"/Patient?identifier={NIK_SYSTEM}%7c{NIK_A}",
        f"/fhir-r4/v1/Patient?identifier={NIK_SYSTEM}%7C{NIK_A}",
    ],
)
def test_search_parses_bar_encoded_or_not_and_records_raw_target(sb: Sandbox, target: str) -> None:
    """`|` raw or as %7C gives the same match; the recorded target is exactly what was sent."""
    status, bundle = raw_get(sb, target)
    assert status == 200
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["P001"]
    assert sb.store.requests[-1].raw_path_qs == target


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?identifier=",
        f"?identifier={NIK_A}",
        f"?identifier=|{NIK_A}",
        f"?identifier={NIK_SYSTEM}|",
        f"?identifier={NIK_SYSTEM}|{NIK_A}&identifier={NIK_SYSTEM}|{NIK_B}",
        "?name=Siti",
    ],
)
def test_search_without_a_usable_identifier_is_400(sb: Sandbox, query: str) -> None:
    """Missing, partial, repeated or unsupported search parameters give 400 OperationOutcome."""
    response = sb.get(f"/Patient{query}")
    assert response.status_code == 400
    assert issue(response)["severity"] == "error"


# -- read and history -----------------------------------------------------------------------


def test_read_returns_full_resource_with_weak_etag_of_opaque_version(sb: Sandbox) -> None:
    """GET Patient/{id}: full resource, ETag W/"<versionId>" (opaque, no number), Last-Modified."""
    response = sb.get("/Patient/P001")
    body = response.json()
    vid = body["meta"]["versionId"]
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert response.headers["ETag"] == f'W/"{vid}"'
    assert not vid.isdigit()
    assert "GMT" in response.headers["Last-Modified"]
    assert body["telecom"] == P001_EXTRA["telecom"]


@pytest.mark.parametrize(
    "path", ["/Patient/P999", "/Patient/P999/_history", "/Patient/P001/_history/nope"]
)
def test_unknown_patient_or_version_is_404_outcome(sb: Sandbox, path: str) -> None:
    """Unknown ids and versions answer 404 with an OperationOutcome."""
    response = sb.get(path)
    assert response.status_code == 404
    assert issue(response)["code"] == "not-found"


def test_history_and_vread_show_every_version(sb: Sandbox) -> None:
    """_history lists all versions newest first; _history/{vid} reads each one."""
    sb.store.modify("P001", lambda r: r.update(gender="unknown"))
    bundle = sb.get("/Patient/P001/_history").json()
    assert bundle["type"] == "history"
    assert bundle["total"] == 2
    newest, oldest = (e["resource"] for e in bundle["entry"])
    assert (newest["gender"], oldest["gender"]) == ("unknown", "female")
    old = sb.get(f"/Patient/P001/_history/{oldest['meta']['versionId']}")
    assert old.json() == oldest
    assert old.headers["ETag"] == f'W/"{oldest["meta"]["versionId"]}"'


def test_add_honours_a_given_version_id(start: Start) -> None:
    """Fixtures may pin versionIds (e.g. "djEtYWJjZGVm") to reproduce field cases."""
    sandbox = start()
    sandbox.store.add(patient("P010", NIK_B), version_id="djEtYWJjZGVm")
    sandbox.store.modify("P010", lambda r: r.pop("gender"), version_id="djItMTIzNDU2")
    assert sandbox.get("/Patient/P010").headers["ETag"] == 'W/"djItMTIzNDU2"'
    assert [v["meta"]["versionId"] for v in sandbox.store.history("P010")] == [
        "djEtYWJjZGVm",
        "djItMTIzNDU2",
    ]


# -- PUT ------------------------------------------------------------------------------------


def test_put_with_matching_if_match_replaces_whole_resource_and_keeps_versions(sb: Sandbox) -> None:
    """PUT replaces the resource (unsent elements vanish), adds a version, returns the new ETag."""
    current = sb.get("/Patient/P001")
    body = current.json()
    del body["address"]
    body["telecom"] = NEW_TELECOM
    response = sb.put("/Patient/P001", body, {"If-Match": current.headers["ETag"]})
    assert response.status_code == 200
    stored = response.json()
    assert "address" not in stored
    assert stored["telecom"] == NEW_TELECOM
    assert (
        response.headers["ETag"] == f'W/"{stored["meta"]["versionId"]}"' != current.headers["ETag"]
    )
    assert sb.store.version_count("P001") == 2
    assert sb.store.history("P001")[0]["address"] == P001_EXTRA["address"]
    assert sb.store.writes == 1


def test_put_with_stale_if_match_is_412_and_writes_nothing(sb: Sandbox) -> None:
    """If-Match that is not the current version verbatim → 412, no new version."""
    etag = sb.get("/Patient/P001").headers["ETag"]
    body = stored(sb, "P001")
    for stale in ['W/"djEtYWJjZGVm"', etag.removeprefix("W/"), etag.replace('"', "")]:
        response = sb.put("/Patient/P001", body, {"If-Match": stale})
        assert response.status_code == 412
        assert issue(response)["code"] == "conflict"
    assert sb.store.version_count("P001") == 1
    assert sb.store.writes == 0


def test_before_write_hook_simulates_a_concurrent_edit(sb: Sandbox) -> None:
    """A hook that edits the record just before the check makes a correct If-Match fail with 412."""
    etag = sb.get("/Patient/P001").headers["ETag"]

    def someone_adds_email(pid: str) -> None:
        sb.store.before_write.remove(someone_adds_email)
        sb.store.modify(
            pid, lambda r: r["telecom"].append({"system": "email", "value": "b@example.org"})
        )

    sb.store.hooks.before_write.append(someone_adds_email)
    first = sb.put("/Patient/P001", sb.store.history("P001")[0], {"If-Match": etag})
    assert first.status_code == 412
    fresh = sb.get("/Patient/P001")
    again = sb.put("/Patient/P001", fresh.json(), {"If-Match": fresh.headers["ETag"]})
    assert again.status_code == 200
    assert {"system": "email", "value": "b@example.org"} in again.json()["telecom"]


def test_put_without_if_match_is_accepted(sb: Sandbox) -> None:
    """Like most servers, a PUT without If-Match is accepted."""
    response = sb.put("/Patient/P002", stored(sb, "P002"))
    assert response.status_code == 200
    assert sb.store.version_count("P002") == 2


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/Patient/P999", patient("P999", NIK_A), 404),
        ("/Patient/P001", patient("P002", NIK_A), 400),
        ("/Patient/P001", {"resourceType": "Observation", "id": "P001"}, 400),
        (f"/Patient?identifier={NIK_SYSTEM}|{NIK_A}", patient("P001", NIK_A), 405),
    ],
)
def test_put_refusals(sb: Sandbox, path: str, body: dict[str, Any], status: int) -> None:
    """PUT never creates (unknown id 404, conditional update 405), checks the body's id and type."""
    response = sb.put(path, body)
    assert response.status_code == status
    assert issue(response)["severity"] == "error"
    assert len(sb.store) == 3
    assert sb.store.writes == 0


def test_put_is_405_when_the_profile_allows_only_patch(start: Start) -> None:
    """write_modes without "put" refuses PUT with 405 OperationOutcome."""
    sandbox = start(FhirProfile(write_modes=frozenset({"patch"})))
    response = sandbox.put("/Patient/P001", stored(sandbox, "P001"))
    assert response.status_code == 405
    assert issue(response)["code"] == "not-supported"


# -- PATCH ----------------------------------------------------------------------------------


def test_national_patch_replaces_telecom_when_validation_fields_are_sent(sb: Sandbox) -> None:
    """A replace-only patch carrying current name/birthDate/gender is applied as a new version."""
    current = sb.get("/Patient/P001")
    ops = [
        {"op": "replace", "path": "/telecom", "value": NEW_TELECOM},
        *validation_ops(current.json()),
    ]
    response = sb.patch("/Patient/P001", ops, {"If-Match": current.headers["ETag"]})
    assert response.status_code == 200
    assert response.json()["telecom"] == NEW_TELECOM
    assert response.json()["address"] == P001_EXTRA["address"]
    assert sb.store.writes == 1
    assert sb.store.history("P001")[-1]["telecom"] == NEW_TELECOM


@pytest.mark.parametrize(
    "mutate",
    [
        lambda ops: [*ops, {"op": "add", "path": "/telecom/-", "value": NEW_TELECOM[0]}],
        lambda ops: [*ops, {"op": "remove", "path": "/address"}],
        lambda ops: [op for op in ops if op["path"] != "/birthDate"],
        lambda ops: [op for op in ops if op["path"] != "/gender"],
        lambda ops: [{**op, "value": "male"} if op["path"] == "/gender" else op for op in ops],
    ],
    ids=["add", "remove", "no-birthDate", "no-gender", "wrong-gender"],
)
def test_national_patch_rules_refuse_with_severity_invalid(
    sb: Sandbox, mutate: Callable[..., Any]
) -> None:
    """Non-replace ops, or missing/different validation fields, give 400 with severity "invalid"."""
    base = [
        {"op": "replace", "path": "/telecom/0", "value": NEW_TELECOM[0]},
        *validation_ops(stored(sb, "P001")),
    ]
    response = sb.patch("/Patient/P001", mutate(base))
    assert response.status_code == 400
    assert issue(response)["severity"] == "invalid"
    assert sb.store.version_count("P001") == 1


def test_patch_honours_if_match_and_accepts_application_json(sb: Sandbox) -> None:
    """PATCH with a stale If-Match is 412; Content-Type application/json is accepted."""
    ops = [
        {"op": "replace", "path": "/telecom/1/value", "value": "+6282222222222"},
        *validation_ops(stored(sb, "P001")),
    ]
    stale = sb.patch("/Patient/P001", ops, {"If-Match": 'W/"djEtYWJjZGVm"'})
    assert stale.status_code == 412
    ok = sb.patch("/Patient/P001", ops, {"Content-Type": "application/json"})
    assert ok.status_code == 200
    assert ok.json()["telecom"][1]["value"] == "+6282222222222"


def test_standard_patch_supports_add_and_remove(start: Start) -> None:
    """With national_patch off, ordinary JSON Patch ops apply (add with '-', remove by index)."""
    sandbox = start(FhirProfile(national_patch=False))
    ops = [
        {"op": "add", "path": "/telecom/-", "value": NEW_TELECOM[0]},
        {"op": "remove", "path": "/telecom/0"},
    ]
    response = sandbox.patch("/Patient/P001", ops)
    assert response.status_code == 200
    assert response.json()["telecom"] == [P001_EXTRA["telecom"][1], NEW_TELECOM[0]]
    bad = sandbox.patch("/Patient/P001", [{"op": "replace", "path": "/photo/0", "value": {}}])
    assert bad.status_code == 422


def test_patch_is_405_when_the_profile_allows_only_put(start: Start) -> None:
    """write_modes without "patch" refuses PATCH with 405."""
    sandbox = start(FhirProfile(write_modes=frozenset({"put"})))
    assert sandbox.patch("/Patient/P001", []).status_code == 405


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"X-Other-Key": "sandbox-key"}])
def test_api_key_missing_or_wrong_is_401(sb: Sandbox, headers: dict[str, str]) -> None:
    """Without the configured API-key header every route but /metadata answers 401."""
    response = sb.get("/Patient/P001", headers=headers)
    assert response.status_code == 401
    assert issue(response)["code"] == "login"
    assert "sandbox-key" not in response.text
    assert sb.get("/metadata", headers=headers).status_code == 200


def test_api_key_header_name_is_configurable(start: Start) -> None:
    """A profile with another header name accepts that header (any case) and refuses x-api-key."""
    sandbox = start(FhirProfile(api_key_header="X-Gateway-Key", api_key="k1"))
    assert sandbox.get("/Patient/P001", headers={"x-gateway-key": "k1"}).status_code == 200
    assert sandbox.get("/Patient/P001", headers={"x-api-key": "k1"}).status_code == 401
    assert sandbox.store.requests[0].headers["X-GATEWAY-KEY"] == "k1"


def token_request(sandbox: Sandbox, *, wrong: bool = False) -> requests.Response:
    form = {"client_id": "sandbox-client", "client_secret": "nope" if wrong else "sandbox-secret"}
    return sandbox.http.post(
        f"{sandbox.url}/oauth2/v1/accesstoken?grant_type=client_credentials", data=form
    )


def test_oauth2_token_has_satusehat_shape_and_expires(start: Start) -> None:
    """The token reply has a string expires_in; the bearer works until the clock passes it."""
    clock = FakeClock()
    sandbox = start(FhirProfile(auth="oauth2", token_lifetime_s=120), clock)
    reply = token_request(sandbox).json()
    assert reply["expires_in"] == "120"
    assert (reply["token_type"], reply["status"], reply["client_id"]) == (
        "BearerToken",
        "approved",
        "sandbox-client",
    )
    assert {"issued_at", "organization_name"} <= set(reply)
    bearer = {"Authorization": f"Bearer {reply['access_token']}"}
    assert sandbox.get("/Patient/P001", headers=bearer).status_code == 200
    assert sandbox.get("/Patient/P001", headers=KEY).status_code == 401
    clock.now += 120
    expired = sandbox.get("/Patient/P001", headers=bearer)
    assert expired.status_code == 401
    assert issue(expired)["code"] == "login"


def test_oauth2_failed_login_limits_token_requests_to_one_a_minute(start: Start) -> None:
    """Wrong credentials → 401, then 429 + Retry-After for a minute, even with the right secret."""
    clock = FakeClock()
    sandbox = start(FhirProfile(auth="oauth2"), clock)
    assert token_request(sandbox, wrong=True).status_code == 401
    clock.now += 30
    locked = token_request(sandbox)
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "30"
    clock.now += 30
    assert token_request(sandbox).status_code == 200


def test_oauth2_token_default_lifetime_is_3599_as_string(start: Start) -> None:
    """Default lifetime mirrors SATUSEHAT: "3599", a string."""
    sandbox = start(FhirProfile(auth="oauth2"))
    assert token_request(sandbox).json()["expires_in"] == "3599"


# -- faults, limits, latency ----------------------------------------------------------------


def test_fault_script_answers_429_with_retry_after_then_the_real_response(sb: Sandbox) -> None:
    """A pushed fault answers the next matching request only, with its status, headers and body."""
    sb.store.faults.push(
        method="GET",
        path_prefix="/Patient/P001",
        status=429,
        headers={"Retry-After": "7"},
        body={"resourceType": "OperationOutcome", "issue": []},
    )
    assert sb.get("/Patient/P002").status_code == 200
    faulted = sb.get("/fhir-r4/v1/Patient/P001")
    assert faulted.status_code == 429
    assert faulted.headers["Retry-After"] == "7"
    assert faulted.headers["Content-Type"].startswith("application/fhir+json")
    assert sb.get("/Patient/P001").status_code == 200
    assert [r.status for r in sb.store.requests] == [200, 429, 200]


def test_fault_script_plain_text_503_several_times(sb: Sandbox) -> None:
    """A str body is sent as text/plain; `times` repeats the fault."""
    sb.store.faults.push(status=503, body="Service Unavailable", times=2)
    for _ in range(2):
        response = sb.get("/Patient/P001")
        assert response.status_code == 503
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.text == "Service Unavailable"
    assert sb.get("/Patient/P001").status_code == 200


def test_fault_script_reset_closes_the_connection(sb: Sandbox) -> None:
    """reset=True closes the connection without an answer; the request is recorded with status 0."""
    sb.store.faults.push(status=0, reset=True)
    with pytest.raises(requests.ConnectionError):
        sb.get("/Patient/P001")
    assert sb.store.requests[-1].status == 0
    assert sb.get("/Patient/P001").status_code == 200


def test_fault_script_delay_makes_a_client_time_out(sb: Sandbox) -> None:
    """delay_s holds the answer back long enough for a client timeout."""
    sb.store.faults.push(status=200, body={}, delay_s=2.0)
    with pytest.raises(requests.Timeout):
        sb.get("/Patient/P001", timeout=0.2)
    sb.store.faults.push(status=504, body="Gateway Timeout", delay_s=0.1)
    started = time.monotonic()
    assert sb.get("/Patient/P001").status_code == 504
    assert time.monotonic() - started >= 0.1


def test_fault_status_zero_delays_the_real_answer(sb: Sandbox) -> None:
    """status=0 with delay_s answers normally, only late."""
    sb.store.faults.push(status=0, delay_s=0.1)
    started = time.monotonic()
    assert sb.get("/Patient/P001").json()["id"] == "P001"
    assert time.monotonic() - started >= 0.1


def test_rate_limit_answers_429_with_integer_retry_after(start: Start) -> None:
    """Beyond the burst the token bucket answers 429 + Retry-After until time refills it."""
    clock = FakeClock()
    sandbox = start(FhirProfile(rate_limit_rps=0.5, rate_limit_burst=3), clock)
    assert [sandbox.get("/Patient/P001").status_code for _ in range(3)] == [200, 200, 200]
    limited = sandbox.get("/Patient/P001")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert issue(limited)["code"] == "throttled"
    clock.now += 2
    assert sandbox.get("/Patient/P001").status_code == 200


def test_error_rate_answers_plain_text_5xx_deterministically(start: Start) -> None:
    """error_rate gives text/plain 500/502/503/504s, the same sequence for the same seed."""
    sandbox = start(FhirProfile(error_rate=1.0))
    always = [sandbox.get("/Patient/P001") for _ in range(20)]
    assert {r.status_code for r in always} <= {500, 502, 503, 504}
    assert all(r.headers["Content-Type"].startswith("text/plain") for r in always)
    runs = []
    for _ in range(2):
        sandbox = start(FhirProfile(error_rate=0.5, seed=7))
        runs.append([sandbox.get("/Patient/P001").status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert 200 in runs[0]
    assert set(runs[0]) - {200} <= {500, 502, 503, 504}


def test_latency_is_added_to_each_request(start: Start) -> None:
    """latency_ms (with p99 equal to the median) delays every answer by that much."""
    sandbox = start(FhirProfile(latency_ms=60, latency_p99_ms=60))
    started = time.monotonic()
    sandbox.get("/Patient/P001")
    assert time.monotonic() - started >= 0.055


# -- metadata, stats, store, files ----------------------------------------------------------


@pytest.mark.parametrize(
    ("modes", "writes"), [({"put", "patch"}, {"update", "patch"}), ({"patch"}, {"patch"})]
)
def test_metadata_describes_patient_interactions_without_auth(
    start: Start, modes: set[str], writes: set[str]
) -> None:
    """/metadata is public and lists read, search by identifier and the allowed writes, no batch."""
    sandbox = start(FhirProfile(write_modes=frozenset(modes)))
    capability = sandbox.get("/fhir-r4/v1/metadata", headers={}).json()
    rest = capability["rest"][0]
    (resource,) = rest["resource"]
    codes = {i["code"] for i in resource["interaction"]}
    assert {"read", "search-type"} | writes <= codes
    assert {"update", "patch"} - writes - codes == {"update", "patch"} - writes
    assert [p["name"] for p in resource["searchParam"]] == ["identifier"]
    assert "batch" not in {i["code"] for i in rest.get("interaction", [])}


def test_stats_count_requests_by_method_and_status(sb: Sandbox) -> None:
    """/_sandbox/stats counts requests, writes, patients and versions (and is not recorded)."""
    sb.get("/Patient/P001")
    sb.get("/Patient/P999")
    sb.put("/Patient/P002", stored(sb, "P002"))
    stats = sb.get("/_sandbox/stats", headers={}).json()
    assert stats["requests"]["by_method"] == {"GET": 2, "PUT": 1}
    assert stats["requests"]["by_status"] == {"200": 2, "404": 1}
    assert (stats["writes"], stats["patients"], stats["versions"]) == (1, 3, 4)
    assert len(sb.store.requests) == 3


def test_requests_are_recorded_with_headers_and_body(sb: Sandbox) -> None:
    """Each request is recorded: method, raw target, headers (case-insensitive), status, body."""
    sb.put("/Patient/P002", stored(sb, "P002"), {"If-Match": 'W/"x"'})
    record = sb.store.requests[-1]
    assert (record.method, record.raw_path_qs, record.status) == ("PUT", "/Patient/P002", 412)
    assert record.headers["if-match"] == 'W/"x"'
    assert record.headers["X-API-KEY"] == "sandbox-key"
    assert json.loads(record.body)["id"] == "P002"


def test_store_python_api_copies_and_counts(sb: Sandbox) -> None:
    """get/search/history return copies; modify adds a version without counting as a write."""
    copy = sb.store.get("P001")
    assert copy is not None
    copy["gender"] = "male"
    assert stored(sb, "P001")["gender"] == "female"
    assert [p["id"] for p in sb.store.search(NIK_SYSTEM, NIK_A)] == ["P001"]
    sb.store.modify(
        "P001", lambda r: r["identifier"].__setitem__(0, {"system": NIK_SYSTEM, "value": NIK_B})
    )
    assert sb.store.search(NIK_SYSTEM, NIK_A) == []
    assert sorted(p["id"] for p in sb.store.search(NIK_SYSTEM, NIK_B)) == ["P001", "P002"]
    assert (sb.store.version_count("P001"), sb.store.writes) == (2, 0)
    with pytest.raises(ValueError, match="already exists"):
        sb.store.add(patient("P001", NIK_A))


def test_load_patients_ndjson_reads_lines_and_names_the_bad_one(tmp_path: Path) -> None:
    """NDJSON loading skips blank lines and names the file and line of a bad record."""
    good = tmp_path / "good.ndjson"
    good.write_text(
        json.dumps(patient("P001", NIK_A)) + "\n\n" + json.dumps(patient("P002", NIK_B)) + "\n"
    )
    assert [p["id"] for p in load_patients_ndjson(good)] == ["P001", "P002"]
    for lines, reason in [
        (["{not json"], "not valid JSON"),
        (['{"resourceType": "Observation", "id": "x"}'], "Patient"),
        ([json.dumps(patient("P001", NIK_A))] * 2, "duplicate"),
    ]:
        bad = tmp_path / "bad.ndjson"
        bad.write_text("\n".join([json.dumps(patient("P000", NIK_B)), *lines]) + "\n")
        with pytest.raises(ValueError, match=rf"bad\.ndjson:{len(lines) + 1}: .*{reason}"):
            load_patients_ndjson(bad)
