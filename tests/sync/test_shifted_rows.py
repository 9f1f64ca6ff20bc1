"""A CSV row with an unquoted comma inside a cell, end to end: `phonesync run` on the file (SQLite
ledger, sandbox FHIR server), `report`, then a replay of the night from its stored input, and
the stored input's format (old snapshots without the shift markers still load)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from phonesync.cli import main
from phonesync.crypto import Sealer, new_key
from phonesync.ledger.schema import snapshots
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.snapshot import decode_rows, encode_rows
from phonesync.source.rows import SheetRow, ShiftedCells

NIK_A = "3174014203950001"  # patient P1: a woman born 1995-03-02
NIK_B = "3174013112850002"
NIK_C = "3174010101900003"
PHONE_A, PHONE_B, PHONE_C = "081211112222", "081233334444", "081255556666"
HEADER = "nama,NIK,alamat,No HP,kota,last_updated_date,catatan"  # 7 cells
SHEET = [
    HEADER,
    f"Budi, S.Kom,{NIK_B},Jl. Melati 5,{PHONE_B},Bogor,2024-03-15,ok",  # 2: before the NIK
    f"Ani,{NIK_B},Jl. Melati 5, Bogor,{PHONE_B},Bogor,2024-03-15,ok",  # 3: before the phone
    f"Sri,{NIK_C},Jl. Mawar 1,{PHONE_C},Bogor, Jawa Barat,2024-03-15,ok",  # 4: before the date
    f"Dewi,{NIK_A},Jl. Kenanga 2,{PHONE_A},Bogor,2024-03-15,pindah, ganti nomor",  # 5: after
    f"Eka,3174,Jl. Anggrek 3,{PHONE_B},Bogor,2024-03-15,",  # 6: not shifted, a short NIK
    f"Fajar,{NIK_C},Jl. Anggrek 4,0812,Bogor,2024-03-15,,",  # 7: only a blank cell past it
]
SHIFTED = (
    "the row has 8 cells while the header has 7: an unquoted ',' (the file's delimiter) inside "
    "a cell shifted the cells after it to the right; fix the row in the file (put that cell in "
    "double quotes); as read: "
)
#: The reasons the rows get from validation alone (what the old wording was).
USUAL = {
    2: ("invalid_nik", "NIK contains letters — a NIK is 16 digits"),
    3: ("invalid_phone", "phone contains letters (keypad letters, O for 0?) — type digits only"),
    4: (
        "invalid_date",
        "last_updated_date is not a recognised date — use YYYY-MM-DD or DD/MM/YYYY "
        "(optionally with HH:MM)",
    ),
    6: ("invalid_nik", "NIK has 4 digits, expected 16"),
    7: ("invalid_phone", "phone is too short: 4 digits in its 08… form, expected 10–13"),
}


def _patient() -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": "P1",
        "identifier": [{"system": "https://fhir.kemkes.go.id/id/nik", "value": NIK_A}],
        "name": [{"text": "Pasien P1"}],
        "telecom": [{"system": "phone", "value": "+6281111111111", "use": "mobile"}],
        "gender": "female",
        "birthDate": "1995-03-02",
    }


def _sheet(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_text("\n".join(SHEET) + "\n", encoding="utf-8")
    return path


def _run_and_report(env: str, capsys: pytest.CaptureFixture[str]) -> dict[int, tuple[str, str]]:
    code = main(["--env-file", env, "run", "--date", "2024-03-15"])
    capsys.readouterr()
    assert code == 0  # (too few rows for the "most rows invalid" warning)
    assert main(["--env-file", env, "report", "latest", "--format", "json"]) == 0
    report: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return {r["row"]: (r["outcome"], r["reason"]) for r in report}


def test_a_shifted_csv_row_says_so_in_its_usual_outcome_also_when_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows 2–4 (a comma before the NIK, phone, date column) keep the outcome validation gives
    them, with a reason that names the shift and the fix first; row 5 (the comma after those
    columns) is updated; row 6 (not shifted) and row 7 (only a blank cell past the header) keep
    the usual reason. The replay of the night, from the stored input (the file deleted), gives
    the same reasons."""
    path = _sheet(tmp_path)
    expected = {
        **{n: (o, SHIFTED + r) for n, (o, r) in USUAL.items() if n in (2, 3, 4)},
        5: ("updated", ""),
        6: USUAL[6],
        7: USUAL[7],
    }
    overrides = {"source": "file", "source_file": path, "snapshot_key": new_key()}
    with LocalSandbox([_patient()], [["NIK"]], tmp_path / "sb", overrides=overrides) as sb:
        env = str(sb.write_env(tmp_path / "run.env"))
        read = _run_and_report(env, capsys)
        assert {n: (o, r or "") for n, (o, r) in read.items()} == expected
        assert sb.store.version_count("P1") == 2
        path.unlink()  # the replay reads the stored input, not the file
        replayed = _run_and_report(env, capsys)
        assert replayed[5][0] == "unchanged"  # already applied by the first run
        del read[5], replayed[5]
        assert replayed == read


