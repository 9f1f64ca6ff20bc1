"""Synthetic sandbox data: valid people, every field-case anomaly, and a manifest that is right.

The checks here are deliberately independent of phonesync's own validators: a small NIK rule set,
phone reading and date reading written from domain.md, and an oracle that recomputes every row's
outcome from the raw cells and the Patients.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from phonesync.sandbox.synth import (
    KINDS,
    SandboxData,
    generate,
    write_patients_ndjson,
    write_sheet_json,
)

D = date(2024, 3, 15)
NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIK_IBU = "https://fhir.kemkes.go.id/id/nik-ibu"
IHS = "https://fhir.kemkes.go.id/id/ihs-number"
Json = dict[str, Any]
PROVINCES = {
    *range(11, 20), 21, *range(31, 37), 51, 52, 53, *range(61, 66), *range(71, 77), 81, 82,
    *range(91, 97),
}  # fmt: skip


@cache
def data(seed: int = 7, rows: int = 2000, patients: int = 2100, **kw: Any) -> SandboxData:
    return generate(seed=seed, patients=patients, rows=rows, business_date=D, **kw)


# --- an independent reading of NIKs, phones and dates (domain.md §2, §3, contract) ------------


def nik_facts(nik: str) -> tuple[str, date | None, int] | None:
    """(sex, birth day-and-month in 2000 or None for 29 Feb, 2-digit year) of a valid NIK."""
    if not re.fullmatch(r"\d{16}", nik) or int(nik[:2]) not in PROVINCES:
        return None
    if nik[2:4] == "00" or nik[4:6] == "00" or nik[12:] == "0000":
        return None
    day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    sex = "female" if day > 40 else "male"
    day -= 40 if sex == "female" else 0
    try:
        born = date(2000, month, day)  # a leap year: 29 Feb is possible in some century
    except ValueError:
        return None
    return sex, born, yy


def clean_nik(cell: object) -> str | None:
    if not isinstance(cell, str):
        return None  # anything that came through a number is refused
    text = re.sub(r"[\s\u00a0.\-]", "", cell).removeprefix("'")
    return text if nik_facts(text) else None


def phone_nsn(cell: object) -> str | None:
    """National significant number (`812…`) of an Indonesian mobile number, else None."""
    if isinstance(cell, int) and not isinstance(cell, bool):
        text = str(cell)
    elif isinstance(cell, str):
        text = re.sub(r"^(https://)?wa\.me/|^(wa|WA):?\s", "", cell.strip()).replace("(0)", "")
    else:
        return None
    if not re.fullmatch(r"\+?[\d \-]+", text):
        return None  # letters, `E+`, several numbers, …
    digits = re.sub(r"\D", "", text)
    nsn = digits[2:] if digits.startswith("62") else digits.removeprefix("0")
    return nsn if re.fullmatch(r"8[1-9]\d{7,10}", nsn) else None


def moment(cell: object) -> datetime | None:
    """When an update was made: ISO / day-first (with time) text, or a serial number."""
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return datetime(1899, 12, 30) + timedelta(days=cell)  # noqa: DTZ001 - sheet-local
    text = cell if isinstance(cell, str) else ""
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d/%m/%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)  # noqa: DTZ007 - sheet-local wall time
        except ValueError:
            continue
    return None


def columns(values: list[list[Any]]) -> dict[str, int]:
    header = values[0]
    return {name: header.index(name) for name in ("NIK", "No WhatsApp", "last_updated_date")}


def cell(row: list[Any], index: int) -> Any:
    return row[index] if index < len(row) else None


def rows_of(sd: SandboxData) -> list[tuple[int, Any, Any, Any, bool]]:
    """(sheet row, NIK cell, phone cell, date cell, has a date cell) for every non-blank row."""
    col = columns(sd.values)
    out = []
    for number, row in enumerate(sd.values[1:], 2):
        if row:
            when = cell(row, col["last_updated_date"])
            nik, phone = cell(row, col["NIK"]), cell(row, col["No WhatsApp"])
            out.append((number, nik, phone, when, len(row) > col["last_updated_date"]))
    return out


def oracle(sd: SandboxData, day: date = D) -> dict[int, str]:
    """Every in-scope row's outcome, recomputed from the raw cells and the Patients."""
    by_nik: dict[str, list[Json]] = {}
    for patient in sd.patients:
        for ident in patient["identifier"]:
            if ident["system"] == NIK_SYSTEM:
                by_nik.setdefault(ident["value"], []).append(patient)
    out: dict[int, str] = {}
    contenders: dict[str, list[tuple[datetime, int, str]]] = {}
    for number, nik_cell, phone, when, _ in rows_of(sd):
        at = moment(when)
        if at is not None and at.date() != day:
            continue  # another day: out of scope
        nik, nsn = clean_nik(nik_cell), phone_nsn(phone)
        if nik is None:
            out[number] = "invalid_nik"
        elif nsn is None:
            out[number] = "invalid_phone"
        elif at is None:
            out[number] = "invalid_date"
        else:
            contenders.setdefault(nik, []).append((at, number, nsn))
    for nik, entries in contenders.items():
        *losers, (_, number, nsn) = sorted(entries)
        out.update({n: "superseded" for _, n, _ in losers})
        out[number] = patient_outcome(by_nik.get(nik, []), nik, nsn)
    return out


