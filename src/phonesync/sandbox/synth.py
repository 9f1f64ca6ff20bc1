"""Deterministic synthetic data for the sandboxes: Patients, a sheet, and each row's due outcome.

`generate()` builds a national patient index and a Google-Forms-like sheet for one business date.
Most rows are clean; about `messy_share` of the in-scope rows carry exactly one seeded anomaly from
the field cases (`KINDS`), and `expected` says, by construction, which outcome phonesync must give
every in-scope row. Rows of earlier dates are mixed in and never appear in `expected`.

Conventions the manifest relies on (docs/contract.md, docs/architecture.md):
- in scope = rows whose `last_updated_date` is the business date, or is missing/unparseable;
- date-only cells mean midnight in the zone; times on cells are 07:00–16:59 (the same date whether
  read as local time or, wrongly, as UTC), so scope never hinges on a time-zone reading;
- per NIK the latest moment wins, equal moments → the later sheet row; only otherwise-valid rows
  compete, and duplicate groups use date-and-time cells only;
- a messy row has exactly one problem; every other in-scope row is `updated` (a new number that
  differs from every number already on the Patient).
"""

from __future__ import annotations

import gc
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import accumulate
from pathlib import Path

from phonesync.outcomes import Outcome
from phonesync.sandbox import synth_people as people
from phonesync.sandbox.synth_people import Json, NikFactory, Person, between, pick, weighted
from phonesync.source.rows import Cell

HEADER: list[Cell] = ["Timestamp", "NIK", "Nama", "No WhatsApp", "last_updated_date", "", "Catatan",
                      "Petugas"]  # fmt: skip
_SERIAL_EPOCH = date(1899, 12, 30)
_DATE_STYLES = ("iso", "dmy", "dmy_time", "serial")
_NOTES = ("ganti nomor", "nomor lama hilang", "minta update WA", "HP hilang", "dari pendaftaran",
          "nomor anak", "konfirmasi via telepon", "pindah domisili")  # fmt: skip
_STAFF = ("RN", "dr. A", "bidan S", "AS", "MH", "admin")
U, SUP = Outcome.UPDATED, Outcome.SUPERSEDED


@dataclass(slots=True)
class _Row:
    nik: Cell
    phone: Cell
    when: Cell  # None: no date cell at all (the row ends after the phone)
    name: str
    stamp: datetime  # the form's Timestamp column; the update's moment in duplicate groups
    outcome: Outcome | None  # None: out of scope (another date)


@dataclass(frozen=True)
class SandboxData:
    """What the sandboxes serve, and what phonesync must make of it."""

    patients: list[Json]  # FHIR R4 Patient resources
    values: list[list[Cell]]  # header row first; data rows are sheet rows 2, 3, …
    expected: dict[int, str]  # sheet row → outcome name, for every in-scope row and no other
    notes: dict[str, int]  # occurrences per seeded kind (a duplicate group counts once), and more


@dataclass
class _Ctx:
    rng: random.Random
    day: date
    nik_system: str
    national: bool
    factory: NikFactory
    pool: list[tuple[Person, Json]]  # registered people no row has used yet
    ids: list[str]
    extra: list[Json] = field(default_factory=list)  # twins and newborns

    def take(self, required: bool = True) -> tuple[Person, Json | None]:
        if self.pool:
            return self.pool.pop()
        if required:
            raise ValueError("not enough patients for the requested rows")
        return self.factory.person(), None

    def moment(self) -> datetime:
        seconds = between(self.rng, 7 * 3600, 17 * 3600 - 1)
        return datetime.combine(self.day, time()) + timedelta(seconds=seconds)

    def fresh_phone(self, patient: Json | None) -> str:
        taken = {people.phone_key(t["value"]) for t in (patient or {}).get("telecom", ())}
        while (number := people.new_mobile(self.rng)) in taken:
            pass
        return number

    def row(self, person: Person, patient: Json | None, outcome: Outcome = U) -> _Row:
        moment = self.moment()
        name = people.sheet_name(self.rng, person.name)
        phone = self.fresh_phone(patient)
        return _Row(person.nik, phone, date_cell(self.rng, moment), name, moment, outcome)


