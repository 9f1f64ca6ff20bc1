"""Coalesce concurrent single FHIR requests into `batch` Bundles, when the server supports them.

Rows keep asking for single requests (`GET Patient?identifier=…`, `GET Patient/{id}`,
`PUT Patient/{id}` with If-Match); `Bundler.exchange` parks each one for a moment, sends up to
`size` of them as ONE `POST {base}` of a `batch` Bundle, and hands every request back its own
entry of the `batch-response` as if it had been a single exchange: status, ETag and body. The
retry loop in `http.py` then classifies each entry exactly like a single answer (a 412 entry is
a version conflict of that row only; a 404 entry is that row's), and a retry goes back through
here on its own.

When the bundle itself fails (429, 5xx, a network error, an answer that is not a matching
`batch-response`), every request in it gets that outcome and retries on its own: a write in a
bundle whose answer was lost is retried with the same If-Match, so if it had landed the retry
gets a 412, re-reads, and finds the number already there — the same safety as a single PUT, and
the same outcome: `updated`, this run's write (`updater.UPDATED_ANSWER_LOST`).

Only the server's own word turns this on: the CapabilityStatement must list the `batch`
interaction (`supports_batch`), and `PHONESYNC_BATCH_SIZE` must be above 1. National PATCH
writes never go in a bundle (a JSON Patch in a batch needs a Binary wrapper the national API
does not document).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from phonesync.fhir import jsonio

#: What one exchange gives back: status (None = network error), headers, body.
Exchange = tuple[int | None, Mapping[str, str], bytes]
#: Sends one bundle (the JSON body) and returns the raw exchange.
PostBundle = Callable[[bytes], Awaitable[Exchange]]

BATCHABLE_METHODS = frozenset({"GET", "PUT"})


class ParsedBody(bytes):
    """An entry's body, already parsed from the bundle (no second JSON round trip)."""

    json: Any

    def __new__(cls, raw: bytes, parsed: Any) -> ParsedBody:
        body = super().__new__(cls, raw)
        body.json = parsed
        return body


def supports_batch(capability: Any) -> bool:
    """Whether a CapabilityStatement lists the system-level `batch` interaction."""
    if not isinstance(capability, dict):
        return False
    for rest in capability.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        for interaction in rest.get("interaction") or []:
            if isinstance(interaction, dict) and interaction.get("code") == "batch":
                return True
    return False


@dataclass(slots=True)
class _Parked:
    entry: dict[str, Any]
    answer: asyncio.Future[Exchange]


class Bundler:
    """Collects requests for up to `linger_s` (or until `size` are waiting) and sends a bundle."""

    def __init__(self, post: PostBundle, *, size: int, linger_s: float = 0.002) -> None:
        if size < 2:
            raise ValueError("a bundle needs room for at least 2 requests")
        self._post = post
        self._size = size
        self._linger_s = linger_s
        self._parked: list[_Parked] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.bundles = 0
        self.entries = 0

    async def exchange(
        self, method: str, relative_url: str, payload: bytes | None, headers: Mapping[str, str]
    ) -> Exchange:
        """One request's answer, sent inside the next bundle."""
        entry: dict[str, Any] = {"request": {"method": method, "url": relative_url}}
        if_match = headers.get("If-Match")
        if if_match:
            entry["request"]["ifMatch"] = if_match
        if payload is not None:
            entry["resource"] = jsonio.loads(payload)
        loop = asyncio.get_running_loop()
        parked = _Parked(entry, loop.create_future())
        self._parked.append(parked)
        if len(self._parked) >= self._size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger_s, self._flush)
        return await parked.answer

    async def aclose(self) -> None:
        """Send what is parked and wait for every bundle in flight."""
        self._flush()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._parked:
            group, self._parked = self._parked[: self._size], self._parked[self._size :]
            group = [p for p in group if not p.answer.done()]  # cancelled while parked
            if group:
                task = asyncio.get_running_loop().create_task(self._send(group))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, group: list[_Parked]) -> None:
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [p.entry for p in group]}
        self.bundles += 1
        self.entries += len(group)
        try:
            status, headers, body = await self._post(jsonio.dumps(bundle).encode())
            answers = split_response(status, headers, body, len(group))
        except BaseException as exc:  # the rows must hear about it, whatever it was
            for parked in group:
                if not parked.answer.done():
                    parked.answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for parked, answer in zip(group, answers, strict=True):
            if not parked.answer.done():
                parked.answer.set_result(answer)


def split_response(
    status: int | None, headers: Mapping[str, str], body: bytes, count: int
) -> list[Exchange]:
    """Every request's own exchange out of the bundle's answer (the bundle's, if it failed)."""
    if status != 200:
        return [(status, headers, body)] * count
    entries = _response_entries(body)
    if entries is None or len(entries) != count:
        unreadable = (502, {"Content-Type": "text/plain"}, b"unreadable batch-response")
        return [unreadable] * count
    return [_entry_exchange(entry) for entry in entries]


def _response_entries(body: bytes) -> list[Any] | None:
    with contextlib.suppress(ValueError):
        parsed = jsonio.loads(body)
        if (
            isinstance(parsed, dict)
            and parsed.get("resourceType") == "Bundle"
            and parsed.get("type") == "batch-response"
            and isinstance(parsed.get("entry"), list)
        ):
            return list(parsed["entry"])
    return None


def _entry_exchange(entry: Any) -> Exchange:
    """(status, headers, body) of one `batch-response` entry, like a single answer."""
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(response, dict):
        return 502, {"Content-Type": "text/plain"}, b"batch-response entry without response"
    status = _status_code(response.get("status"))
    if status is None:
        return 502, {"Content-Type": "text/plain"}, b"batch-response entry without a status"
    headers = {"Content-Type": "application/fhir+json"}
    if isinstance(response.get("etag"), str):
        headers["ETag"] = response["etag"]
    if 200 <= status < 300:
        resource = entry.get("resource")
        return status, headers, ParsedBody(b"{}" if resource is not None else b"", resource)
    outcome = response.get("outcome")
    body = jsonio.dumps(outcome).encode() if isinstance(outcome, dict) else b""
    return status, headers, body


def _status_code(value: Any) -> int | None:
    """`"412 Precondition Failed"` → 412."""
    if not isinstance(value, str):
        return None
    head = value.strip().split(" ", 1)[0]
    return int(head) if head.isdigit() and len(head) == 3 else None
