"""One row against the FHIR server: search → read → decide → write (If-Match) → re-read on conflict.

0. A patient id cached in the ledger for this NIK (`WorkItem.patient_id`, see `patient_cache.py`)
   replaces the search when `GET Patient/{id}` still carries exactly our NIK identifier; a
   missing resource or another identifier falls back to the search.
1. Search `Patient?identifier={nik_system}|{nik}`. Only entries that are Patients AND carry exactly
   our system and value count (a newborn registered under the mother's NIK has `…/nik-ibu`; an
   OperationOutcome entry is not a patient). None → `patient_not_found`; several (or a paged
   result) → `ambiguous_patient`; nothing is written in either case.
2. Always `GET Patient/{id}`: search entries are reduced, and a PUT of one would erase the record.
3. Identity guard (`identity_guard`): a record marked deceased, inactive (`active: false`) or
   merged away (`link` replaced-by, never followed), or birthDate/gender contradicting the NIK →
   `identity_mismatch` (`enforce`), a warning (`warn`) or nothing (`off`).
4. `apply_mobile`: None → `unchanged` ("the record already has this number…"), no write. This is
   also how a row written by a killed run reads on the next run (an earlier run's change).
4a. The record's own newer-wins (`later_change`, whatever the ledger says): a write is needed but
   a phone entry's period has a date after this run's business date — a newer update already
   reached the record (the number it replaced kept `period.end` = that run's date) →
   `superseded`, not written. A date there that cannot be read, or that may be after it (a year
   alone, a time without a zone) → `failed`, not written: a person must look at the record. Like
   the checks above it runs on every read (a re-read after a conflict too), in both write modes
   and in a dry run, before any PUT/PATCH is built.
5. Write (`PUT` the whole resource or national `PATCH`) with `If-Match: W/"<versionId>"`. A 409/412
   means someone changed the record: re-read, re-apply on top, try again; after `max_conflicts`
   conflicts → `conflict`. A re-read that already shows the number writes nothing more; which
   case it was decides the outcome. The conflicting write had an earlier attempt whose answer was
   lost (network, 408, 5xx: our write had landed, the retry's If-Match no longer matched) →
   `updated`, this run's own change (`UPDATED_ANSWER_LOST`; version and number before are those
   of the read that write was built on). Not so (another writer set the number since our read) →
   `unchanged`. A row a killed run had written reads as step 4 on the next run: `unchanged`, an
   earlier run's change. A record without a version is never written.

Server trouble ends the row `failed` with a reason carrying status and masked diagnostics;
`FhirUnavailable` (credentials refused, server gone) propagates and aborts the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

from phonesync.errors import RejectedError, RetryableError
from phonesync.fhir.http import FhirHttp, FhirResponse, RequestStats, VersionConflict
from phonesync.fhir.identity import guard_reason
from phonesync.fhir.telecom import (
    LaterChange,
    active_mobiles,
    apply_mobile,
    later_change,
    patch_gaps,
    patch_ops,
)
from phonesync.normalise.phone import canonical_phone
from phonesync.outcomes import Outcome, RowResult
from phonesync.plan import WorkItem
from phonesync.settings import Settings

log = logging.getLogger(__name__)

DRY_RUN_REASON = "dry run: would update"
SUBSETTED_REASON = (
    "GET Patient answered an incomplete record (meta.tag SUBSETTED): writing it back would "
    "erase the fields left out, so nothing was written"
)
NIK_NOT_ON_READ_REASON = (
    "the Patient found by this NIK does not carry the NIK when read in full (the server's "
    "search and record disagree): nothing written; check the record on the server"
)
_SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
#: Reasons of `unchanged` (nothing to do): what the record showed, never a NIK, number or id.
UNCHANGED_ON_RECORD = "the record already has this number as its active mobile"
#: The reason of `updated` when this run's write landed but its answer was lost (no answer, a
#: 408 or a 5xx): the retry's If-Match no longer matched, and the re-read shows this number.
UPDATED_ANSWER_LOST = (
    "written by this run, its answer was lost (no answer, 408 or 5xx): "
    "the re-read after the retry's version conflict shows the write landed"
)
UNCHANGED_AFTER_CONFLICT = (
    "the record was changed since we read it (version conflict) "
    "and the re-read already shows this number"
)
_CONTENT_TYPES = {"put": "application/fhir+json", "patch": "application/json"}
_MAX_IDS_SHOWN = 5
#: Answers after which a write may have landed although we never saw its success.
_MAY_HAVE_LANDED = frozenset({"network", "408", "500", "502", "503", "504"})
#: Outcomes worth a log line of their own (server trouble); every other one is logged at DEBUG.
_LOGGED_OUTCOMES = frozenset({Outcome.FAILED, Outcome.CONFLICT})


class _Stop(Exception):
    """The row ends here with this outcome (internal control flow, never escapes `update`)."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass(slots=True)