def patient_outcome(found: list[Json], nik: str, nsn: str) -> str:
    if not found:
        return "patient_not_found"
    if len(found) > 1:
        return "ambiguous_patient"
    if not consistent(found[0], nik):
        return "identity_mismatch"
    numbers = {phone_nsn(t["value"]) for t in found[0].get("telecom", ()) if t["system"] == "phone"}
    return "unchanged" if nsn in numbers else "updated"


def consistent(patient: Json, nik: str) -> bool:
    facts = nik_facts(nik)
    assert facts is not None
    sex, born, yy = facts
    birth = date.fromisoformat(patient["birthDate"])
    same_day = born is not None and (birth.month, birth.day) == (born.month, born.day)
    return patient["gender"] == sex and same_day and birth.year % 100 == yy


# --- tests -------------------------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data() -> None:
    """A seed fully determines the data; another seed gives other data."""
    first = generate(seed=3, patients=600, rows=500, business_date=D)
    again = generate(seed=3, patients=600, rows=500, business_date=D)
    other = generate(seed=4, patients=600, rows=500, business_date=D)
    assert first == again
    assert json.dumps(first.patients) == json.dumps(again.patients)
    assert first.values != other.values
    assert first.patients != other.patients


def test_expected_matches_an_independent_oracle_for_every_row() -> None:
    """`expected` names exactly the in-scope rows, each with the outcome the cells imply."""
    sd = data()
    assert sd.expected == oracle(sd)
    assert len(sd.expected) == 2000


def test_expected_matches_the_oracle_for_other_seeds_and_dates() -> None:
    """The manifest holds for other seeds, dates (incl. a day-first trap date) and sizes."""
    for seed, day in ((11, date(2024, 7, 5)), (12, date(2025, 1, 1)), (13, date(2024, 2, 29))):
        sd = generate(seed=seed, patients=900, rows=800, business_date=day, messy_share=0.2)
        assert sd.expected == oracle(sd, day)
        assert len(sd.expected) == 800
        assert sd.notes["other_date_day_first_trap"] == (day == date(2024, 7, 5))


def test_other_dates_are_mixed_in_but_never_in_expected() -> None:
    """Earlier days' rows are present (some for NIKs with a row today) and out of the manifest."""
    sd = data()
    earlier = [
        number
        for number, _, _, when, _ in rows_of(sd)
        if (at := moment(when)) is not None and at.date() < D
    ]
    assert len(earlier) >= 40
    assert not set(earlier) & set(sd.expected)
    assert sd.notes["other_date_same_nik"] >= 1
    assert [] in sd.values  # a blank row in the middle, ignored by phonesync


def test_patient_niks_are_valid_unique_and_agree_with_the_record() -> None:
    """NIKs obey domain.md §2; only seeded ambiguous pairs share a NIK, only mismatches disagree."""
    sd = data()
    row_nik = {n: clean_nik(nik) for n, nik, *_ in rows_of(sd)}
    seeded_mismatch = {row_nik[n] for n, o in sd.expected.items() if o == "identity_mismatch"}
    seeded_shared = {row_nik[n] for n, o in sd.expected.items() if o == "ambiguous_patient"}
    niks = [i["value"] for p in sd.patients for i in p["identifier"] if i["system"] == NIK_SYSTEM]
    assert all(nik_facts(nik) for nik in niks)
    shared = {nik for nik, k in Counter(niks).items() if k > 1}
    assert shared == seeded_shared
    assert all(Counter(niks)[nik] == 2 for nik in shared)
    mismatched = {
        i["value"]
        for p in sd.patients
        for i in p["identifier"]
        if i["system"] == NIK_SYSTEM and not consistent(p, i["value"])
    }
    assert mismatched == seeded_mismatch
    assert len(mismatched) >= 2


