"""Rows longer than their header: a CSV symptom (an unquoted delimiter inside a cell shifted the
columns), marked on the row; in a Google Sheet or an XLSX tab a notes column, never marked."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sheets_support import SandboxFactory

from phonesync.outcomes import Outcome
from phonesync.plan import build_plan
from phonesync.settings import Settings
from phonesync.source.files import FileSource
from phonesync.source.rows import Cell, ColumnMap, SheetRow, ShiftedCells, rows_from_values

NIK_A = "3174014203950001"
NIK_B = "3174013112850002"
PHONE = "081234567890"
DAY = date(2024, 3, 15)
JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture
def settings() -> Settings:
    return Settings.load(env_file=None, source="file")


def test_only_filled_cells_beyond_the_header_width_mark_a_row() -> None:
    """With a header width (the CSV reader gives one), a row with a filled cell past it is
    marked with both counts; blank cells past it (empty, None, whitespace) are not a symptom
    while the NIK and phone columns read right, a row as wide as the header or shorter neither.
    Without a width nothing is marked."""
    columns = ColumnMap(nik=1, phone=2, date=3)
    values: list[list[Cell]] = [
        ["Budi", " S.Kom", NIK_A, PHONE, "2024-03-15"],  # 5 cells, header 4
        ["Ani", NIK_A, PHONE, "2024-03-15", "", None, " \u00a0"],  # extras blank
        ["Sri", NIK_B, PHONE, "2024-03-15"],
        ["Eka", NIK_B, PHONE],
        ["Dewi", NIK_B, PHONE, "2024-03-15", None, "pindah"],  # filled after a blank one
    ]
    marked = list(rows_from_values(values, 2, columns, header_width=4, delimiter=";"))
    assert [r.shifted for r in marked] == [
        ShiftedCells(cells=5, header=4, delimiter=";"),
        None,
        None,
        None,
        ShiftedCells(cells=6, header=4, delimiter=";"),
    ]
    assert marked[0] == SheetRow(
        row=2, nik=" S.Kom", phone=NIK_A, updated=PHONE, shifted=ShiftedCells(5, 4, ";")
    )
    assert [r.shifted for r in rows_from_values(values, 2, columns)] == [None] * 5


def test_a_shift_with_the_last_column_empty_is_marked_when_the_key_cells_moved() -> None:
    """A comma in a name, the notes column empty: the only cell past the header is empty, but
    the NIK column holds a name and the cell right of it a NIK: marked. An empty cell past the
    header of a row whose NIK and phone read right (a trailing comma), or whose phone is short
    either way, is no shift: not marked."""
    columns = ColumnMap(nik=1, phone=2, date=3)  # nama, NIK, No HP, date, catatan: 5 cells
    values: list[list[Cell]] = [
        ["Budi", " S.Kom", NIK_A, PHONE, "2024-03-15", ""],  # the fresh-user test's row
        ["Budi", NIK_A, " S.Kom", PHONE, "2024-03-15", ""],  # a comma before the phone
        ["Ani", NIK_B, PHONE, "2024-03-15", "", ""],  # a trailing comma
        ["Eka", NIK_B, "0812", "2024-03-15", "", ""],  # a short phone, and a trailing comma
    ]
    marked = [r.shifted for r in rows_from_values(values, 2, columns, header_width=5)]
    assert marked == [ShiftedCells(6, 5, ","), ShiftedCells(6, 5, ","), None, None]


@pytest.mark.parametrize("d", [",", ";"])
def test_a_csv_row_with_an_unquoted_delimiter_is_marked_shifted(
    tmp_path: Path, settings: Settings, d: str
) -> None:
    """`Budi{d} S.Kom` unquoted before the NIK column: 5 cells under a 4-cell header, every cell
    after it one column to the right, marked with the counts and the file's delimiter. The same
    name quoted, a row with only empty cells past the header, and a row as wide as the header
    are not marked."""
    text = (
        f"nama{d}NIK{d}No HP{d}last_updated_date\n"
        f"Budi{d} S.Kom{d}{NIK_A}{d}{PHONE}{d}2024-03-15\n"
        f'"Budi{d} S.Kom"{d}{NIK_A}{d}{PHONE}{d}2024-03-15\n'
        f"Ani{d}{NIK_B}{d}{PHONE}{d}2024-03-15{d}{d}\n"
        f"Sri{d}{NIK_B}{d}{PHONE}{d}2024-03-15\n"
    )
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    assert list(FileSource(path, settings).read()) == [
        SheetRow(2, " S.Kom", NIK_A, PHONE, shifted=ShiftedCells(cells=5, header=4, delimiter=d)),
        SheetRow(3, NIK_A, PHONE, "2024-03-15", shifted=None),
        SheetRow(4, NIK_B, PHONE, "2024-03-15", shifted=None),
        SheetRow(5, NIK_B, PHONE, "2024-03-15", shifted=None),
    ]


def test_a_comma_in_a_semicolon_file_shifts_nothing(tmp_path: Path, settings: Settings) -> None:
    """In a `;` file a comma is ordinary text: no extra cell, no mark; a `;` in a cell is."""
    path = tmp_path / "export.csv"
    path.write_text(
        "nama;NIK;No HP;last_updated_date\n"
        f"Budi, S.Kom;{NIK_A};{PHONE};2024-03-15\n"
        f"Budi; S.Kom;{NIK_A};{PHONE};2024-03-15\n",
        encoding="utf-8",
    )
    assert [r.shifted for r in FileSource(path, settings).read()] == [
        None,
        ShiftedCells(cells=5, header=4, delimiter=";"),
    ]


def test_xlsx_cells_past_the_header_are_a_notes_column_not_a_shift(
    tmp_path: Path, settings: Settings
) -> None:
    """XLSX has no delimiter to split a cell: a filled cell right of the last header (a note
    typed in column E) leaves the row unmarked, and a comma in a cell is its text. The same row
    saved as CSV by a program that does not quote is marked."""
    header = ["nama", "NIK", "No HP", "last_updated_date"]
    row = ["Budi, S.Kom", NIK_A, PHONE, "2024-03-15", "pindah"]
    path = tmp_path / "export.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(header)
    sheet.append(row)
    workbook.save(path)
    assert list(FileSource(path, settings).read()) == [
        SheetRow(row=2, nik=NIK_A, phone=PHONE, updated="2024-03-15", shifted=None)
    ]
    unquoted = tmp_path / "export.csv"
    unquoted.write_text(f"{','.join(header)}\n{','.join(row)}\n", encoding="utf-8")
    assert [r.shifted for r in FileSource(unquoted, settings).read()] == [
        ShiftedCells(cells=6, header=4, delimiter=",")
    ]


def test_sheets_cells_past_the_header_are_not_marked_although_csv_ones_are(
    tmp_path: Path, sheets_sandbox: SandboxFactory, settings: Settings
) -> None:
    """A Google Sheet may hold filled cells beyond the last header (an unnamed notes column):
    read through the Sheets API such rows are not marked, and an invalid one keeps its usual
    reason. The very same cells in a CSV export are marked."""
    header: list[Cell] = ["NIK", "No HP", "last_updated_date"]
    body: list[list[Cell]] = [
        [NIK_A, PHONE, "2024-03-15", "catatan: nomor baru"],
        [NIK_B, "0812", "2024-03-15", "pindah", "ke Bogor"],
    ]
    sandbox = sheets_sandbox([header, *body])
    rows = list(sandbox.source().read())
    assert rows == [
        SheetRow(row=2, nik=NIK_A, phone=PHONE, updated="2024-03-15", shifted=None),
        SheetRow(row=3, nik=NIK_B, phone="0812", updated="2024-03-15", shifted=None),
    ]
    plan = build_plan(rows, business_date=DAY, zone=JAKARTA, hash_key=b"shift-test")
    assert [w.row for w in plan.work] == [2]
    [refused] = [e.result for e in plan.early]
    assert (refused.row, refused.outcome) == (3, Outcome.INVALID_PHONE)
    assert refused.reason is not None
    assert refused.reason.startswith("phone ")  # the usual reason, no word of a shift
    path = tmp_path / "export.csv"
    path.write_text(
        "\n".join(",".join(str(c) for c in r) for r in [header, *body]) + "\n", encoding="utf-8"
    )
    assert [r.shifted for r in FileSource(path, settings).read()] == [
        ShiftedCells(cells=4, header=3, delimiter=","),
        ShiftedCells(cells=5, header=3, delimiter=","),
    ]