def date_cell(rng: random.Random, moment: datetime, style: str | None = None) -> Cell:
    """A `last_updated_date` cell for `moment` in one of the formats found in real sheets."""
    style = style or weighted(rng, _DATE_STYLES, (35, 60, 90, 100))
    if style == "iso":
        return moment.date().isoformat()
    if style == "dmy":
        return moment.strftime("%d/%m/%Y")
    if style == "dmy_time":
        return moment.strftime("%d/%m/%Y %H:%M:%S")
    serial = (moment.date() - _SERIAL_EPOCH).days  # a date cell read as SERIAL_NUMBER
    return serial if rng.random() < 0.3 else serial + between(rng, 30, 70) / 100  # 07:12–16:48


# --- the anomaly kinds: one cell made messy --------------------------------------------------

_Tf = Callable[[random.Random, str], Cell]


def _other_nik(rng: random.Random) -> str:
    return NikFactory(rng, date(2024, 1, 1)).person().nik


#: NIK cells that must end `invalid_nik` (the transform gets the true NIK).
NIK_INVALID: dict[str, _Tf] = {
    "nik_numeric_int": lambda r, n: int(n),
    "nik_numeric_float": lambda r, n: float(n),
    "nik_excel_15_digits_kept": lambda r, n: n[:15] + "0",  # serial 000x → 0000, never issued
    "nik_scientific_text": lambda r, n: f"{float(n):.5E}",
    "nik_15_digits": lambda r, n: n[:15],
    "nik_17_digits": lambda r, n: n + str(between(r, 0, 9)),
    "nik_province_invalid": lambda r, n: pick(r, ("00", "99", "20")) + n[2:],
    "nik_day_35": lambda r, n: n[:6] + "35" + n[8:],
    "nik_day_40": lambda r, n: n[:6] + "40" + n[8:],
    "nik_month_13": lambda r, n: n[:8] + "13" + n[10:],
    "nik_female_30_feb": lambda r, n: n[:6] + "7002" + n[10:],
    "nik_pipe": lambda r, n: f"{n}|{pick(r, ('x', '1', 'ok'))}",
    "nik_comma_two": lambda r, n: f"{n},{_other_nik(r)}",
    "nik_backslash": lambda r, n: n + "\\",
    "nik_two_numbers": lambda r, n: f"{n}{pick(r, (' / ', chr(10), ' dan '))}{_other_nik(r)}",
    "nik_empty": lambda r, n: pick(r, ("", " ")),
    "nik_placeholder": lambda r, n: pick(r, ("belum ada", "-", "menyusul")),
}
#: NIK cells that clean to the true NIK (domain.md §2: whitespace incl. NBSP, `'`, `.`, `-`).
NIK_CLEANABLE: dict[str, _Tf] = {
    "nik_spaces": lambda r, n: f"{n[:4]} {n[4:8]} {n[8:12]} {n[12:]}",
    "nik_dots": lambda r, n: f"{n[:4]}.{n[4:8]}.{n[8:12]}.{n[12:]}",
    "nik_apostrophe": lambda r, n: "'" + n,
    "nik_nbsp_padded": lambda r, n: f"\u00a0{n} ",
    "nik_dashes": lambda r, n: f"{n[:6]}-{n[6:12]}-{n[12:]}",
}
#: Phone cells that are the new number, written messily (the transform gets `08…`).
PHONE_VALID: dict[str, _Tf] = {
    "phone_dashes": lambda r, n: people.grouped(n),
    "phone_plus62_spaces": lambda r, n: people.international(n, "spaces"),
    "phone_62_without_plus": lambda r, n: "62" + n[1:],
    "phone_plus62_trunk_zero": lambda r, n: f"+62 (0) {people.grouped(n)[1:]}",
    "phone_wa_label": lambda r, n: f"{pick(r, ('WA: ', 'wa ', 'WA '))}{people.grouped(n, ' ')}",
    "phone_wa_me_link": lambda r, n: f"{pick(r, ('', 'https://'))}wa.me/62{n[1:]}",
    "phone_numeric_cell": lambda r, n: int(n),  # the leading 0 already lost; safety net
}
#: Phone cells that must end `invalid_phone`.
PHONE_INVALID: dict[str, _Tf] = {
    "phone_too_long": lambda r, n: (n + "0123")[:14],
    "phone_too_short": lambda r, n: pick(r, ("12345", n[:7])),
    "phone_truncated": lambda r, n: people.grouped(n)[:8],
    "phone_two_numbers": lambda r, n: (
        f"{people.grouped(n)}{pick(r, (' / ', ', ', '/'))}{people.grouped(people.new_mobile(r))}"
    ),
    "phone_letter_o": lambda r, n: f"{n[:6]}O{n[7:]}",
    "phone_scientific_text": lambda r, n: f"{float('62' + n[1:]):.5E}",
    "phone_not_mobile_0800": lambda r, n: pick(r, ("0800", "0809")) + n[4:11],
    "phone_landline": lambda r, n: people.landline(r),
    "phone_foreign": lambda r, n: pick(r, ("+65 9", "+60 12-")) + n[5:12],
    "phone_empty": lambda r, n: "",
    "phone_no_number": lambda r, n: pick(r, ("tidak ada", "-", "HP hilang")),
}
#: Date cells that must end `invalid_date`.
DATE_INVALID: dict[str, Callable[[random.Random, date], Cell]] = {
    "date_impossible": lambda r, d: pick(r, (f"{d.year}-02-30", f"31/04/{d.year}")),
    "date_words": lambda r, d: pick(r, ("kemarin", "hari ini")),
    "date_empty_cell": lambda r, d: "",
    "date_missing_short_row": lambda r, d: None,
}