def test_a_large_set_covers_all_38_provinces_both_sexes_and_all_ages() -> None:
    """20,000 Patients: every province code (Papua 91–96 and 65 included), both sexes, 1940–2024."""
    sd = generate(seed=1, patients=20_000, rows=20_000, business_date=D)
    niks = [i["value"] for p in sd.patients for i in p["identifier"] if i["system"] == NIK_SYSTEM]
    assert {int(nik[:2]) for nik in niks} == PROVINCES
    assert len(PROVINCES) == 38
    assert {p["gender"] for p in sd.patients} == {"male", "female"}
    years = [int(p["birthDate"][:4]) for p in sd.patients]
    assert min(years) == 1940
    assert max(years) == 2024
    assert all(nik_facts(nik) for nik in niks)


def test_patient_ids_are_unique_ihs_numbers() -> None:
    """Ids are `P` + 11 digits, unique, and carried as the IHS identifier."""
    sd = data()
    ids = [p["id"] for p in sd.patients]
    assert len(ids) == len(set(ids)) == 2100
    assert all(re.fullmatch(r"P\d{11}", pid) for pid in ids)
    for patient in sd.patients:
        ihs = [i["value"] for i in patient["identifier"] if i["system"] == IHS]
        assert ihs == [patient["id"]]


def test_patients_look_like_satusehat_records() -> None:
    """Profile, administrative-code address, extensions, contacts and mixed telecom formats."""
    sd = data()
    for patient in sd.patients:
        assert patient["meta"]["profile"]
        assert patient["name"][0]["text"]
        admin = patient["address"][0]["extension"][0]
        assert admin["url"].endswith("/administrativeCode")
        parts = [e["url"] for e in admin["extension"]]
        assert parts == ["province", "city", "district", "village", "rt", "rw"]
        assert {e["url"].rsplit("/", 1)[1] for e in patient["extension"]} >= {
            "birthPlace",
            "citizenshipStatus",
        }
    phones = [
        t["value"] for p in sd.patients for t in p.get("telecom", ()) if t["system"] == "phone"
    ]
    assert any(v.startswith("08") for v in phones)
    assert any(v.startswith("+62") for v in phones)
    assert any(v.startswith("62") for v in phones)
    assert any(" " in v or "-" in v for v in phones)
    assert any("telecom" not in p for p in sd.patients)
    assert any(t["system"] == "email" for p in sd.patients for t in p.get("telecom", ()))
    assert any(c.get("telecom") for p in sd.patients for c in p.get("contact", ()))
    assert any(e["url"].startswith("https://fhir.puskesmas.example.id") for p in sd.patients
               for e in p["extension"])  # fmt: skip
    names = {p["name"][0]["text"] for p in sd.patients}
    assert len(names) > 500


def test_national_write_mode_gives_every_patient_a_telecom() -> None:
    """For the replace-only PATCH profile every Patient has a `telecom` element to replace."""
    sd = generate(seed=7, patients=1100, rows=1000, business_date=D, write_mode_national=True)
    assert all(p.get("telecom") for p in sd.patients)


def test_newborn_is_registered_only_under_the_mothers_nik() -> None:
    """A row with the mother's NIK finds no Patient under the NIK system → patient_not_found."""
    sd = data()
    ibu = {i["value"] for p in sd.patients for i in p["identifier"] if i["system"] == NIK_IBU}
    not_found = {
        clean_nik(nik) for n, nik, *_ in rows_of(sd) if sd.expected.get(n) == "patient_not_found"
    }
    assert ibu & not_found


def test_header_is_forms_like_with_a_blank_cell() -> None:
    """The header has the usual columns, a blank header cell, and an unused column."""
    header = data().values[0]
    assert header[:5] == ["Timestamp", "NIK", "Nama", "No WhatsApp", "last_updated_date"]
    assert "" in header
    assert "Catatan" in header


NIK, PHONE, DATE = 1, 2, 3  # positions in the tuples of `rows_of`
BAD_NIK, BAD_PHONE, BAD_DATE = {"invalid_nik"}, {"invalid_phone"}, {"invalid_date"}
GOOD = {"updated", "unchanged", "superseded"}
Test = str | Callable[[Any], bool]