class _Row:
    """What is known about one row while it is being applied."""

    item: WorkItem
    stats: RequestStats = field(default_factory=RequestStats)
    patient_id: str | None = None
    version_before: str | None = None
    version_after: str | None = None
    old_phone: str | None = None


@dataclass(frozen=True, slots=True)
class _Read:
    patient: dict[str, Any]
    version: str | None
    if_match: str | None


class Updater:
    """Applies `WorkItem`s to the FHIR server, one row per `update()` (safe to run concurrently)."""

    def __init__(self, http: FhirHttp, settings: Settings, business_date: date) -> None:
        self._http = http
        self._settings = settings
        self._date = business_date
        self._zone = settings.zone

    async def update(self, item: WorkItem, *, dry_run: bool = False) -> RowResult:
        """Apply one row; every outcome is returned, only `FhirUnavailable` is raised."""
        row = _Row(item)
        try:
            outcome, reason = await self._apply(row, dry_run=dry_run)
        except _Stop as stop:
            outcome, reason = stop.outcome, stop.reason
        except (RetryableError, RejectedError) as exc:
            outcome, reason = Outcome.FAILED, str(exc)
        if reason:
            # Row outcomes are in the ledger and the report; the log only carries trouble.
            level = logging.INFO if outcome in _LOGGED_OUTCOMES else logging.DEBUG
            log.log(level, "row %d: %s (%s)", item.row, outcome, reason)
        return RowResult(
            row=item.row,
            outcome=outcome,
            reason=reason,
            patient_id=row.patient_id,
            version_before=row.version_before,
            version_after=row.version_after,
            attempts=row.stats.total,
            old_phone=row.old_phone,
            new_phone=item.phone,
        )

    async def _apply(self, row: _Row, *, dry_run: bool) -> tuple[Outcome, str | None]:
        read = await self._cached(row)
        pid = row.patient_id = row.item.patient_id if read else await self._find(row)
        assert pid is not None  # noqa: S101 - the cached read or _find set it
        conflicts = 0
        unchanged = UNCHANGED_ON_RECORD
        # The row as it stood before a write of ours whose answer was lost (None: no such write).
        lost_write: tuple[str | None, str | None] | None = None
        while True:
            read = read or await self._read(row, pid)
            updated = self._decide(row, read)
            if updated is None:
                row.version_after = read.version
                if lost_write is not None:
                    # Our own write landed: this run's update, counted as such.
                    row.version_before, row.old_phone = lost_write
                    return Outcome.UPDATED, UPDATED_ANSWER_LOST
                return Outcome.UNCHANGED, unchanged
            if read.if_match is None:
                raise _Stop(Outcome.FAILED, "Patient has no versionId/ETag: refusing to write")
            if self._settings.write_mode == "patch":
                _check_patchable(read.patient)  # before a dry run stops: its preview must agree
            if dry_run:
                return Outcome.UPDATED, DRY_RUN_REASON
            answers_before = dict(row.stats.by_status)
            try:
                row.version_after = await self._write(
                    row, pid, read.patient, updated, read.if_match
                )
            except VersionConflict as exc:
                conflicts += 1
                lost = _answer_lost(answers_before, row.stats.by_status)
                lost_write = (row.version_before, row.old_phone) if lost else None
                unchanged = UNCHANGED_AFTER_CONFLICT
                if conflicts >= self._settings.max_conflicts:
                    raise _Stop(
                        Outcome.CONFLICT,
                        f"version conflict on {conflicts} writes in a row "
                        f"(last: {exc.status}); the record kept changing",
                    ) from None
                log.info("row %d: %s, re-reading Patient %s", row.item.row, exc, pid)
                read = None
                continue
            return Outcome.UPDATED, None

    async def _cached(self, row: _Row) -> _Read | None:
        """The Patient of the cached id if it still carries exactly this NIK, else None."""
        pid = row.item.patient_id
        if pid is None:
            return None
        try:
            read = await self._read(row, pid)
        except RejectedError as exc:
            if exc.status not in (404, 410):
                raise
            read = None
        except _Stop:  # not a Patient, or another id: search as if nothing were cached
            read = None
        system, nik = self._settings.nik_system, row.item.nik.value
        if read is None or not _matching_ids([{"resource": read.patient}], system, nik):
            log.info(
                "row %d: cached Patient %s does not carry this NIK: searching", row.item.row, pid
            )
            row.version_before = None
            return None
        return read

    async def _find(self, row: _Row) -> str:
        system, nik = self._settings.nik_system, row.item.nik.value
        resp = await self._http.request(
            "GET",
            "Patient",
            params={"identifier": f"{system}|{nik}"},
            label="GET search",
            row_stats=row.stats,
        )
        bundle = resp.json
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise _Stop(Outcome.FAILED, "GET search: the answer is not a Bundle")
        entries = bundle.get("entry")
        entries = entries if isinstance(entries, list) else []
        ids = list(dict.fromkeys(_matching_ids(entries, system, nik)))
        return _single(ids, ignored=len(entries) - len(ids), paged=_has_next(bundle))

    async def _read(self, row: _Row, pid: str) -> _Read:
        resp = await self._http.request(
            "GET", f"Patient/{quote(pid, safe='')}", label="GET Patient", row_stats=row.stats
        )
        patient = resp.json
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            raise _Stop(Outcome.FAILED, "GET Patient: the answer is not a Patient")
        if patient.get("id") != pid:
            raise _Stop(Outcome.FAILED, f"GET Patient/{pid} answered another Patient id")
        version = _version_id(patient)
        if_match = f'W/"{version}"' if version is not None else resp.etag
        row.version_before = version if version is not None else _etag_version(resp.etag)
        return _Read(patient, row.version_before, if_match)

    def _decide(self, row: _Row, read: _Read) -> dict[str, Any] | None:
        if _subsetted(read.patient):
            raise _Stop(Outcome.FAILED, SUBSETTED_REASON)
        system, nik = self._settings.nik_system, row.item.nik.value
        if not _matching_ids([{"resource": read.patient}], system, nik):
            # Found by this NIK, read without it (a stale search index, a NIK corrected in
            # between): whose record it is now is not ours to guess. Checked on every read,
            # whatever `identity_guard` says.
            raise _Stop(Outcome.IDENTITY_MISMATCH, NIK_NOT_ON_READ_REASON)
        self._guard(row, read.patient)
        current = active_mobiles(read.patient, self._date)
        if current:
            row.old_phone = canonical_phone(current[0]) or current[0]
        try:
            updated = apply_mobile(
                read.patient,
                row.item.phone,
                old_number=self._settings.old_number,
                business_date=self._date,
                since=row.item.moment.astimezone(self._zone).date(),
            )
        except ValueError as exc:
            raise _Stop(Outcome.FAILED, str(exc)) from None
        if updated is not None:
            # Only a write can undo a newer number: a record that already shows this number
            # stays `unchanged` whatever its history says.
            _refuse_later_change(later_change(read.patient, self._date, self._zone), self._date)
        return updated

    def _guard(self, row: _Row, patient: dict[str, Any]) -> None:
        mode = self._settings.identity_guard
        reason = guard_reason(patient, row.item.nik) if mode != "off" else None
        if reason is None:
            return
        if mode == "enforce":
            raise _Stop(Outcome.IDENTITY_MISMATCH, reason)
        log.warning(
            "row %d, Patient %s: %s (identity_guard=warn: writing anyway)",
            row.item.row,
            row.patient_id,
            reason,
        )

    async def _write(
        self, row: _Row, pid: str, current: dict[str, Any], updated: dict[str, Any], if_match: str
    ) -> str | None:
        mode = self._settings.write_mode
        body = updated if mode == "put" else patch_ops(current, updated)
        resp = await self._http.request(
            mode.upper(),
            f"Patient/{quote(pid, safe='')}",
            json_body=body,
            headers={"If-Match": if_match, "Content-Type": _CONTENT_TYPES[mode]},
            label=mode.upper(),
            row_stats=row.stats,
        )
        return _written_version(resp)