# --- builders: one seeded case each (a list of rows in sheet order) ---------------------------

_Builder = Callable[[_Ctx, str], list[_Row]]


def _nik_kind(ctx: _Ctx, kind: str) -> list[_Row]:
    if kind in NIK_CLEANABLE:
        row = ctx.row(*ctx.take())
        row.nik = NIK_CLEANABLE[kind](ctx.rng, str(row.nik))
        return [row]
    person, patient = ctx.take(required=False)
    while kind == "nik_excel_15_digits_kept" and int(person.nik[12:]) >= 10:
        person, patient = ctx.factory.person(), None  # `…0010` would still be a valid NIK
    row = ctx.row(person, patient, Outcome.INVALID_NIK)
    row.nik = NIK_INVALID[kind](ctx.rng, person.nik)
    return [row]


def _papua_numeric(ctx: _Ctx, kind: str) -> list[_Row]:
    """A Papua NIK through a float: above 2**53 an odd serial becomes a neighbouring valid NIK."""
    person = ctx.factory.person(province=pick(ctx.rng, ("91", "92", "93", "94", "95", "96")))
    while int(person.nik) % 2 == 0:
        person = ctx.factory.person(province=person.nik[:2])
    row = ctx.row(person, None, Outcome.INVALID_NIK)
    row.nik = int(float(person.nik))
    return [row]


def _phone_kind(ctx: _Ctx, kind: str) -> list[_Row]:
    if kind in PHONE_VALID:
        row = ctx.row(*ctx.take())
        row.phone = PHONE_VALID[kind](ctx.rng, str(row.phone))
        return [row]
    row = ctx.row(*ctx.take(required=False), Outcome.INVALID_PHONE)
    row.phone = PHONE_INVALID[kind](ctx.rng, str(row.phone))
    return [row]


def _date_kind(ctx: _Ctx, kind: str) -> list[_Row]:
    row = ctx.row(*ctx.take(required=False), Outcome.INVALID_DATE)
    row.when = DATE_INVALID[kind](ctx.rng, ctx.day)
    return [row]


def _not_found(ctx: _Ctx, kind: str) -> list[_Row]:
    return [ctx.row(ctx.factory.person(), None, Outcome.PATIENT_NOT_FOUND)]


def _newborn(ctx: _Ctx, kind: str) -> list[_Row]:
    """The mother reports her NIK; the baby is registered only under `nik-ibu`, she is not."""
    mother = ctx.factory.person(sex="female")
    born = ctx.day - timedelta(days=between(ctx.rng, 1, 60))
    ctx.extra.append(people.newborn_resource(ctx.rng, mother, ctx.ids.pop(), born, ctx.national))
    return [ctx.row(mother, None, Outcome.PATIENT_NOT_FOUND)]


def _ambiguous(ctx: _Ctx, kind: str) -> list[_Row]:
    person, patient = ctx.take()
    ctx.extra.append(people.patient_resource(ctx.rng, person, ctx.ids.pop(), ctx.nik_system,
                                             ctx.national))  # fmt: skip
    return [ctx.row(person, patient, Outcome.AMBIGUOUS_PATIENT)]