#: case → (which cell, a regex the text cell fully matches or a test of the raw cell, outcomes)
FIELD_CASES: dict[str, tuple[int, Test, set[str]]] = {
    "NIK as an integer cell": (NIK, lambda c: isinstance(c, int), BAD_NIK),
    "NIK as a float cell": (NIK, lambda c: isinstance(c, float), BAD_NIK),
    "NIK 3.17401E+15 text": (NIK, r"\d\.\d{5}E\+15", BAD_NIK),
    "NIK with 15 digits": (NIK, r"\d{15}", BAD_NIK),
    "NIK with 17 digits": (NIK, r"\d{17}", BAD_NIK),
    "NIK 16th digit zeroed": (NIK, r"\d{12}0000", BAD_NIK),
    "NIK province 00": (NIK, r"00\d{14}", BAD_NIK),
    "NIK day 35": (NIK, r"\d{6}35\d{8}", BAD_NIK),
    "NIK day 40": (NIK, r"\d{6}40\d{8}", BAD_NIK),
    "NIK month 13": (NIK, r"\d{8}13\d{6}", BAD_NIK),
    "NIK female 30 Feb": (NIK, r"\d{6}7002\d{6}", BAD_NIK),
    "NIK with |": (NIK, r"\d{16}\|.*", BAD_NIK),
    "NIK, comma, NIK": (NIK, r"\d{16},\d{16}", BAD_NIK),
    "NIK with a backslash": (NIK, r"\d{16}\\", BAD_NIK),
    "two NIKs in a cell": (NIK, r"\d{16}\D+\d{16}", BAD_NIK),
    "NIK empty": (NIK, r"[ -]*", BAD_NIK),
    "NIK with spaces": (NIK, r"\d{4}( \d{4}){3}", {"updated", "superseded"}),
    "NIK with dots": (NIK, r"\d{4}(\.\d{4}){3}", {"updated"}),
    "NIK with an apostrophe": (NIK, r"'\d{16}", {"updated"}),
    "NIK with NBSP": (NIK, r"\u00a0\d{16} ", {"updated"}),
    "phone 0812-3456-7890": (PHONE, r"08\d\d-\d{4}-\d{3,5}", GOOD),
    "phone +62 812 3456 7890": (PHONE, r"\+62 8\d\d \d{4} \d+", GOOD),
    "phone 62812… without +": (PHONE, r"628\d{8,11}", {"updated"}),
    "phone +62 (0) 812…": (PHONE, r"\+62 \(0\) 8[\d-]+", {"updated"}),
    "phone WA: 0812…": (PHONE, r"(WA:|wa|WA) 08[\d ]+", {"updated"}),
    "phone wa.me/62…": (PHONE, r"(https://)?wa\.me/628\d+", {"updated"}),
    "phone as a numeric cell": (PHONE, lambda c: isinstance(c, int), {"updated"}),
    "phone too long": (PHONE, r"08\d{12,}", BAD_PHONE),
    "phone too short": (PHONE, r"\d{4,7}", BAD_PHONE),
    "phone 0812-345": (PHONE, r"08\d\d-\d{3}", BAD_PHONE),
    "two phone numbers": (PHONE, r"08\d\d-\d{4}-\d+ ?[/,] ?08\d\d-\d{4}-\d+", BAD_PHONE),
    "phone letter O for zero": (PHONE, r"08\d*O\d*", BAD_PHONE),
    "phone 6.28123E+12": (PHONE, r"6\.\d{5}E\+1\d", BAD_PHONE),
    "phone 0800 not mobile": (PHONE, r"080[09]\d+", BAD_PHONE),
    "phone landline": (PHONE, r"0[1-79]\d{1,2}-\d{5,7}", BAD_PHONE),
    "phone foreign": (PHONE, r"\+6[05] .*", BAD_PHONE),
    "phone empty": (PHONE, r"", BAD_PHONE),
    "date 2024-02-30": (DATE, r"2024-02-30|31/04/2024", BAD_DATE),
    "date kemarin": (DATE, r"kemarin|hari ini", BAD_DATE),
    "date empty": (DATE, r"", BAD_DATE),
    "date missing (short row)": (DATE, lambda c: c is None, BAD_DATE),
    "date serial number": (DATE, lambda c: isinstance(c, float), set()),  # any outcome
    "date day-first with time": (DATE, r"15/03/2024 \d\d:\d\d:\d\d", set()),
}