def newer_on_record_reason(change: LaterChange, business_date: date) -> str:
    """The reason of a row whose record already carries a newer change (`superseded`)."""
    return (
        f"the record's numbers changed {change.when}, after this run's business date "
        f"{business_date.isoformat()}: a newer update is already applied (not written)"
    )


def unsure_on_record_reason(change: LaterChange, business_date: date) -> str:
    """The reason of a row whose record may carry a newer change: nothing tells (`failed`)."""
    return (
        f"cannot tell whether the record's numbers changed after this run's business date "
        f"{business_date.isoformat()}: {change.detail}; not written, as a newer update may "
        "already be applied: correct that entry on the server, then retry"
    )


def _refuse_later_change(change: LaterChange | None, business_date: date) -> None:
    """The record's own newer-wins: never write over a change dated after the business date."""
    if change is None:
        return
    if change.certain:
        raise _Stop(Outcome.SUPERSEDED, newer_on_record_reason(change, business_date))
    raise _Stop(Outcome.FAILED, unsure_on_record_reason(change, business_date))


def _check_patchable(current: dict[str, Any]) -> None:
    """A PATCH the national server can only refuse is not sent (`patch_gaps`)."""
    missing = patch_gaps(current)
    if missing:
        raise _Stop(
            Outcome.FAILED,
            f"the record has no {', no '.join(missing)}: the national PATCH can only replace "
            "existing elements and must carry name, birthDate and gender, so it was not sent; "
            "PHONESYNC_WRITE_MODE=put can write it, or complete the record on the server",
        )