def _identity(ctx: _Ctx, kind: str) -> list[_Row]:
    person, patient = ctx.take()
    assert patient is not None  # noqa: S101 - take() with required=True never returns None
    if kind == "identity_gender":
        patient["gender"] = "male" if person.sex == "female" else "female"
    else:  # another month: the NIK's DDMM no longer matches
        month = (person.birth.month + between(ctx.rng, 0, 10)) % 12 + 1
        patient["birthDate"] = person.birth.replace(
            month=month, day=min(person.birth.day, 28)
        ).isoformat()
    return [ctx.row(person, patient, Outcome.IDENTITY_MISMATCH)]


def _unchanged(ctx: _Ctx, kind: str) -> list[_Row]:
    """The Patient already has the number, stored in another format than the sheet's."""
    person, patient = ctx.take()
    assert patient is not None  # noqa: S101 - take() with required=True never returns None
    number = people.new_mobile(ctx.rng)
    national = kind == "unchanged_stored_national"
    stored = number if national else people.international(number)
    kept = [t for t in patient.get("telecom", ()) if t.get("system") == "email"]
    patient["telecom"] = [people.mobile_entry(stored), *kept]
    row = ctx.row(person, patient, Outcome.UNCHANGED)
    row.phone = people.international(number, "spaces") if national else people.grouped(number)
    return [row]


#: Duplicate groups (one NIK, all valid, in scope): per sheet position (later moment?, outcome).
_DUP_ROLES: dict[str, tuple[tuple[bool, Outcome], ...]] = {
    "dup_later_time_in_earlier_row": ((True, U), (False, SUP)),
    "dup_later_row_later_time": ((False, SUP), (True, U)),
    "dup_equal_time_later_row_wins": ((True, SUP), (True, U)),
    "dup_three_rows_c13": ((False, SUP), (True, SUP), (True, U)),
}


def _duplicates(ctx: _Ctx, kind: str) -> list[_Row]:
    person, patient = ctx.take()
    rng = ctx.rng
    early = datetime.combine(ctx.day, time(7)) + timedelta(seconds=between(rng, 0, 4 * 3600))
    late = early + timedelta(seconds=between(rng, 60, 5 * 3600))
    rows = []
    for is_late, outcome in _DUP_ROLES[kind]:
        moment = late if is_late else early
        name = people.sheet_name(rng, person.name)
        cell = date_cell(rng, moment, "dmy_time")
        rows.append(_Row(person.nik, ctx.fresh_phone(patient), cell, name, moment, outcome))
    if kind == "dup_three_rows_c13":  # the winner's NIK needs cleaning; rows 2 and 3 agree
        rows[2].nik = NIK_CLEANABLE["nik_spaces"](rng, person.nik)
        number = str(rows[1].phone)
        rows[1].phone, rows[2].phone = (
            people.grouped(number),
            people.international(number, "spaces"),
        )
    return rows


@dataclass(frozen=True)
class Kind:
    """A seeded anomaly: relative frequency, rows per occurrence, builder."""

    weight: float
    size: int
    build: _Builder
    registered: bool = True  # needs a Patient from the pool (False: none, or only if one is left)


KINDS: dict[str, Kind] = {
    "unchanged_stored_national": Kind(9.0, 1, _unchanged),
    "unchanged_stored_international": Kind(9.0, 1, _unchanged),
    **{k: Kind(0.8, len(v), _duplicates) for k, v in _DUP_ROLES.items()},
    "ambiguous_patient": Kind(0.3, 1, _ambiguous),
    "identity_birth_date": Kind(0.3, 1, _identity),
    "identity_gender": Kind(0.3, 1, _identity),
    **{k: Kind(1.2, 1, _nik_kind) for k in NIK_CLEANABLE},
    **{k: Kind(2.0, 1, _phone_kind) for k in PHONE_VALID},
    "patient_not_found": Kind(5.0, 1, _not_found, registered=False),
    "newborn_under_mother_nik": Kind(0.3, 1, _newborn, registered=False),
    "nik_numeric_papua_rounded": Kind(0.5, 1, _papua_numeric, registered=False),
    **{k: Kind(0.6, 1, _nik_kind, registered=False) for k in NIK_INVALID},
    **{k: Kind(1.2, 1, _phone_kind, registered=False) for k in PHONE_INVALID},
    **{k: Kind(0.4, 1, _date_kind, registered=False) for k in DATE_INVALID},
}
#: Kinds that add a Patient of their own to the index (a duplicate record, a newborn).
_EXTRA_PATIENT = ("ambiguous_patient", "newborn_under_mother_nik")


