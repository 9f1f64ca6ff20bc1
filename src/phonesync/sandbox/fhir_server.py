"""A local stand-in for the national FHIR R4 server (SATUSEHAT): an aiohttp application.

The Patient API lives here; everything in front of it (scripted faults, outage, rate limits,
authentication, concurrency cap, latency, random faults) is the gateway (`fhir_gateway.py`),
configured by a `FhirProfile` (`fhir_profile.py`). Errors are OperationOutcome JSON, except
plain-text 5xx. Routes are served at the root and under `/fhir-r4/v1`, like the national base URL.
With `FhirProfile.batch`, a `batch` Bundle POSTed to the base runs each entry through the same
code as the single request would (`fhir_batch.py` parses the Bundle and shapes the answers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from phonesync.sandbox import fhir_batch as fb
from phonesync.sandbox import fhir_store as fs
from phonesync.sandbox.fhir_gateway import (
    SANDBOX_PREFIX,
    Clock,
    Gateway,
    Handler,
    fhir_json,
    outcome,
)
from phonesync.sandbox.fhir_profile import FhirProfile
from phonesync.sandbox.fhir_store import (
    FHIR_JSON,
    FaultScript,
    JsonObject,
    PatientStore,
    RequestRecord,
    StoredVersion,
    load_patients_ndjson,
)
from phonesync.sandbox.request_log import request_summary

__all__ = ["FaultScript", "FhirProfile", "PatientStore", "RequestRecord", "create_fhir_app"]
__all__ += ["load_patients_ndjson"]

BASE_PREFIX = "/fhir-r4/v1"
TOKEN_PATH = "/oauth2/v1/accesstoken"
STORE_KEY = web.AppKey("phonesync_fhir_store", PatientStore)
PUT_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
PATCH_TYPES = frozenset({"application/json-patch+json", "application/json"})


def not_found(what: str) -> web.Response:
    return outcome(404, "not-found", f"{what} is not known")


def version_response(version: StoredVersion) -> web.Response:
    headers = {"Content-Type": FHIR_JSON, "ETag": version.etag}
    headers["Last-Modified"] = version.last_modified
    return web.Response(body=version.body, headers=headers)


def path_prefix(raw_path: str) -> str:
    """`/fhir-r4/v1` when the request was sent under the national base, else ""."""
    path = raw_path.partition("?")[0]
    return BASE_PREFIX if path == BASE_PREFIX or path.startswith(BASE_PREFIX + "/") else ""


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{path_prefix(request.raw_path)}"


def identifier_param(raw_path: str) -> tuple[str, str] | str:
    """(system, value) from the raw query — `|` encoded or not — or the reason it is unusable."""
    tokens: list[str] = []
    for part in raw_path.partition("?")[2].split("&"):
        key, _, raw = part.partition("=")
        key = unquote_plus(key)
        if key == "identifier":
            tokens.append(unquote_plus(raw))
        elif key and not key.startswith("_"):
            return f"unsupported search parameter '{key}'"
    if len(tokens) != 1:
        return "exactly one identifier=system|value parameter is required"
    system, bar, value = tokens[0].partition("|")
    if not (bar and system and value):
        return "identifier must be system|value, both non-empty"
    return system, value


def national_patch_problem(ops: list[JsonObject], current: JsonObject) -> str | None:
    """The national server's PATCH rules: `replace` only, plus name/birthDate/gender as sent now."""
    if any(op.get("op") != "replace" for op in ops):
        return "only 'replace' operations are allowed"
    sent = {op.get("path"): op.get("value") for op in ops}
    for field in ("name", "birthDate", "gender"):
        if f"/{field}" not in sent:
            return f"a replace of /{field} with the current value is required for validation"
        if sent[f"/{field}"] != current.get(field):
            return f"/{field} does not match the patient's current value"
    return None


def capability_statement(profile: FhirProfile) -> JsonObject:
    """Patient: read, vread, history, search by identifier, the allowed writes; batch if on."""
    writes = {"put": "update", "patch": "patch"}
    codes = ["read", "vread", "history-instance", "search-type"]
    codes += [writes[mode] for mode in sorted(profile.write_modes) if mode in writes]
    patient: JsonObject = {"type": "Patient", "interaction": [{"code": code} for code in codes]}
    patient["searchParam"] = [{"name": "identifier", "type": "token"}]
    patient |= {"versioning": "versioned-update", "updateCreate": False, "conditionalUpdate": False}
    rest: JsonObject = {"mode": "server", "resource": [patient]}
    if profile.batch:
        rest["interaction"] = [{"code": "batch"}]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": sorted(PATCH_TYPES),
        "rest": [rest],
    }


Build = Callable[[StoredVersion], JsonObject | web.Response]


