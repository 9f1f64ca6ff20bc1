"""The sandbox FHIR server's data: every version of every Patient, and the test seams around it.

`PatientStore` keeps each Patient as a list of immutable versions (the resource dict, its JSON
bytes serialised once, its opaque versionId) and an index from `(system, value)` identifier tokens
to patient ids, so reads and searches cost a dict lookup. Tests use it directly: seed patients,
edit a record "behind the sync's back" (`modify`, `before_write` hooks), script faults, and inspect
every request exactly as it arrived on the wire.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

JsonObject = dict[str, Any]
BeforeWrite = Callable[[str], None]

FHIR_JSON = "application/fhir+json; charset=utf-8"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED = {"system": V3_OBSERVATION_VALUE, "code": "SUBSETTED"}  # FHIR's mark of a reduced copy


def dumps(payload: object) -> bytes:
    """Compact UTF-8 JSON, the one serialisation every response goes through."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class RequestRecord(NamedTuple):
    """A request as it arrived: the target byte-for-byte, case-insensitive headers, the status
    answered (0 = connection reset), the body, and `at`: the gateway's clock (seconds,
    `time.monotonic()` in a real sandbox) when the answer was handed back."""

    method: str
    raw_path_qs: str
    headers: Mapping[str, str]
    status: int
    body: bytes = b""
    at: float = 0.0


@dataclass(slots=True)
class StoredVersion:
    """One version of a Patient; `resource` is never mutated once stored."""

    vid: str
    resource: JsonObject
    body: bytes
    last_modified: str
    method: str
    reduced: JsonObject | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.vid}"'


@dataclass
class StoreHooks:
    """Callables run inside the server; `before_write(pid)` runs before If-Match is checked."""

    before_write: list[BeforeWrite] = field(default_factory=list)


@dataclass
class Fault:
    """One scripted answer; status 0 means "answer normally" (after `delay_s`)."""

    method: str | None
    path_prefix: str
    status: int
    headers: dict[str, str]
    body: bytes
    reset: bool
    delay_s: float
    remaining: int

    def matches(self, method: str, raw_path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return any(p.startswith(self.path_prefix) for p in _path_forms(raw_path))


def _path_forms(raw_path: str) -> set[str]:
    """The target with and without the national base, raw and percent-decoded."""
    forms = {raw_path}
    if raw_path.startswith("/fhir-r4/v1/"):
        forms.add(raw_path[len("/fhir-r4/v1") :])
    return forms | {unquote(form) for form in forms}


_DEFAULT_CONTENT_TYPES: dict[type, str] = {dict: FHIR_JSON, list: FHIR_JSON, str: "text/plain"}


class FaultScript:
    """Scripted responses, consumed first-pushed first by the requests they match."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def push(
        self,
        *,
        method: str | None = None,
        path_prefix: str = "",
        status: int,
        headers: dict[str, str] | None = None,
        body: str | dict[str, Any] | None = None,
        content_type: str | None = None,
        times: int = 1,
        reset: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` matching requests with this instead of the real response."""
        all_headers = dict(headers or {})
        kind = _DEFAULT_CONTENT_TYPES.get(type(body))
        if content_type or kind:
            all_headers["Content-Type"] = content_type or str(kind)
        raw = body.encode() if isinstance(body, str) else dumps(body) if body is not None else b""
        fault = Fault(method, path_prefix, status, all_headers, raw, reset, delay_s, times)
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, raw_path: str) -> Fault | None:
        """The first fault matching this request, counted as used; None when nothing matches."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, raw_path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        return len(self._faults)


def _by_method_and_status(counts: Counter[tuple[str, int]]) -> JsonObject:
    by_method: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for (method, status), count in sorted(counts.items()):
        by_method[method] += count
        by_status[str(status)] += count
    return {"total": by_method.total(), "by_method": by_method, "by_status": by_status}


def _identifier_tokens(resource: JsonObject | None) -> set[tuple[str, str]]:
    idents = [i for i in (resource or {}).get("identifier") or () if isinstance(i, dict)]
    return {(i["system"], i["value"]) for i in idents if {"system", "value"} <= i.keys()}


def _name_text(name: JsonObject) -> str:
    if isinstance(name.get("text"), str):
        return str(name["text"])
    parts = [*name.get("prefix", ()), *name.get("given", ()), name.get("family", "")]
    return " ".join(str(part) for part in parts if part)


def reduce_patient(resource: JsonObject) -> JsonObject:
    """A search entry like the national server's: id, identifier, name.text and meta only."""
    names = [{"text": _name_text(n)} for n in resource.get("name") or () if isinstance(n, dict)]
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", ()), SUBSETTED]
    reduced: JsonObject = {"resourceType": "Patient", "id": resource["id"]}
    if "identifier" in resource:
        reduced["identifier"] = resource["identifier"]
    if names:
        reduced["name"] = names
    reduced["meta"] = meta
    return reduced