# --- assembling the sheet and the index --------------------------------------------------------


def _allocate(rng: random.Random, rows: int, messy_share: float) -> dict[str, int]:
    """Occurrences per kind: every kind once while the budget lasts, the rest by weight."""
    budget = min(rows, round(rows * messy_share))
    counts = dict.fromkeys(KINDS, 0)
    for name, kind in KINDS.items():
        if kind.size <= budget:
            counts[name] += 1
            budget -= kind.size
    names = list(KINDS)
    cum = tuple(accumulate(KINDS[name].weight for name in names))
    while budget > 0:
        name = weighted(rng, names, cum)
        if KINDS[name].size <= budget:
            counts[name] += 1
            budget -= KINDS[name].size
    return counts


def _registry(
    rng: random.Random, factory: NikFactory, ids: list[str], count: int, nik_system: str,
    national: bool,
) -> list[tuple[Person, Json]]:  # fmt: skip
    """`count` registered people; the first 38 cover every province."""
    provinces = people.PROVINCE_CODES[:count]
    persons = [factory.person(province=code) for code in provinces]
    persons += [factory.person() for _ in range(count - len(persons))]
    return [(p, people.patient_resource(rng, p, ids.pop(), nik_system, national)) for p in persons]


def _other_date_rows(ctx: _Ctx, in_scope: list[_Row], registered: list[Person]) -> list[_Row]:
    """Rows of earlier days (out of scope); every other one for a NIK that also has a row today."""
    rng = ctx.rng
    clean = [r for r in in_scope if r.outcome is U and isinstance(r.nik, str) and r.nik.isdigit()]
    out = []
    for i in range(max(1, round(len(in_scope) * 0.025)) if in_scope else 0):
        if clean and i % 2 == 0:
            today = pick(rng, clean)
            nik, name = str(today.nik), today.name
        else:
            person = pick(rng, registered) if registered else ctx.factory.person()
            nik, name = person.nik, people.sheet_name(rng, person.name)
        day = ctx.day - timedelta(days=between(rng, 1, 10))
        moment = datetime.combine(day, time(7)) + timedelta(seconds=between(rng, 0, 10 * 3600 - 1))
        out.append(_Row(nik, people.new_mobile(rng), date_cell(rng, moment), name, moment, None))
    trap = _day_first_trap(ctx)
    return out + ([trap] if trap else [])


def _day_first_trap(ctx: _Ctx) -> _Row | None:
    """An earlier date that, misread month-first, would be the business date (C11)."""
    d = ctx.day
    if d.day > 12 or d.day == d.month or date(d.year, d.day, d.month) >= d:
        return None
    moment = datetime.combine(date(d.year, d.day, d.month), time(9))
    when = f"{d.month:02d}/{d.day:02d}/{d.year}"
    return _Row(ctx.factory.person().nik, people.new_mobile(ctx.rng), when, "", moment, None)


def _order(rng: random.Random, groups: list[list[_Row | None]]) -> list[_Row | None]:
    """Shuffle all rows; each group's rows keep their relative order (a dedup scenario needs it)."""
    flat = [gi for gi, group in enumerate(groups) for _ in group]
    rng.shuffle(flat)
    out: list[_Row | None] = [None] * len(flat)
    cursor = [0] * len(groups)
    for pos, gi in enumerate(flat):
        out[pos] = groups[gi][cursor[gi]]
        cursor[gi] += 1
    return out


def _cells(rng: random.Random, row: _Row | None) -> list[Cell]:
    """A row as the Sheets API returns it: trailing empty cells omitted, blank rows `[]`."""
    if row is None:
        return []
    cells: list[Cell] = [row.stamp.strftime("%d/%m/%Y %H:%M:%S"), row.nik, row.name, row.phone]
    if row.when is None:
        return cells
    note = pick(rng, _NOTES) if rng.random() < 0.1 or row.when == "" else ""
    stray = "✓" if rng.random() < 0.01 else ""  # the column with no header
    staff = pick(rng, _STAFF) if rng.random() < 0.15 else ""
    cells += [row.when, stray, note, staff]
    while cells[-1] == "":
        cells.pop()
    return cells


