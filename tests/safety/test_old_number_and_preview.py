"""Old-number policy in both write modes, and the dry-run preview (issue 3, items 5 and 6)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from phonesync.preview import render
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox

from .nights import HEADER, D, night_of, nik_for, patient, run

BIRTH = date(1995, 3, 2)
NIK = nik_for(BIRTH, "female", 1)
CONTACT = [{"telecom": [{"system": "phone", "value": "+6281399998888", "use": "mobile"}]}]
EMAIL = {"system": "email", "value": "p1@example.org"}
NEW = {
    "system": "phone",
    "value": "+6282222222222",
    "use": "mobile",
    "rank": 1,
    "period": {"start": "2024-03-15"},  # in use since the row's date
}
OLD_KEPT = {
    "system": "phone",
    "value": "+6281111111111",
    "use": "old",
    "period": {"end": "2024-03-15"},
}


def _final(tmp_path: Path, mode: str, old_number: str) -> dict[str, Any]:
    """The Patient after one night in this write mode and old-number policy."""
    patients = [patient("P1", NIK, BIRTH, "female", "+6281111111111")]
    sheet = [list(HEADER), [NIK, "0822-2222-2222", "15/03/2024"]]
    profile = FhirProfile(write_modes=frozenset({mode}))
    overrides = {"write_mode": mode, "old_number": old_number}
    with LocalSandbox(patients, sheet, tmp_path / mode, profile, overrides=overrides) as sb:
        outcome = run(sb, D, night_of(D))
        assert outcome.summary["outcomes"]["updated"] == 1
        assert sb.store.version_count("P1") == 2
        current = sb.store.get("P1")
    assert current is not None
    return current


@pytest.mark.parametrize(
    ("old_number", "telecom"),
    [("keep", [EMAIL, NEW, OLD_KEPT]), ("drop", [EMAIL, NEW])],
)
def test_old_number_policy_is_the_same_with_put_and_patch(
    tmp_path: Path, old_number: str, telecom: list[dict[str, Any]]
) -> None:
    """keep: `use: old` ended on D; drop: removed; new is rank 1; contacts kept; PUT = PATCH."""
    put = _final(tmp_path, "put", old_number)
    patch = _final(tmp_path, "patch", old_number)
    assert put["telecom"] == patch["telecom"] == telecom
    assert put["contact"] == patch["contact"] == CONTACT
    assert {k: v for k, v in put.items() if k != "meta"} == {
        k: v for k, v in patch.items() if k != "meta"
    }


RAW = re.compile(r"\d{9,}")  # no clear NIK or phone (masked values keep at most 6 digits in a row)


def test_dry_run_preview_lists_masked_old_and_new_numbers(tmp_path: Path) -> None:
    """Per row: masked old → masked new, or the outcome that stops it; nothing is written."""
    patients = [patient("P1", NIK, BIRTH, "female", "+6281111111111")]
    sheet = [
        list(HEADER),
        [NIK, "0822-2222-2222", "15/03/2024"],
        ["3174", "0822-2222-3333", "15/03/2024"],
    ]
    with LocalSandbox(patients, sheet, tmp_path) as sb:
        outcome = run(sb, D, night_of(D), dry_run=True)
        assert sb.store.version_count("P1") == 1
    rows = {p.row: p for p in outcome.preview}
    assert (rows[2].old_phone, rows[2].new_phone) == ("+62811****1111", "+62822****2222")
    assert (rows[2].outcome, rows[2].would_write, rows[2].patient_id) == ("updated", True, "P1")
    assert (rows[3].outcome, rows[3].would_write) == ("invalid_nik", False)
    assert rows[3].reason
    doc = json.loads(render(outcome.preview, outcome.summary, "json"))
    assert [r["row"] for r in doc["rows"]] == [2, 3]
    assert doc["summary"]["dry_run"] is True
    table = render(outcome.preview, outcome.summary, "table")
    assert "+62811****1111 → +62822****2222" in table
    for text in (json.dumps(doc), table):
        assert not RAW.search(text)


def test_real_runs_have_no_preview(tmp_path: Path) -> None:
    """Only dry runs collect the preview (a real night holds nothing extra in memory)."""
    patients = [patient("P1", NIK, BIRTH, "female", "+6281111111111")]
    sheet = [list(HEADER), [NIK, "0822-2222-2222", "15/03/2024"]]
    with LocalSandbox(patients, sheet, tmp_path) as sb:
        assert run(sb, D, night_of(D)).preview == []