def matches(test: Test, value: Any) -> bool:
    if isinstance(test, str):
        return isinstance(value, str) and re.fullmatch(test, value) is not None
    return test(value)


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_every_field_case_is_present_with_its_outcome(case: str) -> None:
    """Each messy cell of the field cases appears in 2,000 rows and gets the right outcome."""
    sd = data()
    position, test, allowed = FIELD_CASES[case]
    hits = [r[0] for r in rows_of(sd) if r[0] in sd.expected and matches(test, r[position])]
    assert hits, case
    if allowed:
        assert {sd.expected[n] for n in hits} <= allowed


def test_every_outcome_and_every_seeded_kind_is_present() -> None:
    """2,000 rows hold every seeded kind and every outcome phonesync can decide from the data."""
    sd = data()
    assert all(sd.notes[kind] >= 1 for kind in KINDS)
    outcomes = set(sd.expected.values())
    assert outcomes == {
        "updated", "unchanged", "superseded", "invalid_nik", "invalid_phone", "invalid_date",
        "patient_not_found", "ambiguous_patient", "identity_mismatch",
    }  # fmt: skip
    share = sum(1 for o in sd.expected.values() if o != "updated") / len(sd.expected)
    assert 0.05 < share < 0.12


def test_duplicates_cover_later_time_earlier_row_and_equal_times() -> None:
    """Same NIK twice: a later time in an earlier row wins; equal times → the later row wins."""
    sd = data()
    groups: dict[str, list[tuple[int, Any]]] = {}
    for number, nik, _, when, _ in rows_of(sd):
        if sd.expected.get(number) in ("updated", "superseded") and (key := clean_nik(nik)):
            groups.setdefault(key, []).append((number, when))
    dup = [g for g in groups.values() if len(g) > 1]
    assert any(sd.expected[g[0][0]] == "updated" for g in dup)  # the earlier row won on time
    equal = [g for g in dup if len(g) == 2 and g[0][1] == g[1][1]]
    assert equal
    assert all(
        sd.expected[g[0][0]] == "superseded" and sd.expected[g[1][0]] == "updated" for g in equal
    )
    assert any(len(g) == 3 for g in dup)


def test_unchanged_rows_write_the_stored_number_differently() -> None:
    """`unchanged` rows give the Patient's own number in another format than it is stored in."""
    sd = data()
    by_nik = {
        i["value"]: p for p in sd.patients for i in p["identifier"] if i["system"] == NIK_SYSTEM
    }
    unchanged = [
        (nik, phone) for n, nik, phone, *_ in rows_of(sd) if sd.expected.get(n) == "unchanged"
    ]
    assert len(unchanged) >= 10
    for nik, phone in unchanged:
        stored = [t["value"] for t in by_nik[nik]["telecom"] if t["system"] == "phone"]
        assert phone not in stored
        assert phone_nsn(phone) in {phone_nsn(v) for v in stored}


def test_messy_share_zero_gives_only_updated_rows() -> None:
    """Without seeded anomalies every in-scope row is an update."""
    sd = generate(seed=5, patients=300, rows=300, business_date=D, messy_share=0.0)
    assert set(sd.expected.values()) == {"updated"}
    assert sd.expected == oracle(sd)


def test_too_few_patients_is_refused() -> None:
    """Asking for more rows than the patients can serve fails loudly, naming the minimum."""
    with pytest.raises(ValueError, match="need at least"):
        generate(seed=1, patients=100, rows=1000, business_date=D)


def test_writers_keep_patients_and_numeric_cells(tmp_path: Path) -> None:
    """NDJSON has one Patient per line; the sheet JSON keeps numeric cells as JSON numbers."""
    sd = data()
    write_patients_ndjson(tmp_path / "patients.ndjson", sd.patients)
    write_sheet_json(tmp_path / "sheet.json", sd.values)
    lines = (tmp_path / "patients.ndjson").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == sd.patients
    values = json.loads((tmp_path / "sheet.json").read_text(encoding="utf-8"))["values"]
    assert values == sd.values
    col = columns(values)
    assert any(isinstance(cell(r, col["NIK"]), int) for r in values[1:])
    assert any(isinstance(cell(r, col["last_updated_date"]), float) for r in values[1:])