def generate(
    *,
    seed: int,
    patients: int,
    rows: int,
    business_date: date,
    nik_system: str = "https://fhir.kemkes.go.id/id/nik",
    messy_share: float = 0.08,
    write_mode_national: bool = False,
) -> SandboxData:
    """Patients, the sheet (`rows` in-scope rows plus earlier days' rows), and their outcomes.

    `write_mode_national`: every Patient has a `telecom` element, because the national PATCH
    (`replace` only) cannot add one; the expected outcomes then hold in that profile too.
    """
    # Tens of thousands of nested dicts trip the cyclic GC again and again (a third of the time);
    # nothing built here is cyclic, so it is paused for the duration.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(random.Random(seed), patients, rows, business_date, nik_system,
                         messy_share, write_mode_national)  # fmt: skip
    finally:
        if was_enabled:
            gc.enable()


def _generate(
    rng: random.Random, patients: int, rows: int, business_date: date, nik_system: str,
    messy_share: float, write_mode_national: bool,
) -> SandboxData:  # fmt: skip
    counts = _allocate(rng, rows, messy_share)
    clean = rows - sum(n * KINDS[k].size for k, n in counts.items())
    extra = sum(counts[k] for k in _EXTRA_PATIENT)
    needed = clean + sum(n for k, n in counts.items() if KINDS[k].registered) + extra
    if patients < needed:
        raise ValueError(f"{rows} rows need at least {needed} patients, got {patients}")
    ids = [f"P{n:011d}" for n in rng.sample(range(10**11), patients)]
    factory = NikFactory(rng, business_date)
    registry = _registry(rng, factory, ids, patients - extra, nik_system, write_mode_national)
    pool = registry[:]
    rng.shuffle(pool)
    ctx = _Ctx(rng, business_date, nik_system, write_mode_national, factory, pool, ids)
    groups: list[list[_Row | None]] = [[ctx.row(*ctx.take())] for _ in range(clean)]
    for name, n in counts.items():
        groups += [[*KINDS[name].build(ctx, name)] for _ in range(n)]
    in_scope = [r for g in groups for r in g if r is not None]
    others = _other_date_rows(ctx, in_scope, [p for p, _ in registry])
    groups += [[r] for r in others]
    groups += [[None] for _ in range(len(in_scope) // 400)]  # blank rows amid the data
    ordered = _order(rng, groups)
    index = [p for _, p in registry] + ctx.extra
    rng.shuffle(index)
    return SandboxData(
        patients=index,
        values=[list(HEADER), *(_cells(rng, r) for r in ordered)],
        expected={i: r.outcome.value for i, r in enumerate(ordered, 2) if r and r.outcome},
        notes=_notes(counts, in_scope, others, business_date),
    )


def _notes(
    counts: dict[str, int], in_scope: list[_Row], others: list[_Row], day: date
) -> dict[str, int]:
    today = {r.nik for r in in_scope}
    month_first = day.strftime("%m/%d/%Y")
    notes = dict(counts)
    notes["other_date_rows"] = len(others)
    notes["other_date_same_nik"] = sum(1 for r in others if r.nik in today)
    notes["other_date_day_first_trap"] = sum(1 for r in others if r.when == month_first)
    notes["blank_rows"] = len(in_scope) // 400
    notes["date_serial_cells"] = sum(1 for r in in_scope if isinstance(r.when, int | float))
    notes["date_with_time_cells"] = sum(
        1 for r in in_scope if isinstance(r.when, str) and ":" in r.when
    )
    return notes


def write_patients_ndjson(path: str | Path, patients: Iterable[Json]) -> None:
    """One FHIR Patient per line (what `phonesync sandbox --patients-file` reads)."""
    with Path(path).open("w", encoding="utf-8") as out:
        for patient in patients:
            out.write(json.dumps(patient, ensure_ascii=False, separators=(",", ":")) + "\n")


def write_sheet_json(path: str | Path, values: list[list[Cell]]) -> None:
    """`{"values": [[...]]}`; numeric cells stay JSON numbers (`--sheet-file`)."""
    Path(path).write_text(json.dumps({"values": values}, ensure_ascii=False), encoding="utf-8")
