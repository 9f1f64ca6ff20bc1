"""Newer wins on the record itself, and in the sheet read, whatever the ledger knows.

Night 2024-03-16 applies C with ledger 1 (B, the number it replaced, keeps `use: old`,
`period.end` 2024-03-16; C carries `period.start` 2024-03-16). Then `run --date 2024-03-15` with a
fresh ledger 2 — empty, so its newer-wins knows nothing — meets the row of the 15th with the
older number A. It used to write A over C (C became `old`, ended 2024-03-15):

- with the 16th's row gone from the sheet (archived), the record itself shows the newer change
  (a retired number's `period.end`, or the new mobile's `period.start` when nothing was retired:
  a first mobile, or `old_number=drop`): the row ends `superseded`, and C stays;
- with the 16th's row still in the sheet, the plan sees the newer row first (no FHIR request).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from phonesync.ledger.store import Ledger
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, D, mobiles, night_of, nik_for, patient, run

BIRTH = date(1995, 3, 2)
NIK = nik_for(BIRTH, "female", 1)
D16 = D + timedelta(days=1)
A, B, C = "+6282222222222", "+6281111111111", "+6283333333333"
REASON = (
    "the record's numbers changed on 2024-03-16, after this run's business date 2024-03-15: "
    "a newer update is already applied (not written)"
)


def _sheet() -> list[list[Any]]:
    return [
        list(HEADER),
        [NIK, "0822-2222-2222", "15/03/2024"],  # r2: A, the older update
        [NIK, "0833-3333-3333", "16/03/2024"],  # r3: C, the newer one
    ]


def _use_ledger(sb: LocalSandbox, path: Path) -> None:
    sb.settings = sb.settings.model_copy(update={"database_url": f"sqlite:///{path.resolve()}"})


def _results(sb: LocalSandbox, run_id: str) -> dict[int, tuple[str, str | None]]:
    ledger = Ledger.open(sb.settings.database_url)
    try:
        return {r.row: (str(r.outcome), r.reason) for r in ledger.results(run_id)}
    finally:
        ledger.close()


@pytest.mark.parametrize("mode", ["put", "patch"])
def test_an_older_date_with_a_fresh_ledger_never_undoes_a_newer_night(
    tmp_path: Path, mode: str
) -> None:
    patients = [patient("P1", NIK, BIRTH, "female", B)]
    profile = FhirProfile(write_modes=frozenset({mode}))
    with LocalSandbox(patients, _sheet(), tmp_path, profile, overrides={"write_mode": mode}) as sb:
        _use_ledger(sb, tmp_path / "ledger-1.sqlite3")
        newer = run(sb, D16, night_of(D16))
        assert _results(sb, newer.stats.run_id) == {3: ("updated", None)}
        assert mobiles(sb, "P1") == [C]
        applied = sb.store.get("P1")
        assert sb.store.version_count("P1") == 2

        _use_ledger(sb, tmp_path / "ledger-2.sqlite3")  # empty: knows nothing of the 16th
        sb.book.values[2] = []  # the 16th's row is archived: only the record tells
        preview = run(sb, D, night_of(D16 + timedelta(days=1)), dry_run=True)
        assert [(p.row, p.outcome, p.would_write, p.reason) for p in preview.preview] == [
            (2, "superseded", False, REASON)
        ]
        older = run(sb, D, night_of(D16 + timedelta(days=1)))
        assert _results(sb, older.stats.run_id) == {2: ("superseded", REASON)}
        assert older.summary["outcomes"]["superseded"] == 1
        assert older.summary["outcomes"]["updated"] == 0
        assert older.summary["status"] == "succeeded"

        assert sb.store.version_count("P1") == 2  # exactly one new version: the 16th's
        assert sb.store.get("P1") == applied
        assert mobiles(sb, "P1") == [C]
        retired = [t for t in applied["telecom"] if t.get("use") == "old"] if applied else []
        assert retired == [
            {"system": "phone", "value": B, "use": "old", "period": {"end": "2024-03-16"}}
        ]
        writes = [r.method for r in sb.store.requests if r.method in ("PUT", "PATCH")]
        assert writes == [mode.upper()]


def _without_mobile(pid: str) -> dict[str, Any]:
    """A Patient with an email and no phone at all: its first mobile comes from the sheet."""
    record = patient(pid, NIK, BIRTH, "female", B)
    record["telecom"] = record["telecom"][:1]
    return record


@pytest.mark.parametrize(
    ("old_number", "first_mobile"),
    [("keep", True), ("drop", True), ("drop", False)],
)
def test_the_new_mobile_s_start_holds_off_an_older_replay_when_nothing_was_retired(
    tmp_path: Path, old_number: str, first_mobile: bool
) -> None:
    """A first mobile (nothing to retire) or `old_number=drop` (the retired number removed)
    leaves no `period.end` behind: the written entry's `period.start` (the row's date) is what
    tells the replay of the 15th, on an empty ledger, that a newer number is on the record."""
    record = _without_mobile("P1") if first_mobile else patient("P1", NIK, BIRTH, "female", B)
    overrides = {"old_number": old_number}
    with LocalSandbox([record], _sheet(), tmp_path, overrides=overrides) as sb:
        _use_ledger(sb, tmp_path / "ledger-1.sqlite3")
        run(sb, D16, night_of(D16))
        applied = sb.store.get("P1")
        assert applied is not None
        assert [t for t in applied["telecom"] if t.get("use") == "mobile"] == [
            {"system": "phone", "value": C, "use": "mobile", "rank": 1,
             "period": {"start": "2024-03-16"}}
        ]  # fmt: skip
        assert not [t for t in applied["telecom"] if t.get("use") == "old"]  # nothing retired

        _use_ledger(sb, tmp_path / "ledger-2.sqlite3")
        sb.book.values[2] = []  # the 16th's row is archived: only the record tells
        older = run(sb, D, night_of(D16 + timedelta(days=1)))
        assert _results(sb, older.stats.run_id) == {2: ("superseded", REASON)}
        assert sb.store.get("P1") == applied
        assert sb.store.version_count("P1") == 2


@pytest.mark.parametrize("old_number", ["keep", "drop"])
def test_a_newer_row_in_the_same_read_holds_off_an_older_replay(
    tmp_path: Path, old_number: str
) -> None:
    """The user test's sheet: the 15th's and the 16th's rows for one NIK, a patient without a
    mobile, the 16th applied, then the 15th replayed on an empty ledger: the 16th's row in the
    same read wins in the plan: `superseded` naming it, and not one FHIR request for the row."""
    overrides = {"old_number": old_number}
    with LocalSandbox([_without_mobile("P1")], _sheet(), tmp_path, overrides=overrides) as sb:
        _use_ledger(sb, tmp_path / "ledger-1.sqlite3")
        run(sb, D16, night_of(D16))
        applied = sb.store.get("P1")
        _use_ledger(sb, tmp_path / "ledger-2.sqlite3")
        before = sb.fhir_requests()
        older = run(sb, D, night_of(D16 + timedelta(days=1)))
        reason = (
            "row 3 for this NIK is dated 2024-03-16, after this run's date: that newer update "
            "wins (this older number is not written)"
        )
        assert _results(sb, older.stats.run_id) == {2: ("superseded", reason)}
        assert older.summary["status"] == "succeeded"
        searches = [r for r in sb.store.requests[before:] if "identifier=" in r.raw_path_qs]
        assert len(searches) <= 1  # at most the pre-flight probe, never row 2's NIK
        assert sb.store.get("P1") == applied
        assert mobiles(sb, "P1") == [C]
