"""Rows → plan: which rows are in scope of the run, which end early, and what must be applied.

Pure: no IO. The orchestrator feeds it the source's rows and, in a second step, what the ledger
knows about each NIK; the result is the list of `WorkItem`s that need the FHIR server and the
`RowResult`s of every row that ends before that (invalid, superseded, already applied).

Scope: a row belongs to the run of date D when its `last_updated_date` falls on D in the run's
zone. A row whose date cannot be read belongs to every run (it can't be placed anywhere else, and an
operator must see it). Blank rows never reach this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Protocol
from zoneinfo import ZoneInfo

from phonesync.masking import keyed_hash, mask_nik, mask_phone
from phonesync.normalise.dates import parse_update_time
from phonesync.normalise.nik import Nik, parse_nik
from phonesync.normalise.phone import normalise_phone
from phonesync.outcomes import Outcome, Rejected, RowResult
from phonesync.source.rows import SheetRow


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A valid, winning row that needs the FHIR server. `phone` is E.164 (`+628…`)."""

    row: int
    nik: Nik
    phone: str
    moment: datetime  # aware; when the update was made (date-only cells: midnight in the zone)
    nik_hash: str
    phone_hash: str
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class EarlyResult:
    """A row that ends without the FHIR server, with what the ledger needs to file it.

    Only masked values and keyed hashes: the raw cells stay in memory inside the plan step.
    """

    result: RowResult
    nik_masked: str
    phone_masked: str
    nik_hash: str | None = None
    phone_hash: str | None = None
    moment: datetime | None = None
    fingerprint: str = ""


@dataclass
class Plan:
    """What a run will do: `work` goes to the FHIR server, `early` is already decided."""

    business_date: date
    rows_read: int = 0
    work: list[WorkItem] = field(default_factory=list)
    early: list[EarlyResult] = field(default_factory=list)

    @property
    def in_scope(self) -> int:
        return len(self.work) + len(self.early)


class AppliedState(Protocol):
    """What the ledger knows about the newest update already applied for one NIK."""

    @property
    def phone_hash(self) -> str: ...
    @property
    def moment(self) -> datetime: ...
    @property
    def business_date(self) -> date: ...
    @property
    def run_id(self) -> str: ...


def fingerprint(row: SheetRow) -> str:
    """A short digest of a row's content, to notice later edits of an already-applied row."""
    raw = "\x1f".join(repr(cell) for cell in (row.nik, row.phone, row.updated))
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def _in_scope(moment: datetime | Rejected, business_date: date) -> bool:
    return isinstance(moment, Rejected) or moment.date() == business_date


def _judge(row: SheetRow, moment: datetime | Rejected) -> tuple[Nik, str] | Rejected:
    """Validate one in-scope row; NIK first, then phone, then date."""
    nik = parse_nik(row.nik)
    if isinstance(nik, Rejected):
        return nik
    phone = normalise_phone(row.phone)
    if isinstance(phone, Rejected):
        return phone
    if isinstance(moment, Rejected):
        return moment
    return nik, phone


def build_plan(
    rows: Iterable[SheetRow],
    *,
    business_date: date,
    zone: ZoneInfo,
    hash_key: bytes,
    only_rows: Mapping[int, str] | None = None,
) -> Plan:
    """Validate and de-duplicate the rows of `business_date`: the latest update per NIK wins.

    `only_rows` (row number → NIK hash) narrows the plan to the rows a retry re-processes; a row
    whose NIK hash no longer matches was edited since and is left to a normal run.
    """
    plan = Plan(business_date=business_date)
    winners: dict[str, WorkItem] = {}
    for row in rows:
        plan.rows_read += 1
        moment = parse_update_time(row.updated, zone)
        if not _in_scope(moment, business_date):
            continue
        if only_rows is not None and row.row not in only_rows:
            continue
        judged = _judge(row, moment)
        if isinstance(judged, Rejected):
            if only_rows is None:
                plan.early.append(_rejected(row, judged, moment))
            continue
        nik, phone = judged
        assert isinstance(moment, datetime)  # noqa: S101 - _judge returned a value only then
        item = WorkItem(
            row=row.row,
            nik=nik,
            phone=phone,
            moment=moment,
            nik_hash=keyed_hash(nik.value, hash_key),
            phone_hash=keyed_hash(phone, hash_key),
            fingerprint=fingerprint(row),
        )
        if only_rows is not None and only_rows[row.row] != item.nik_hash:
            continue
        _keep_latest(winners, item, plan)
    plan.work = sorted(winners.values(), key=lambda w: w.row)
    return plan


def _keep_latest(winners: dict[str, WorkItem], item: WorkItem, plan: Plan) -> None:
    """Latest timestamp wins; on equal timestamps the later sheet row wins."""
    current = winners.get(item.nik_hash)
    if current is None:
        winners[item.nik_hash] = item
        return
    newer, older = (
        (item, current)
        if (item.moment, item.row) > (current.moment, current.row)
        else (current, item)
    )
    winners[item.nik_hash] = newer
    plan.early.append(
        _early(older, Outcome.SUPERSEDED, f"row {newer.row} has a newer update for this NIK")
    )


def settle_with_ledger(plan: Plan, applied: Mapping[str, AppliedState]) -> None:
    """Move work the ledger already knows about out of the plan (no FHIR request for it).

    A newer update already applied for the NIK wins (`superseded`); the very same update already
    applied (same number, same timestamp) is `unchanged`. Anything else still goes to the server.
    """
    keep: list[WorkItem] = []
    for item in plan.work:
        state = applied.get(item.nik_hash)
        if state is None:
            keep.append(item)
        elif state.moment > item.moment:
            reason = (
                f"a newer update ({state.business_date.isoformat()}) was already applied "
                f"by run {state.run_id}"
            )
            plan.early.append(_early(item, Outcome.SUPERSEDED, reason))
        elif state.moment == item.moment and state.phone_hash == item.phone_hash:
            reason = f"already applied by run {state.run_id}"
            plan.early.append(_early(item, Outcome.UNCHANGED, reason))
        else:
            keep.append(item)
    plan.work = keep


def _early(item: WorkItem, outcome: Outcome, reason: str) -> EarlyResult:
    return EarlyResult(
        result=RowResult(row=item.row, outcome=outcome, reason=reason, new_phone=item.phone),
        nik_masked=mask_nik(item.nik.value),
        phone_masked=mask_phone(item.phone),
        nik_hash=item.nik_hash,
        phone_hash=item.phone_hash,
        moment=item.moment,
        fingerprint=item.fingerprint,
    )


def _cell_text(cell: object) -> str:
    return "" if cell is None else str(cell).strip()


def _rejected(row: SheetRow, rejected: Rejected, moment: datetime | Rejected) -> EarlyResult:
    nik_text = _cell_text(row.nik)
    return EarlyResult(
        result=RowResult(row=row.row, outcome=rejected.outcome, reason=rejected.reason),
        nik_masked=mask_nik(nik_text),
        phone_masked=mask_phone(_cell_text(row.phone)),
        moment=None if isinstance(moment, Rejected) else moment,
        fingerprint=fingerprint(row),
    )


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of `day` in `zone` (what a date-only cell means)."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)
