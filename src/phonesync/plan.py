"""Rows → plan: which rows are in scope of the run, which end early, and what must be applied.

Pure: no IO. The orchestrator feeds it the source's rows and, in a second step, what the ledger
knows about each NIK; the result is the list of `WorkItem`s that need the FHIR server and the
`RowResult`s of every row that ends before that (invalid, superseded, already applied).

Scope: a row belongs to the run of date D when its `last_updated_date` falls on D in the run's
zone. A row whose date cannot be read belongs to every run (it can't be placed anywhere else, and an
operator must see it). In catch-up mode (`catchup.CatchUp`) the run also takes the rows of its
look-back window whose content the ledger has not settled yet. Blank rows never reach this module.

Newer wins, also against an invalid row: a row with a valid NIK and a readable date whose phone is
invalid is the newest update the sheet holds for that NIK when it is newer than every valid row,
so no older number of that NIK is written (`_hold_back`: they end `superseded`, naming it). A row
whose date cannot be read cannot be ordered and holds nothing back (`_note_undated`). And newer
wins across dates: a row of the same read dated after the run's date, with a valid NIK, is a newer
update of that NIK, so a replay of an older date never writes the older number over it, whatever
the ledger knows (`_hold_back` too: `superseded`, naming that row).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from phonesync.masking import keyed_hash, mask_nik, mask_phone
from phonesync.normalise.dates import parse_update_time
from phonesync.normalise.nik import Nik, parse_nik
from phonesync.normalise.phone import normalise_phone
from phonesync.outcomes import Outcome, Rejected, RowResult
from phonesync.source.rows import (
    SheetRow,
    UnsavedFormula,
    shifted_row_reason,
    unsaved_formula_reason,
)

if TYPE_CHECKING:
    from phonesync.catchup import CatchUp


#: Sheet rows kept per date for the source checks' messages (`Plan.first_rows`).
FIRST_ROWS_KEPT = 5


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
    patient_id: str | None = None  # from the ledger's cache (fhir/patient_cache.py): a hint only


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
    #: Sheet rows of other dates taken on by catch-up (a subset of the rows in scope).
    catch_up_rows: set[int] = field(default_factory=set)
    #: The readable dates of every data row read, in scope or not, with the first few sheet rows
    #: of each: the source's own checks (no row for the date, rows dated in the future;
    #: `sync.source_anomalies`).
    dates: Counter[date] = field(default_factory=Counter)
    first_rows: dict[date, list[int]] = field(default_factory=dict)

    def note_date(self, day: date, row: int) -> None:
        self.dates[day] += 1
        rows = self.first_rows.setdefault(day, [])
        if len(rows) < FIRST_ROWS_KEPT:
            rows.append(row)

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
    @property
    def applied_at(self) -> datetime: ...


def fingerprint(row: SheetRow, key: bytes = b"") -> str:
    """A short keyed digest of a row's content, to notice later edits of a settled row.

    Keyed (BLAKE2b MAC with the hash key) because the content holds a NIK and a phone number: an
    unkeyed digest of a known NIK could be brute-forced back to the phone number.
    """
    raw = "\x1f".join(repr(cell) for cell in (row.nik, row.phone, row.updated))
    mac_key = key if len(key) <= 64 else hashlib.sha256(key).digest()
    return hashlib.blake2b(raw.encode(), key=mac_key, digest_size=12).hexdigest()


def _in_scope(moment: datetime | Rejected, business_date: date) -> bool:
    return isinstance(moment, Rejected) or moment.date() == business_date


def _judge(row: SheetRow, moment: datetime | Rejected) -> tuple[Nik, str] | Rejected:
    """Validate one in-scope row; NIK first, then phone, then date.

    A formula cell with no saved value comes first (in the same order): what the row holds is
    unknown until the file is saved, and "NIK is empty" would hide that.
    """
    if not isinstance(row.nik, UnsavedFormula):  # (a NIK one is refused first below)
        if isinstance(row.phone, UnsavedFormula):
            return Rejected(Outcome.INVALID_PHONE, unsaved_formula_reason("phone"))
        if isinstance(row.updated, UnsavedFormula) and isinstance(moment, Rejected):
            return moment
    nik = parse_nik(row.nik)
    if isinstance(nik, Rejected):
        return nik
    phone = normalise_phone(row.phone)
    if isinstance(phone, Rejected):
        return phone
    if isinstance(moment, Rejected):
        return moment
    return nik, phone


@dataclass(frozen=True, slots=True)
class _Staged:
    row: SheetRow
    moment: datetime | Rejected
    fingerprint: str


@dataclass(frozen=True, slots=True)
class _Bystander:
    """A row of the plan's dates that is not in scope (settled by an earlier run, or not one of a
    retry's rows): never reported again, but an invalid phone in it still holds back older rows."""

    row: SheetRow
    moment: datetime