def _subsetted(patient: dict[str, Any]) -> bool:
    """Tagged SUBSETTED (v3-ObservationValue): the server says this is not the whole record."""
    meta = patient.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return isinstance(tags, list) and any(
        isinstance(tag, dict)
        and tag.get("code") == "SUBSETTED"
        and tag.get("system") in (None, _SUBSETTED_SYSTEM)
        for tag in tags
    )


def _answer_lost(before: dict[str, int], after: dict[str, int]) -> bool:
    """Did an attempt of this write end without a definite answer (it may have landed)?"""
    return any(after.get(key, 0) > before.get(key, 0) for key in _MAY_HAVE_LANDED)


def _matching_ids(entries: list[Any], system: str, value: str) -> list[str]:
    """Ids of the Patient entries carrying exactly `system|value` (anything else is ignored)."""
    ids: list[str] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            continue
        identifiers = resource.get("identifier")
        if not isinstance(identifiers, list) or not any(
            isinstance(i, dict) and i.get("system") == system and i.get("value") == value
            for i in identifiers
        ):
            continue
        ids.append(str(resource.get("id") or ""))
    return ids


def _single(ids: list[str], *, ignored: int, paged: bool) -> str:
    if paged:
        raise _Stop(Outcome.AMBIGUOUS_PATIENT, "the search result spans several pages")
    if len(ids) > 1:
        shown = ", ".join(ids[:_MAX_IDS_SHOWN]) + (", …" if len(ids) > _MAX_IDS_SHOWN else "")
        raise _Stop(Outcome.AMBIGUOUS_PATIENT, f"{len(ids)} Patients carry this NIK ({shown})")
    if not ids:
        extra = f" ({ignored} other search entries ignored)" if ignored > 0 else ""
        raise _Stop(Outcome.PATIENT_NOT_FOUND, f"no Patient carries this NIK identifier{extra}")
    if not ids[0]:
        raise _Stop(Outcome.FAILED, "GET search: the matching entry has no id")
    return ids[0]


def _has_next(bundle: dict[str, Any]) -> bool:
    links = bundle.get("link")
    return isinstance(links, list) and any(
        isinstance(link, dict) and link.get("relation") == "next" for link in links
    )


def _version_id(resource: Any) -> str | None:
    meta = resource.get("meta") if isinstance(resource, dict) else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return version if isinstance(version, str) and version else None


def _etag_version(etag: str | None) -> str | None:
    """`W/"abc"` → `abc` (opaque: only the wrapper is removed)."""
    if not etag:
        return None
    text = etag.removeprefix("W/").strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _written_version(resp: FhirResponse) -> str | None:
    return _version_id(resp.json) or _etag_version(resp.etag)