class PatientApi:
    """The Patient endpoints: search, read, history, vread, update (PUT), patch and batch.

    Each endpoint is a thin handler over a function of its inputs (`find`, `read_version`,
    `history_of`, `vread_version`, `put`) that a batch entry calls the same way.
    """

    def __init__(self, store: PatientStore, profile: FhirProfile) -> None:
        self.store, self.profile = store, profile
        self._capability = fs.dumps(capability_statement(profile))

    async def metadata(self, request: web.Request) -> web.Response:
        return web.Response(body=self._capability, headers={"Content-Type": FHIR_JSON})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.stats())

    async def request_log(self, request: web.Request) -> web.Response:
        return web.json_response(request_summary(self.store))  # benchmarks: bench/run.py

    async def refuse(self, request: web.Request) -> web.Response:
        return self._refused()

    @staticmethod
    def _refused() -> web.Response:
        why = "conditional and type-level writes are not supported; write to Patient/{id}"
        return outcome(405, "not-supported", why)

    async def search(self, request: web.Request) -> web.Response:
        origin = f"{request.scheme}://{request.host}"
        return self.find(request.raw_path, base_url(request), origin + request.raw_path)

    def find(self, target: str, base: str, self_url: str) -> web.Response:
        """`GET Patient?identifier=system|value` (`target`: the raw path and query)."""
        token = identifier_param(target)
        if isinstance(token, str):
            return outcome(400, "invalid", token)
        matches = self.store.find(*token)
        self_link = {"relation": "self", "url": self_url}
        bundle: JsonObject = {"resourceType": "Bundle", "type": "searchset"}
        bundle |= {"total": len(matches), "link": [self_link]}
        if matches:
            bundle["entry"] = [
                {
                    "fullUrl": f"{base}/Patient/{version.resource['id']}",
                    "resource": self.store.reduced(version),
                    "search": {"mode": "match"},
                }
                for version in matches
            ]
        return fhir_json(bundle)

    async def read(self, request: web.Request) -> web.Response:
        return self.read_version(request.match_info["id"])

    def read_version(self, pid: str) -> web.Response:
        version = self.store.current(pid)
        return not_found(f"Patient/{pid}") if version is None else version_response(version)

    async def history(self, request: web.Request) -> web.Response:
        return self.history_of(request.match_info["id"], base_url(request))

    def history_of(self, pid: str, base: str) -> web.Response:
        versions = self.store.versions(pid)
        if not versions:
            return not_found(f"Patient/{pid}")
        url = f"{base}/Patient/{pid}"
        entries = [
            {
                "fullUrl": url,
                "resource": version.resource,
                "request": {"method": version.method, "url": f"Patient/{pid}"},
                "response": {"status": "200", "etag": version.etag},
            }
            for version in reversed(versions)  # FHIR: newest first
        ]
        bundle = {"resourceType": "Bundle", "type": "history", "total": len(entries)}
        return fhir_json({**bundle, "entry": entries})

    async def vread(self, request: web.Request) -> web.Response:
        return self.vread_version(request.match_info["id"], request.match_info["vid"])

    def vread_version(self, pid: str, vid: str) -> web.Response:
        for version in self.store.versions(pid):
            if version.vid == vid:
                return version_response(version)
        return not_found(f"Patient/{pid}/_history/{vid}")

    async def update(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        resource = await self._write_body(request, pid, "put", PUT_TYPES)
        if isinstance(resource, web.Response):
            return resource
        return self.put(pid, resource, request.headers.get("If-Match"))

    def put(self, pid: str, resource: Any, if_match: str | None) -> web.Response:
        """`PUT Patient/{id}` once allowed (`write_refusal`): the body checked, then committed."""
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            return outcome(400, "structure", "the body must be a Patient resource")
        if resource.get("id") != pid:
            return outcome(400, "invalid", f"the body's id must be {pid}")
        return self._commit(pid, "PUT", lambda _current: resource, if_match)

    async def patch(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        ops = await self._write_body(request, pid, "patch", PATCH_TYPES)
        if isinstance(ops, web.Response):
            return ops
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            return outcome(400, "structure", "the body must be a JSON Patch array of operations")
        if_match = request.headers.get("If-Match")
        return self._commit(pid, "PATCH", lambda current: self._patched(current, ops), if_match)

    def _patched(self, current: StoredVersion, ops: list[JsonObject]) -> JsonObject | web.Response:
        if self.profile.national_patch:
            problem = national_patch_problem(ops, current.resource)
            if problem is not None:
                return outcome(400, "invalid", problem, severity="invalid")
        doc: JsonObject = json.loads(current.body)
        try:
            fs.apply_patch(doc, ops)
        except fs.PatchError as exc:
            return outcome(exc.status, "processing", str(exc))
        if doc.get("resourceType") != "Patient" or doc.get("id") != current.resource["id"]:
            return outcome(400, "invalid", "a patch may not change resourceType or id")
        return doc

    async def _write_body(
        self, request: web.Request, pid: str, mode: str, types: frozenset[str]
    ) -> Any:
        """The parsed JSON body (None if it is not JSON), or the response refusing the write."""
        refusal = self.write_refusal(pid, mode)
        if refusal is not None:
            return refusal
        content_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if content_type not in types:
            return outcome(415, "not-supported", f"Content-Type must be one of {sorted(types)}")
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    def write_refusal(self, pid: str, mode: str) -> web.Response | None:
        """405 when the profile does not allow this write, 404 when the patient is not known."""
        if mode not in self.profile.write_modes:
            return outcome(405, "not-supported", f"{mode.upper()} is not allowed on this server")
        if self.store.current(pid) is None:
            return not_found(f"Patient/{pid}")
        return None

    def _commit(self, pid: str, method: str, build: Build, if_match: str | None) -> web.Response:
        """Hooks, then If-Match against the current version, then the new version — atomically."""
        self.store.run_before_write(pid)
        with self.store.lock:
            current = self.store.current(pid)
            if current is None:
                return not_found(f"Patient/{pid}")
            if if_match is not None and if_match != current.etag:
                why = f"If-Match {if_match} does not match the current version {current.etag}"
                return outcome(412, "conflict", why)
            result = build(current)
            if isinstance(result, web.Response):
                return result
            version = self.store.write(pid, result, method)
        return version_response(version)

    # -- batch --------------------------------------------------------------------------------

    async def batch(self, request: web.Request) -> web.Response:
        """`POST` a `batch` Bundle to the base: every entry answered as its single request."""
        if not self.profile.batch:
            return outcome(404, "not-supported", "batch is not supported")
        entries = fb.bundle_entries(await fb.load_bundle(request))
        if isinstance(entries, str):
            return outcome(400, "structure", entries)
        most = self.profile.batch_max_entries
        if len(entries) > most:
            why = f"a batch may hold at most {most} entries, not {len(entries)}"
            return outcome(413, "too-costly", why)
        prefix = path_prefix(request.raw_path)
        answers = [self._batch_entry(request, prefix, entry) for entry in entries]
        return fhir_json({"resourceType": "Bundle", "type": "batch-response", "entry": answers})

    def _batch_entry(self, request: web.Request, prefix: str, raw: Any) -> JsonObject:
        parsed = fb.parse_entry(raw)
        entry = None if isinstance(parsed, str) else parsed
        if entry is None:
            response, target = outcome(400, "structure", str(parsed)), ""
        else:
            target = f"{prefix}/{entry.url.removeprefix('/')}"
            origin = f"{request.scheme}://{request.host}"
            response = self._entry_response(entry, origin + prefix, origin + target)
        self.store.record_entry(fb.entry_record(request, target, entry, response.status))
        return fb.response_entry(response)

    def _entry_response(self, entry: fb.BatchEntry, base: str, url: str) -> web.Response:
        """What the single request for this entry would have answered."""
        if entry.method not in fb.ENTRY_METHODS:
            why = f"{entry.method} is not supported in a batch entry (GET or PUT)"
            return outcome(405, "not-supported", why)
        path, get = entry.path, entry.method == "GET"
        if path == ["Patient"]:
            return self.find(entry.url, base, url) if get else self._refused()
        if len(path) < 2 or path[0] != "Patient" or not path[1]:
            return not_found(entry.url.partition("?")[0])
        pid, rest = path[1], path[2:]
        if not rest and get:
            return self.read_version(pid)
        if not rest:
            refusal = self.write_refusal(pid, "put")
            return refusal if refusal is not None else self.put(pid, entry.resource, entry.if_match)
        if rest == ["_history"] and get:
            return self.history_of(pid, base)
        if len(rest) == 2 and rest[0] == "_history" and get:
            return self.vread_version(pid, rest[1])
        if rest[0] == "_history" and len(rest) <= 2:
            return outcome(405, "not-supported", f"{entry.method} is not allowed on {entry.url}")
        return not_found(entry.url.partition("?")[0])


def create_fhir_app(
    store: PatientStore, profile: FhirProfile, *, clock: Clock = time.monotonic
) -> web.Application:
    """The sandbox FHIR server; `clock` (seconds, monotonic) drives token expiry and rate limits."""
    gateway, api = Gateway(store, profile, clock), PatientApi(store, profile)
    app = web.Application(middlewares=[gateway.middleware])
    app[STORE_KEY] = store
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/metadata", api.metadata),
        ("GET", "/Patient", api.search),
        *((method, "/Patient", api.refuse) for method in ("POST", "PUT", "PATCH")),
        ("GET", "/Patient/{id}", api.read),
        ("PUT", "/Patient/{id}", api.update),
        ("PATCH", "/Patient/{id}", api.patch),
        ("GET", "/Patient/{id}/_history", api.history),
        ("GET", "/Patient/{id}/_history/{vid}", api.vread),
    ]
    for prefix in ("", BASE_PREFIX):
        for method, path, handler in routes:
            app.router.add_route(method, prefix + path, handler)
    for base in ("/", BASE_PREFIX, BASE_PREFIX + "/"):
        app.router.add_post(base, api.batch)  # 404 OperationOutcome unless the profile has batch
    app.router.add_post(TOKEN_PATH, gateway.oauth.token)
    app.router.add_get(SANDBOX_PREFIX + "stats", api.stats)
    app.router.add_get(SANDBOX_PREFIX + "requests", api.request_log)
    gateway.public |= {api.metadata, gateway.oauth.token}
    gateway.ungated.add(gateway.oauth.token)
    gateway.costs[api.batch] = fb.batch_cost
    return app