def _stage(
    rows: Iterable[SheetRow],
    plan: Plan,
    zone: ZoneInfo,
    hash_key: bytes,
    only_rows: Mapping[int, str] | None,
    catch_up: CatchUp | None,
    later: dict[str, tuple[datetime, int]],
) -> tuple[list[_Staged], list[_Bystander]]:
    """The rows in scope, in sheet order: the date's own rows, then unsettled catch-up rows;
    and the bystanders (the plan's other rows with a readable date on its date or in its window).
    `later` gets, per valid NIK (hash), the newest row dated after the plan's date.

    A retry (`only_rows`) takes exactly its rows, whatever their date: a failed catch-up row
    of another date is retried too.
    """
    staged: list[_Staged] = []
    candidates: list[_Staged] = []
    bystanders: list[_Bystander] = []
    for row in rows:
        plan.rows_read += 1
        moment = parse_update_time(row.updated, zone)
        if isinstance(moment, datetime):
            plan.note_date(moment.date(), row.row)
        if (
            isinstance(moment, datetime)
            and moment.date() > plan.business_date
            and (only_rows is None or row.row not in only_rows)
        ):
            _note_newest(later, row, moment, hash_key)  # a newer update: holds older back
            continue
        if only_rows is not None:
            if row.row in only_rows:
                staged.append(_Staged(row, moment, fingerprint(row, hash_key)))
            elif isinstance(moment, datetime) and moment.date() == plan.business_date:
                bystanders.append(_Bystander(row, moment))
        elif _in_scope(moment, plan.business_date):
            staged.append(_Staged(row, moment, fingerprint(row, hash_key)))
        elif catch_up is not None and catch_up.covers(moment):
            candidates.append(_Staged(row, moment, fingerprint(row, hash_key)))
    if catch_up is not None and candidates:
        settled = catch_up.settled([c.fingerprint for c in candidates])
        fresh = [c for c in candidates if c.fingerprint not in settled]
        plan.catch_up_rows = {c.row.row for c in fresh}
        staged = sorted(staged + fresh, key=lambda s: s.row.row)
        bystanders += [
            _Bystander(c.row, c.moment)
            for c in candidates
            if c.fingerprint in settled and isinstance(c.moment, datetime)
        ]
    return staged, bystanders


def build_plan(
    rows: Iterable[SheetRow],
    *,
    business_date: date,
    zone: ZoneInfo,
    hash_key: bytes,
    only_rows: Mapping[int, str] | None = None,
    catch_up: CatchUp | None = None,
) -> Plan:
    """Validate and de-duplicate the rows in scope: the latest update per NIK wins.

    `only_rows` (row number → NIK hash) narrows the plan to the rows a retry re-processes; a row
    whose NIK hash no longer matches was edited since and is left to a normal run. `catch_up`
    adds the unsettled rows of the look-back window (they compete with the date's own rows).
    """
    plan = Plan(business_date=business_date)
    winners: dict[str, WorkItem] = {}
    blockers: dict[str, tuple[datetime, int]] = {}  # NIK hash → newest invalid-phone row
    undated: list[tuple[int, str]] = []  # (index in plan.early, NIK hash) of invalid_date rows
    later: dict[str, tuple[datetime, int]] = {}  # NIK hash → newest row dated later
    staged_rows, bystanders = _stage(rows, plan, zone, hash_key, only_rows, catch_up, later)
    for staged in staged_rows:
        row, moment = staged.row, staged.moment
        judged = _judge(row, moment)
        if isinstance(judged, Rejected):
            if judged.outcome is Outcome.INVALID_PHONE and isinstance(moment, datetime):
                _note_newest(blockers, row, moment, hash_key)
            if only_rows is None:
                if judged.outcome is Outcome.INVALID_DATE:
                    nik_hash = _nik_hash(row, hash_key)
                    if nik_hash is not None:
                        undated.append((len(plan.early), nik_hash))
                plan.early.append(_rejected(row, judged, moment, staged.fingerprint))
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
            fingerprint=staged.fingerprint,
        )
        if only_rows is not None and only_rows[row.row] != item.nik_hash:
            continue
        _keep_latest(winners, item, plan)
    _note_bystanders(blockers, bystanders, winners, hash_key)
    _hold_back(winners, blockers, plan, _invalid_newer)
    _hold_back(winners, later, plan, _dated_later)
    _note_undated(undated, winners, plan)
    plan.work = sorted(winners.values(), key=lambda w: w.row)
    return plan


