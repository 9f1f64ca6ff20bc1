"""FHIR `batch` Bundles for the sandbox FHIR server: parsing, routing and answering entries.

`POST` to the base with `{"resourceType": "Bundle", "type": "batch", "entry": [...]}`; each entry
is `{"request": {"method", "url", "ifMatch"?}, "resource"?}` with a url relative to the base
(`Patient?identifier=…`, `Patient/{id}`). `fhir_server.PatientApi.batch` runs every entry through
the same code as the single request and turns each answer into a `batch-response` entry here
(`response_entry`). Off unless `FhirProfile.batch`; docs/sandbox.md describes the contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from phonesync.sandbox.fhir_store import JsonObject, RequestRecord, dumps

ENTRY_METHODS = frozenset({"GET", "PUT"})
_INVALID = object()  # the body of the POST is not JSON
BUNDLE_KEY = web.RequestKey("phonesync_batch_bundle", object)  # parsed once per request
_DROPPED_HEADERS = ("Content-Length", "If-Match", "Transfer-Encoding")


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One entry's request: method (upper case), url relative to the base, If-Match, resource."""

    method: str
    url: str
    if_match: str | None
    resource: Any

    @property
    def path(self) -> list[str]:
        """The url's path segments, percent-decoded (`Patient/P1` → ["Patient", "P1"])."""
        path = self.url.partition("?")[0].removeprefix("/")
        return [unquote(part) for part in path.split("/")]


async def load_bundle(request: web.Request) -> Any:
    """The POST body as JSON (parsed once; the gateway's latency and the handler share it)."""
    if BUNDLE_KEY not in request:
        try:
            request[BUNDLE_KEY] = json.loads(await request.read())
        except ValueError:
            request[BUNDLE_KEY] = _INVALID
    return request[BUNDLE_KEY]


def bundle_entries(bundle: Any) -> list[Any] | str:
    """The entries of a batch Bundle, or why the body is not one (answered 400)."""
    if bundle is _INVALID:
        return "the body is not valid JSON"
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return "the body must be a Bundle resource"
    if bundle.get("type") != "batch":
        return f"only Bundle type 'batch' is supported, not {bundle.get('type')!r}"
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        return "Bundle.entry must be a list"
    return entries


async def batch_cost(request: web.Request) -> tuple[bool, float]:
    """For the gateway: a write when any entry is a PUT; 1 ms of latency per entry."""
    entries = bundle_entries(await load_bundle(request))
    if isinstance(entries, str):
        return False, 0.0
    methods = (entry_method(entry) for entry in entries)
    return any(method == "PUT" for method in methods), len(entries) / 1000.0


def entry_method(entry: Any) -> str:
    request = entry.get("request") if isinstance(entry, dict) else None
    method = request.get("method") if isinstance(request, dict) else None
    return method.upper() if isinstance(method, str) else ""


def parse_entry(entry: Any) -> BatchEntry | str:
    """An entry's request, or why it cannot be processed (that entry is answered 400)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        return "each entry needs a request object"
    request: JsonObject = entry["request"]
    method, url, if_match = request.get("method"), request.get("url"), request.get("ifMatch")
    if not isinstance(method, str) or not method:
        return "entry.request.method must be a string"
    if not isinstance(url, str) or not url:
        return "entry.request.url must be a non-empty relative url"
    if if_match is not None and not isinstance(if_match, str):
        return "entry.request.ifMatch must be a string"
    return BatchEntry(method.upper(), url, if_match, entry.get("resource"))


def response_entry(response: web.Response) -> JsonObject:
    """A single request's answer as a `batch-response` entry: status, etag, lastModified, body."""
    answer: JsonObject = {"status": f"{response.status} {response.reason}"}
    body = response.body
    payload = json.loads(body) if isinstance(body, bytes) and body else None
    etag = response.headers.get("ETag")
    if etag is not None:
        answer["etag"] = etag
        updated = (payload or {}).get("meta", {}).get("lastUpdated")
        if updated is not None:
            answer["lastModified"] = updated  # a FHIR instant, as Bundle.entry.response wants
    if response.status >= 400:
        if payload is not None:
            answer["outcome"] = payload
        return {"response": answer}
    return {"response": answer} | ({"resource": payload} if payload is not None else {})


def entry_record(
    request: web.Request, target: str, entry: BatchEntry | None, status: int
) -> RequestRecord:
    """The entry as the single request it stands for: method, target, headers, status, body."""
    headers = CIMultiDict(request.headers)
    for name in _DROPPED_HEADERS:
        headers.popall(name, None)
    if entry is not None and entry.if_match is not None:
        headers["If-Match"] = entry.if_match
    method = entry.method if entry is not None else ""
    body = b""
    if entry is not None and entry.method == "PUT" and entry.resource is not None:
        body = dumps(entry.resource)
    return RequestRecord(method, target, headers, status, body)
