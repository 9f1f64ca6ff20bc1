"""A local stand-in for the national FHIR R4 server (SATUSEHAT): an aiohttp application.

Every request passes one middleware, in this order: scripted fault (`store.faults`) → added
latency → rate limit (429 + Retry-After) → authentication (API key or OAuth2 bearer) → random
503 (`error_rate`) → the handler. Errors are OperationOutcome JSON, except the plain-text 503.
Routes are served at the root and under `/fhir-r4/v1`, like the national base URL.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from aiohttp import web

from phonesync.sandbox import fhir_store as fs
from phonesync.sandbox.fhir_store import (
    FHIR_JSON,
    FaultScript,
    JsonObject,
    PatientStore,
    RequestRecord,
    StoredVersion,
    load_patients_ndjson,
)

__all__ = ["FaultScript", "FhirProfile", "PatientStore", "RequestRecord", "create_fhir_app"]
__all__ += ["load_patients_ndjson"]

BASE_PREFIX = "/fhir-r4/v1"
TOKEN_PATH = "/oauth2/v1/accesstoken"
SANDBOX_PREFIX = "/_sandbox/"
LOGIN_LOCKOUT_S = 60.0
BEARER = {"WWW-Authenticate": "Bearer"}
STORE_KEY = web.AppKey("phonesync_fhir_store", PatientStore)
PUT_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
PATCH_TYPES = frozenset({"application/json-patch+json", "application/json"})

Clock = Callable[[], float]
Headers = dict[str, str] | None
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FhirProfile:
    """How the sandbox behaves: auth, allowed writes, PATCH rules, latency, limits and errors."""

    auth: Literal["api-key", "oauth2"] = "api-key"
    api_key: str = "sandbox-key"
    api_key_header: str = "x-api-key"
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    token_lifetime_s: int = 3599
    write_modes: frozenset[str] = frozenset({"put", "patch"})
    national_patch: bool = True
    latency_ms: float = 0.0
    latency_p99_ms: float | None = None
    rate_limit_rps: float | None = None
    rate_limit_burst: int = 10
    error_rate: float = 0.0
    seed: int = 0


def fhir_json(payload: object, status: int = 200, headers: Headers = None) -> web.Response:
    all_headers = {"Content-Type": FHIR_JSON, **(headers or {})}
    return web.Response(body=fs.dumps(payload), status=status, headers=all_headers)


def outcome(
    status: int, code: str, why: str, headers: Headers = None, severity: str = "error"
) -> web.Response:
    """An OperationOutcome error response."""
    issue = {"severity": severity, "code": code, "diagnostics": why}
    return fhir_json({"resourceType": "OperationOutcome", "issue": [issue]}, status, headers)


def not_found(what: str) -> web.Response:
    return outcome(404, "not-found", f"{what} is not known")


def version_response(version: StoredVersion) -> web.Response:
    headers = {"Content-Type": FHIR_JSON, "ETag": version.etag}
    headers["Last-Modified"] = version.last_modified
    return web.Response(body=version.body, headers=headers)


def base_url(request: web.Request) -> str:
    prefix = BASE_PREFIX if request.raw_path.startswith(BASE_PREFIX + "/") else ""
    return f"{request.scheme}://{request.host}{prefix}"


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


class TokenBucket:
    """Rate limit: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate, self._burst, self._clock = rate, max(1, burst), clock
        self._tokens = float(self._burst)
        self._last = clock()

    def take(self) -> int:
        """0 when the request may pass, else whole seconds until a token is available."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))


class Latency:
    """Log-normal added latency: median `latency_ms`, 99th percentile `latency_p99_ms`."""

    def __init__(self, profile: FhirProfile) -> None:
        median = profile.latency_ms / 1000.0
        p99 = (profile.latency_p99_ms or 2 * profile.latency_ms) / 1000.0
        self._median = median
        self._mu = math.log(median) if median > 0 else 0.0
        self._sigma = max(0.0, math.log(p99 / median)) / 2.3263 if median > 0 else 0.0
        self._rng = random.Random(profile.seed + 1)

    async def wait(self) -> None:
        if self._median > 0:
            await asyncio.sleep(self._rng.lognormvariate(self._mu, self._sigma))


class OAuth:
    """SATUSEHAT-style client-credentials tokens, expiry and the lockout after a failed login."""

    def __init__(self, profile: FhirProfile, clock: Clock) -> None:
        self._profile, self._clock = profile, clock
        self._tokens: dict[str, float] = {}
        self._locked_until: dict[str, float] = {}

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        client_id = str(form.get("client_id", ""))
        now = self._clock()
        locked = self._locked_until.get(client_id, 0.0)
        if now < locked:
            wait = {"Retry-After": str(max(1, math.ceil(locked - now)))}
            return outcome(429, "throttled", "too many token requests", wait)
        grant = request.query.get("grant_type") or form.get("grant_type")
        if grant != "client_credentials":
            return outcome(400, "invalid", "grant_type must be client_credentials")
        p = self._profile
        if client_id != p.client_id or form.get("client_secret") != p.client_secret:
            self._locked_until[client_id] = now + LOGIN_LOCKOUT_S
            return outcome(401, "login", "invalid client credentials")
        return web.json_response(self._issue(now))

    def _issue(self, now: float) -> dict[str, str]:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = now + self._profile.token_lifetime_s
        return {
            "access_token": token,
            "expires_in": str(self._profile.token_lifetime_s),
            "token_type": "BearerToken",
            "issued_at": str(int(time.time() * 1000)),
            "client_id": self._profile.client_id,
            "organization_name": "phonesync sandbox",
            "status": "approved",
        }

    def check(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None:
            return outcome(401, "login", "missing or unknown bearer token", BEARER)
        if self._clock() >= expiry:
            del self._tokens[token.strip()]
            return outcome(401, "login", "access token expired", BEARER)
        return None


def reset_connection(request: web.Request) -> None:
    """Close the socket with an RST instead of an answer (SO_LINGER 0)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def sleep_while_connected(request: web.Request, seconds: float) -> None:
    """Sleep, but stop early once the client has gone (so a server shutdown is not held up)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(min(left, 0.05))


class Gateway:
    """The middleware: faults, latency, rate limit, auth and random 503s before each handler."""

    def __init__(self, store: PatientStore, profile: FhirProfile, clock: Clock) -> None:
        self.store, self.profile = store, profile
        self.oauth = OAuth(profile, clock)
        rate = profile.rate_limit_rps
        self._bucket = TokenBucket(rate, profile.rate_limit_burst, clock) if rate else None
        self._latency = Latency(profile)
        self._errors = random.Random(profile.seed)
        self._auth_checks = {"api-key": self._check_api_key, "oauth2": self.oauth.check}
        self.public: set[object] = set()  # handlers that need no credentials
        self.ungated: set[object] = set()  # handlers outside the gateway's limits (token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(SANDBOX_PREFIX):
            return await handler(request)
        body = await request.read() if request.body_exists else b""
        status = 500
        try:
            response = await self._answer(request, handler)
            if response is None:
                status = 0
                return web.Response()  # the socket is gone: aiohttp drops this quietly
            status = response.status
            return response
        finally:
            record = RequestRecord(request.method, request.raw_path, request.headers, status, body)
            self.store.record(record)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse | None:
        faults = self.store.faults
        fault = faults.take(request.method, request.raw_path) if faults else None
        if fault is not None:
            await sleep_while_connected(request, fault.delay_s)
            if fault.reset:
                reset_connection(request)
                return None
            if fault.status:
                return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        if request.match_info.handler not in self.ungated:
            await self._latency.wait()
            refusal = self._refusal(request, request.match_info.handler)
            if refusal is not None:
                return refusal
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return self._as_outcome(exc)

    def _refusal(self, request: web.Request, handler: object) -> web.Response | None:
        if self._bucket is not None and (wait := self._bucket.take()):
            headers = {"Retry-After": str(wait)}
            return outcome(429, "throttled", "rate limit exceeded", headers)
        if handler not in self.public:
            refusal = self._auth_checks[self.profile.auth](request)
            if refusal is not None:
                return refusal
        if self.profile.error_rate and self._errors.random() < self.profile.error_rate:
            return web.Response(status=503, text="Service Unavailable")
        return None

    def _check_api_key(self, request: web.Request) -> web.Response | None:
        if request.headers.get(self.profile.api_key_header) == self.profile.api_key:
            return None
        return outcome(401, "login", f"missing or wrong {self.profile.api_key_header} header")

    @staticmethod
    def _as_outcome(exc: web.HTTPException) -> web.Response:
        codes = {404: "not-found", 405: "not-supported"}
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return outcome(exc.status, codes.get(exc.status, "processing"), exc.reason, headers)


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
    """Patient: read, vread, history, search by identifier, and the allowed writes; no batch."""
    writes = {"put": "update", "patch": "patch"}
    codes = ["read", "vread", "history-instance", "search-type"]
    codes += [writes[mode] for mode in sorted(profile.write_modes) if mode in writes]
    patient: JsonObject = {"type": "Patient", "interaction": [{"code": code} for code in codes]}
    patient["searchParam"] = [{"name": "identifier", "type": "token"}]
    patient |= {"versioning": "versioned-update", "updateCreate": False, "conditionalUpdate": False}
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": sorted(PATCH_TYPES),
        "rest": [{"mode": "server", "resource": [patient]}],
    }


Build = Callable[[StoredVersion], JsonObject | web.Response]


class PatientApi:
    """The Patient endpoints: search, read, history, vread, update (PUT) and patch."""

    def __init__(self, store: PatientStore, profile: FhirProfile) -> None:
        self.store, self.profile = store, profile
        self._capability = fs.dumps(capability_statement(profile))

    async def metadata(self, request: web.Request) -> web.Response:
        return web.Response(body=self._capability, headers={"Content-Type": FHIR_JSON})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.stats())

    async def refuse(self, request: web.Request) -> web.Response:
        why = "conditional and type-level writes are not supported; write to Patient/{id}"
        return outcome(405, "not-supported", why)

    async def search(self, request: web.Request) -> web.Response:
        token = identifier_param(request.raw_path)
        if isinstance(token, str):
            return outcome(400, "invalid", token)
        base, matches = base_url(request), self.store.find(*token)
        self_link = {
            "relation": "self",
            "url": f"{request.scheme}://{request.host}{request.raw_path}",
        }
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
        pid = request.match_info["id"]
        version = self.store.current(pid)
        return not_found(f"Patient/{pid}") if version is None else version_response(version)

    async def history(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        versions = self.store.versions(pid)
        if not versions:
            return not_found(f"Patient/{pid}")
        url = f"{base_url(request)}/Patient/{pid}"
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
        pid, vid = request.match_info["id"], request.match_info["vid"]
        for version in self.store.versions(pid):
            if version.vid == vid:
                return version_response(version)
        return not_found(f"Patient/{pid}/_history/{vid}")

    async def update(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        resource = await self._write_body(request, pid, "put", PUT_TYPES)
        if isinstance(resource, web.Response):
            return resource
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            return outcome(400, "structure", "the body must be a Patient resource")
        if resource.get("id") != pid:
            return outcome(400, "invalid", f"the body's id must be {pid}")
        return self._commit(request, pid, "PUT", lambda _current: resource)

    async def patch(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        ops = await self._write_body(request, pid, "patch", PATCH_TYPES)
        if isinstance(ops, web.Response):
            return ops
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            return outcome(400, "structure", "the body must be a JSON Patch array of operations")
        return self._commit(request, pid, "PATCH", lambda current: self._patched(current, ops))

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
        if mode not in self.profile.write_modes:
            return outcome(405, "not-supported", f"{mode.upper()} is not allowed on this server")
        if self.store.current(pid) is None:
            return not_found(f"Patient/{pid}")
        content_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if content_type not in types:
            return outcome(415, "not-supported", f"Content-Type must be one of {sorted(types)}")
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    def _commit(self, request: web.Request, pid: str, method: str, build: Build) -> web.Response:
        """Hooks, then If-Match against the current version, then the new version — atomically."""
        self.store.run_before_write(pid)
        with self.store.lock:
            current = self.store.current(pid)
            if current is None:
                return not_found(f"Patient/{pid}")
            if_match = request.headers.get("If-Match")
            if if_match is not None and if_match != current.etag:
                why = f"If-Match {if_match} does not match the current version {current.etag}"
                return outcome(412, "conflict", why)
            result = build(current)
            if isinstance(result, web.Response):
                return result
            version = self.store.write(pid, result, method)
        return version_response(version)


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
    app.router.add_post(TOKEN_PATH, gateway.oauth.token)
    app.router.add_get(SANDBOX_PREFIX + "stats", api.stats)
    gateway.public |= {api.metadata, gateway.oauth.token}
    gateway.ungated.add(gateway.oauth.token)
    return app