_NOT_DIGITS = re.compile(r"\D")


def _nik_hash(row: SheetRow, hash_key: bytes) -> str | None:
    """The keyed hash of the row's NIK, or None when the NIK is invalid."""
    nik = parse_nik(row.nik)
    return None if isinstance(nik, Rejected) else keyed_hash(nik.value, hash_key)


def _note_newest(
    newest: dict[str, tuple[datetime, int]], row: SheetRow, moment: datetime, hash_key: bytes
) -> None:
    """Remember the newest row with a valid NIK per NIK hash (an invalid-phone row of the plan's
    dates, or any row dated after them: its phone is for its own night to judge)."""
    nik_hash = _nik_hash(row, hash_key)
    if nik_hash is not None and (moment, row.row) > newest.get(nik_hash, (moment, -1)):
        newest[nik_hash] = (moment, row.row)


def _note_bystanders(
    blockers: dict[str, tuple[datetime, int]],
    bystanders: Iterable[_Bystander],
    winners: Mapping[str, WorkItem],
    hash_key: bytes,
) -> None:
    """Bystanders newer than a winner of their NIK whose phone is invalid hold it back too.

    Cheap for the many that cannot matter: their digits must be a winner's NIK before the NIK is
    parsed (every accepted NIK is the digits of its cell), and only then is the phone checked.
    """
    if not winners:
        return
    oldest = min(w.moment for w in winners.values())
    niks = {w.nik.value for w in winners.values()}
    for bystander in bystanders:
        row, moment = bystander.row, bystander.moment
        if moment < oldest or _NOT_DIGITS.sub("", str(row.nik)) not in niks:
            continue
        nik_hash = _nik_hash(row, hash_key)
        winner = winners.get(nik_hash) if nik_hash is not None else None
        if winner is None or (moment, row.row) <= (winner.moment, winner.row):
            continue
        phone = (
            Rejected(Outcome.INVALID_PHONE, "")
            if isinstance(row.phone, UnsavedFormula)
            else normalise_phone(row.phone)
        )
        if isinstance(phone, Rejected):
            _note_newest(blockers, row, moment, hash_key)


def held_back_reason(blocker_row: int, *, same_moment: bool) -> str:
    """Why a valid row is not applied: a newer row of its NIK has an invalid phone."""
    if same_moment:
        return (
            f"a later row ({blocker_row}) has an update with the same timestamp for this NIK but "
            "its phone is invalid: fix that row (this number is not written)"
        )
    return (
        f"row {blocker_row} for this NIK is newer but its phone is invalid: fix that row "
        "(this older number is not written)"
    )


def _hold_back(
    winners: dict[str, WorkItem],
    newer: Mapping[str, tuple[datetime, int]],
    plan: Plan,
    reason: Callable[[int, datetime, WorkItem], str],
) -> None:
    """A winner older than a row in `newer` (per NIK hash: its newest (moment, row)) is not
    applied: `superseded`, with `reason(row, moment, winner)`.

    Two kinds of newer rows hold back: an invalid-phone row of the plan's dates (the sheet says
    the number was replaced: writing it would give the patient a number the sheet no longer
    holds; once that row is fixed, catch-up takes it and newer wins as usual), and any row of a
    valid NIK dated after the plan's date (a replay of an older date — `run --date`, a retry, an
    empty or another ledger — would otherwise write the older number over the newer one its own
    night applied, or is about to).
    """
    for nik_hash, (moment, row) in newer.items():
        winner = winners.get(nik_hash)
        if winner is None or (moment, row) <= (winner.moment, winner.row):
            continue
        del winners[nik_hash]
        plan.early.append(_early(winner, Outcome.SUPERSEDED, reason(row, moment, winner)))