class PatientStore:
    """Every version of every Patient, an identifier index, and what the server saw."""

    def __init__(self, *, seed: int = 0, now: Callable[[], datetime] | None = None) -> None:
        self._versions: dict[str, list[StoredVersion]] = {}
        self._index: dict[tuple[str, str], dict[str, None]] = {}
        self._rng = random.Random(seed)
        self._now = now or (lambda: datetime.now(UTC))
        self._counts: Counter[tuple[str, int]] = Counter()
        self._entry_counts: Counter[tuple[str, int]] = Counter()
        self.lock = threading.RLock()
        self.writes = 0
        self.versions_total = 0
        self.requests: list[RequestRecord] = []
        self.batch_entries: list[RequestRecord] = []  # each entry of a batch, as its own request
        self.faults = FaultScript()
        self.hooks = StoreHooks()

    @property
    def before_write(self) -> list[BeforeWrite]:
        """Shortcut for `hooks.before_write` (the same list)."""
        return self.hooks.before_write

    # -- the Python API tests use -------------------------------------------------------------

    def add(self, resource: JsonObject, *, version_id: str | None = None) -> JsonObject:
        """Store a new Patient (needs "id"); assigns meta.versionId unless `version_id` is given."""
        copy = json.loads(dumps(resource))
        pid = copy.get("id")
        if not isinstance(pid, str) or not pid:
            raise ValueError("a Patient needs a non-empty string id")
        if copy.setdefault("resourceType", "Patient") != "Patient":
            raise ValueError(f"Patient/{pid}: resourceType must be Patient")
        with self.lock:
            if pid in self._versions:
                raise ValueError(f"Patient/{pid} already exists")
            version = self._commit(pid, copy, "POST", version_id)
        return json.loads(version.body)  # type: ignore[no-any-return]  # json.loads is untyped

    def get(self, pid: str) -> JsonObject | None:
        """The current version (a copy), or None."""
        version = self.current(pid)
        return None if version is None else json.loads(version.body)

    def history(self, pid: str) -> list[JsonObject]:
        """Every version, oldest first (copies)."""
        return [json.loads(v.body) for v in self.versions(pid)]

    def search(self, system: str, value: str) -> list[JsonObject]:
        """Current full resources with an identifier of exactly this system and value."""
        return [json.loads(v.body) for v in self.find(system, value)]

    def modify(
        self, pid: str, fn: Callable[[JsonObject], None], *, version_id: str | None = None
    ) -> JsonObject:
        """Someone else edits the record: `fn` changes a copy, which becomes a new version."""
        with self.lock:
            current = self.current(pid)
            if current is None:
                raise KeyError(pid)
            copy = json.loads(current.body)
            fn(copy)
            version = self._commit(pid, copy, "PUT", version_id)
        return json.loads(version.body)  # type: ignore[no-any-return]  # json.loads is untyped

    def version_count(self, pid: str) -> int:
        return len(self._versions.get(pid, ()))

    def ids(self) -> list[str]:
        return list(self._versions)

    def __len__(self) -> int:
        return len(self._versions)

    # -- what the server uses -----------------------------------------------------------------

    def current(self, pid: str) -> StoredVersion | None:
        versions = self._versions.get(pid)
        return versions[-1] if versions else None

    def versions(self, pid: str) -> list[StoredVersion]:
        return list(self._versions.get(pid, ()))

    def find(self, system: str, value: str) -> list[StoredVersion]:
        pids = self._index.get((system, value), {})
        return [self._versions[pid][-1] for pid in pids]

    def reduced(self, version: StoredVersion) -> JsonObject:
        if version.reduced is None:
            version.reduced = reduce_patient(version.resource)
        return version.reduced

    def write(self, pid: str, resource: JsonObject, method: str) -> StoredVersion:
        """A successful PUT/PATCH: `resource` (the store owns it now) is the new version."""
        with self.lock:
            version = self._commit(pid, resource, method, None)
            self.writes += 1
        return version

    def run_before_write(self, pid: str) -> None:
        for hook in list(self.hooks.before_write):  # a hook may remove itself
            hook(pid)

    def record(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self._counts[(record.method, record.status)] += 1

    def record_entry(self, record: RequestRecord) -> None:
        """One entry of a batch Bundle, recorded as the single request it stands for."""
        self.batch_entries.append(record)
        self._entry_counts[(record.method, record.status)] += 1

    def stats(self) -> JsonObject:
        """Request and batch entry counts by method and status, writes, patients and versions."""
        requests = _by_method_and_status(self._counts)
        entries = _by_method_and_status(self._entry_counts)
        counts = {"writes": self.writes, "patients": len(self), "versions": self.versions_total}
        return {"requests": requests, "batch_entries": entries} | counts

    # -- internals ----------------------------------------------------------------------------

    def _new_vid(self, number: int) -> str:
        """Opaque like the national server's ("djEtYWJjZGVm" = base64 "v1-abcdef"), URL-safe."""
        raw = f"v{number}-{self._rng.getrandbits(24):06x}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _commit(
        self, pid: str, resource: JsonObject, method: str, vid: str | None
    ) -> StoredVersion:
        history = self._versions.setdefault(pid, [])
        now = self._now().astimezone(UTC)
        meta = resource.get("meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta["versionId"] = vid or self._new_vid(len(history) + 1)
        meta["lastUpdated"] = now.isoformat(timespec="milliseconds")
        resource["meta"] = meta
        version = StoredVersion(
            meta["versionId"], resource, dumps(resource), format_datetime(now, usegmt=True), method
        )
        self._reindex(pid, history[-1].resource if history else None, resource)
        history.append(version)
        self.versions_total += 1
        return version

    def _reindex(self, pid: str, old: JsonObject | None, new: JsonObject) -> None:
        before, after = _identifier_tokens(old), _identifier_tokens(new)
        for token in before - after:
            self._index[token].pop(pid, None)
        for token in after - before:
            self._index.setdefault(token, {})[pid] = None


_MAX_TYPE_SHOWN = 40  # a resourceType is named in an error only when it looks like one


def _patient_from_line(line: str, where: str) -> JsonObject:
    try:
        resource = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        named = isinstance(kind, str) and kind.isalpha() and len(kind) <= _MAX_TYPE_SHOWN
        found = f" (resourceType {kind})" if named else ""
        raise ValueError(f"{where}: expected a FHIR Patient object{found}")
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        raise ValueError(f"{where}: the Patient has no id")
    _check_identifiers(resource.get("identifier"), where)
    return resource


_JSON_KINDS = {bool: "true/false", int: "number", float: "number", list: "array", dict: "object"}


def _check_identifiers(identifiers: object, where: str) -> None:
    """FHIR `identifier.value` is a string: a NIK written as a JSON number is refused."""
    if identifiers is None:
        return
    if not isinstance(identifiers, list):
        raise ValueError(f"{where}: Patient.identifier must be a list")
    for index, identifier in enumerate(identifiers):
        if not isinstance(identifier, dict):
            raise ValueError(f"{where}: identifier[{index}] is not an object")
        value = identifier.get("value")
        if value is not None and not isinstance(value, str):
            kind = _JSON_KINDS.get(type(value), type(value).__name__)
            raise ValueError(
                f"{where}: identifier[{index}].value is a JSON {kind}, not a string "
                '(FHIR identifier values are strings: write the NIK in quotes, "3174…")'
            )


def load_patients_ndjson(path: Path) -> list[JsonObject]:
    """One FHIR Patient per line (blank lines skipped); ValueError naming the line otherwise."""
    patients: list[JsonObject] = []
    seen: set[str] = set()
    try:
        with path.open(encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                patient = _patient_from_line(line, where)
                if patient["id"] in seen:
                    raise ValueError(f"{where}: duplicate Patient id {patient['id']}")
                seen.add(patient["id"])
                patients.append(patient)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return patients


# -- JSON Patch (RFC 6902) on a Patient dict -------------------------------------------------


class PatchError(ValueError):
    """A patch that cannot be applied; `status` is 400 (malformed) or 422 (does not fit)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _split(path: object) -> tuple[list[str], str]:
    if not isinstance(path, str) or not path.startswith("/"):
        raise PatchError(400, f"invalid JSON pointer {path!r}")
    *parents, last = (t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/"))
    return parents, last


def _index(seq: list[Any], token: str, *, end_ok: bool = False) -> int:
    if end_ok and token == "-":
        return len(seq)
    if not token.isdigit() or int(token) > len(seq) - (0 if end_ok else 1):
        raise PatchError(422, f"no array element {token!r}")
    return int(token)


def _child(node: Any, token: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, token)]
    if isinstance(node, dict) and token in node:
        return node[token]
    raise PatchError(422, f"no element {token!r}")


def _locate(doc: JsonObject, path: object) -> tuple[Any, str]:
    """The container holding the pointer's last token, and that token."""
    parents, last = _split(path)
    node: Any = doc
    for token in parents:
        node = _child(node, token)
    if not isinstance(node, list | dict):
        raise PatchError(422, f"{path} does not point into an object or array")
    return node, last


def _add(doc: JsonObject, path: object, value: Any) -> None:
    node, last = _locate(doc, path)
    if isinstance(node, list):
        node.insert(_index(node, last, end_ok=True), value)
    else:
        node[last] = value


def _remove(doc: JsonObject, path: object) -> Any:
    node, last = _locate(doc, path)
    value = _child(node, last)
    if isinstance(node, list):
        del node[int(last)]
    else:
        del node[last]
    return value


def _replace(doc: JsonObject, path: object, value: Any) -> None:
    node, last = _locate(doc, path)
    _child(node, last)  # must exist
    node[int(last) if isinstance(node, list) else last] = value


_OPS: dict[str, Callable[[JsonObject, JsonObject], object]] = {
    "add": lambda doc, op: _add(doc, op.get("path"), op["value"]),
    "remove": lambda doc, op: _remove(doc, op.get("path")),
    "replace": lambda doc, op: _replace(doc, op.get("path"), op["value"]),
    "move": lambda doc, op: _add(doc, op.get("path"), _remove(doc, op.get("from"))),
}


def apply_patch(doc: JsonObject, ops: list[JsonObject]) -> None:
    """Apply JSON Patch operations to `doc` in place (paths like /telecom, /telecom/0, /name)."""
    for op in ops:
        apply = _OPS.get(str(op.get("op")))
        if apply is None:
            raise PatchError(400, f"unknown patch operation {op.get('op')!r}")
        try:
            apply(doc, op)
        except KeyError:
            raise PatchError(400, f"patch operation {op.get('op')} needs a value") from None