def test_the_stored_input_keeps_shift_markers_beside_the_rows_of_format_1() -> None:
    """Markers come back from a snapshot; they sit under an optional key of their own, so every
    row entry keeps the 4 items older versions read, and the format stays 1."""
    rows = [
        SheetRow(2, " S.Kom", NIK_B, PHONE_B, shifted=ShiftedCells(8, 7, ",")),
        SheetRow(3, NIK_A, PHONE_A, "2024-03-15"),
        SheetRow(4, " Bogor", NIK_B, "x", shifted=ShiftedCells(6, 4, ";")),
    ]
    data = encode_rows(rows)
    assert decode_rows(data) == rows
    assert json.loads(zlib.decompress(data)) == {
        "format": 1,
        "rows": [
            [2, " S.Kom", NIK_B, PHONE_B],
            [3, NIK_A, PHONE_A, "2024-03-15"],
            [4, " Bogor", NIK_B, "x"],
        ],
        "shifted": [[0, 8, 7, ","], [2, 6, 4, ";"]],
    }
    assert "shifted" not in json.loads(zlib.decompress(encode_rows(rows[1:2])))


def test_a_snapshot_stored_before_shift_markers_still_loads_and_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A night stored by an older version (the same JSON without `shifted`) decodes to rows
    without markers, and its replay runs: every row gets the outcome it had, the shifted ones
    the usual reason (that snapshot never knew of the shift)."""
    path = _sheet(tmp_path)
    key = new_key()
    overrides = {"source": "file", "source_file": path, "snapshot_key": key}
    with LocalSandbox([_patient()], [["NIK"]], tmp_path / "sb", overrides=overrides) as sb:
        env = str(sb.write_env(tmp_path / "run.env"))
        read = _run_and_report(env, capsys)
        sealer = Sealer(key)
        ledger = Ledger.open(sb.settings.database_url)
        try:
            with ledger.engine.begin() as conn:
                [(snapshot_id, payload)] = conn.execute(
                    sa.select(snapshots.c.id, snapshots.c.payload)
                ).all()
                body = json.loads(zlib.decompress(sealer.unseal(payload)))
                assert body.pop("shifted") == [[i, 8, 7, ","] for i in range(4)]  # rows 2-5
                old = zlib.compress(json.dumps(body).encode())  # what an older version stored
                conn.execute(
                    sa.update(snapshots)
                    .where(snapshots.c.id == snapshot_id)
                    .values(payload=sealer.seal(old))
                )
        finally:
            ledger.close()
        stored = decode_rows(old)
        assert [r.row for r in stored] == [2, 3, 4, 5, 6, 7]
        assert all(r.shifted is None for r in stored)
        path.unlink()
        replayed = _run_and_report(env, capsys)
    assert {n: o for n, (o, _) in replayed.items()} == {
        **{n: o for n, (o, _) in read.items()},
        5: "unchanged",
    }
    assert {n: replayed[n] for n in USUAL} == USUAL