def _invalid_newer(row: int, moment: datetime, winner: WorkItem) -> str:
    return held_back_reason(row, same_moment=moment == winner.moment)


def _dated_later(row: int, moment: datetime, _winner: WorkItem) -> str:
    return later_row_reason(row, moment.date())


def later_row_reason(row: int, day: date) -> str:
    """Why a valid row is not applied: the same read holds a row of its NIK dated later."""
    return (
        f"row {row} for this NIK is dated {day.isoformat()}, after this run's date: that newer "
        "update wins (this older number is not written)"
    )


def _note_undated(
    undated: Iterable[tuple[int, str]], winners: Mapping[str, WorkItem], plan: Plan
) -> None:
    """An invalid_date row of a NIK with a valid winner names that winner in its reason.

    Such a row cannot be ordered, and it holds nothing back: it is in every night's scope until
    its date is fixed, so holding back would block every later update of its NIK, and would
    lose the valid one for good should the fixed date turn out older. Its reason names the row
    that goes on, so whoever fixes the date knows another number may be written meanwhile.
    """
    for index, nik_hash in undated:
        winner = winners.get(nik_hash)
        if winner is None:
            continue
        early = plan.early[index]
        reason = (
            f"{early.result.reason} (row {winner.row} for this NIK has a readable date and is "
            "not held back by this row)"
        )
        plan.early[index] = replace(early, result=replace(early.result, reason=reason))


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
    reason = (
        f"a later row ({newer.row}) has an update with the same timestamp for this NIK"
        if newer.moment == older.moment
        else f"row {newer.row} has a newer update for this NIK"
    )
    plan.early.append(_early(older, Outcome.SUPERSEDED, reason))


def settle_with_ledger(
    plan: Plan, applied: Mapping[str, AppliedState], *, read_at: datetime | None = None
) -> None:
    """Move work the ledger already knows about out of the plan (no FHIR request for it).

    A newer update already applied for the NIK wins (`superseded`); the very same update already
    applied (same number, same timestamp) is `unchanged`. On equal timestamps with another number
    (date-only cells), the rows read at `read_at` lose to an update applied after they were read:
    a replay of a frozen input never undoes a later edit that a catch-up run applied.
    Anything else still goes to the server.
    """
    keep: list[WorkItem] = []
    for item in plan.work:
        state = applied.get(item.nik_hash)
        verdict = None if state is None else _ledger_verdict(item, state, read_at)
        if verdict is None:
            keep.append(item)
        else:
            plan.early.append(_early(item, *verdict))
    plan.work = keep


def _ledger_verdict(
    item: WorkItem, state: AppliedState, read_at: datetime | None
) -> tuple[Outcome, str] | None:
    """Superseded / unchanged because of what was applied, or None (the server decides)."""
    if state.moment > item.moment:
        when = state.business_date.isoformat()
        return (
            Outcome.SUPERSEDED,
            f"a newer update ({when}) was already applied by run {state.run_id}",
        )
    if state.moment < item.moment:
        return None
    if state.phone_hash == item.phone_hash:
        return Outcome.UNCHANGED, f"already applied by run {state.run_id}"
    if read_at is not None and state.applied_at > read_at:
        return (
            Outcome.SUPERSEDED,
            f"a later edit of this update was already applied by run {state.run_id}",
        )
    return None


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


def _rejected(
    row: SheetRow, rejected: Rejected, moment: datetime | Rejected, digest: str
) -> EarlyResult:
    """An invalid row's result. A CSV row with cells beyond the header (`row.shifted`) keeps its
    outcome, and its reason says first that the columns are shifted: the usual reason alone
    ("phone contains letters …") would send the operator to the wrong cell."""
    nik_text = _cell_text(row.nik)
    reason = rejected.reason
    if row.shifted is not None:
        reason = shifted_row_reason(row.shifted, reason)
    return EarlyResult(
        result=RowResult(row=row.row, outcome=rejected.outcome, reason=reason),
        nik_masked=mask_nik(nik_text),
        phone_masked=mask_phone(_cell_text(row.phone)),
        moment=None if isinstance(moment, Rejected) else moment,
        fingerprint=digest,
    )


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of `day` in `zone` (what a date-only cell means)."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)
