"""FileSource: CSV (every cell text) and XLSX (cells keep their types) exports of the sheet."""

from __future__ import annotations

import json
import re
import zipfile
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from phonesync.cli import main
from phonesync.crypto import new_key
from phonesync.errors import ConfigError, SheetLayoutError, SourceUnavailable
from phonesync.sandbox.local import LocalSandbox
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.source.files import FileSource, pick_delimiter
from phonesync.source.rows import UNSAVED_FORMULA, SheetRow

NIK_A = "3174014203950001"
NIK_PAPUA = "9271060312000001"
#: An XLSX date cell: workbooks hold wall-clock values without a zone.
MORNING = datetime(2024, 3, 15, 8, 30)  # noqa: DTZ001


@pytest.fixture
def settings() -> Settings:
    return Settings.load(env_file=None, source="file")


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
@pytest.mark.parametrize("delimiter", [";", ","])
def test_csv_cells_are_exact_text(
    tmp_path: Path, settings: Settings, bom: bool, delimiter: str
) -> None:
    """CSV with/without BOM, `;` or `,`: cells arrive as typed, empty → None, own row numbers."""
    d = delimiter
    text = (
        f"NIK{d}No HP{d}last_updated_date{d}catatan\n"
        f"{NIK_A}{d}081234567890{d}15/03/2024{d}\n"
        f"\n"
        f"{NIK_PAPUA}{d}+62 812-3456-7890{d}{d}note\n"
        f'"3174 0142 0395 0001"{d}"0812{d}0813"{d}45366.75{d}\n'
    )
    path = tmp_path / "export.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    source = FileSource(path, settings)
    rows = list(source.read())
    assert rows == [
        SheetRow(row=2, nik=NIK_A, phone="081234567890", updated="15/03/2024"),
        SheetRow(row=4, nik=NIK_PAPUA, phone="+62 812-3456-7890", updated=None),
        SheetRow(row=5, nik="3174 0142 0395 0001", phone=f"0812{d}0813", updated="45366.75"),
    ]
    assert source.rows_read == 3
    assert source.requests == 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NIK;No HP;last_updated_date", ";"),
        ("NIK,No HP,last_updated_date", ","),
        ('"NIK, KTP";No HP;Tanggal', ";"),
        ("NIK", ","),
    ],
)
def test_pick_delimiter(line: str, expected: str) -> None:
    """The delimiter giving the header more columns wins; a tie means `,`."""
    assert pick_delimiter(line) == expected


def test_xlsx_cells_keep_their_types(tmp_path: Path, settings: Settings) -> None:
    """XLSX: a numeric NIK stays a number (and has lost its last digit), dates stay datetimes."""
    path = tmp_path / "export.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(["NIK", "No HP", "last_updated_date"])
    sheet.append([int(NIK_PAPUA), "081234567890", MORNING])
    sheet.append([])
    sheet.append([NIK_A, 81234567890, 45366])
    workbook.save(path)
    first, second = FileSource(path, settings).read()
    assert isinstance(first.nik, int | float)
    assert str(first.nik) != NIK_PAPUA
    assert first.phone == "081234567890"
    assert first.updated == MORNING
    assert second == SheetRow(row=4, nik=NIK_A, phone=81234567890, updated=45366)


def test_xlsx_picks_the_configured_tab(tmp_path: Path) -> None:
    """With several tabs, PHONESYNC_SHEET_RANGE names the one to read."""
    path = tmp_path / "book.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.title = "Notes"
    data = workbook.create_sheet("Harian")
    data.append(["NIK", "No HP", "Tanggal Update"])
    data.append([NIK_A, "0812", "2024-03-15"])
    workbook.save(path)
    settings = Settings.load(env_file=None, source="file", sheet_range="Harian")
    assert [r.nik for r in FileSource(path, settings).read()] == [NIK_A]
    other = Settings.load(env_file=None, source="file", sheet_range="Sheet1")
    with pytest.raises(SourceUnavailable, match=r'no tab "Sheet1".*"Notes", "Harian"'):
        list(FileSource(path, other).read())


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("rows.txt", b"NIK\n", r"unsupported type '.txt'", id="extension"),
        pytest.param("rows.csv", b"NIK;No HP\n\xff\xfe\x00", r"not UTF-8", id="not-utf8"),
        pytest.param("rows.xlsx", b"not a zip at all", r"not a readable XLSX", id="bad-xlsx"),
    ],
)
def test_unreadable_files_raise_source_unavailable(
    tmp_path: Path, settings: Settings, name: str, content: bytes, message: str
) -> None:
    """Unknown extension, bad encoding or a broken workbook → SourceUnavailable, never 0 rows."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceUnavailable, match=message):
        list(FileSource(path, settings).read())


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_missing_file_raises_source_unavailable(
    tmp_path: Path, settings: Settings, suffix: str
) -> None:
    """A file that is not there → SourceUnavailable naming the file."""
    with pytest.raises(SourceUnavailable, match=rf"cannot read source file absent{suffix}"):
        list(FileSource(tmp_path / f"absent{suffix}", settings).read())


def test_csv_header_trouble_is_a_layout_error(tmp_path: Path, settings: Settings) -> None:
    """C12 variant in a CSV: two 'No HP' columns → SheetLayoutError naming them."""
    path = tmp_path / "dup.csv"
    path.write_text("NIK,No HP,last_updated_date,No HP\n", encoding="utf-8")
    with pytest.raises(SheetLayoutError, match=r'"No HP" appears in columns B and D'):
        list(FileSource(path, settings).read())


def test_open_source_picks_the_file_reader(tmp_path: Path) -> None:
    """open_source with source=file reads PHONESYNC_SOURCE_FILE; without it, ConfigError."""
    path = tmp_path / "rows.csv"
    path.write_text(f"NIK,No HP,last_updated_date\n{NIK_A},0812,2024-03-15\n", encoding="utf-8")
    source = open_source(Settings.load(env_file=None, source="file", source_file=path))
    assert [r.row for r in source.read()] == [2]
    with pytest.raises(ConfigError, match=r"PHONESYNC_SOURCE_FILE"):
        open_source(Settings.load(env_file=None, source="file"))


def test_stopping_early_releases_the_workbook(tmp_path: Path, settings: Settings) -> None:
    """Closing the iterator after one row closes the file (filterwarnings=error catches leaks)."""
    path = tmp_path / "many.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.append(["NIK", "No HP", "last_updated_date"])
    for _ in range(5):
        workbook.active.append([NIK_A, "0812", "2024-03-15"])
    workbook.save(path)
    rows = FileSource(path, settings).read()
    assert next(rows).row == 2
    rows.close()


# --- XLSX formulas without a saved value --------------------------------------------------------

FORMULA_PHONE = '="0812"&"34567890"'  # what openpyxl writes: the formula, no saved value


def _save_values(path: Path, saved: dict[str, tuple[str | None, str]]) -> None:
    """Give formula cells the saved value a spreadsheet program writes: `{"B3": ("str", "")}`
    is `<c r="B3" t="str"><f>…</f><v></v></c>` (t None: a number)."""
    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    for ref, (kind, value) in saved.items():
        typed = f' t="{kind}"' if kind else ""
        cell = rf'<c r="{ref}"(?: [^>]*)?><f>(.*?)</f><v ?/>'
        xml, n = re.subn(cell, rf'<c r="{ref}"{typed}><f>\g<1></f><v>{value}</v>', xml)
        assert n == 1, ref
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, data in parts.items():
            book.writestr(name, data)


def _formula_book(path: Path) -> Path:
    """Rows 2–4: one formula cell with no saved value in the phone, NIK, date column; row 5: a
    phone formula dragged down past the data; row 6: a truly empty phone cell."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(["NIK", "No HP", "last_updated_date", "catatan"])
    sheet.append([NIK_A, FORMULA_PHONE, "2024-03-15"])
    sheet.append(['=REPT("3",16)', "081234567890", "2024-03-15"])
    sheet.append([NIK_A, "081234567890", "=DATE(2024,3,15)"])
    sheet.append([None, '=IF(A5="","",A5)', None, "=ROW()"])
    sheet.append([NIK_A, None, "2024-03-15", "no phone"])
    workbook.save(path)
    return path


def test_xlsx_formula_without_a_saved_value_is_not_an_empty_cell(
    tmp_path: Path, settings: Settings
) -> None:
    """A formula the file holds without its result reads as UNSAVED_FORMULA (openpyxl gives None,
    as for an empty cell); a truly empty cell stays None; other cells keep their values."""
    path = _formula_book(tmp_path / "generated.xlsx")
    assert list(FileSource(path, settings).read()) == [
        SheetRow(row=2, nik=NIK_A, phone=UNSAVED_FORMULA, updated="2024-03-15"),
        SheetRow(row=3, nik=UNSAVED_FORMULA, phone="081234567890", updated="2024-03-15"),
        SheetRow(row=4, nik=NIK_A, phone="081234567890", updated=UNSAVED_FORMULA),
        SheetRow(row=5, nik=None, phone=UNSAVED_FORMULA, updated=None),
        SheetRow(row=6, nik=NIK_A, phone=None, updated="2024-03-15"),
    ]


def test_xlsx_formula_with_a_saved_value_reads_that_value(
    tmp_path: Path, settings: Settings
) -> None:
    """Saved by a spreadsheet program: a formula gives its saved text or number; one whose saved
    value is the empty text is an empty cell, and a row of only those is skipped as blank."""
    path = _formula_book(tmp_path / "saved.xlsx")
    _save_values(path, {"B2": ("str", "081234567890"), "A3": ("str", NIK_A),
                        "C4": (None, "45366"), "B5": ("str", ""), "D5": (None, "5")})  # fmt: skip
    assert list(FileSource(path, settings).read()) == [
        SheetRow(row=2, nik=NIK_A, phone="081234567890", updated="2024-03-15"),
        SheetRow(row=3, nik=NIK_A, phone="081234567890", updated="2024-03-15"),
        SheetRow(row=4, nik=NIK_A, phone="081234567890", updated=45366),
        SheetRow(row=6, nik=NIK_A, phone=None, updated="2024-03-15"),
    ]


def test_a_run_on_unsaved_formulas_names_the_problem_in_each_columns_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync run` on that XLSX (SQLite ledger, sandbox FHIR server), then `report`: each
    formula row ends in its column's outcome with a reason saying to open and save the file —
    never "… is empty" (row 5: the phone formula, not its blank NIK) — also when the night is
    replayed from its frozen input; the truly empty phone cell is still "phone is empty"."""
    path = _formula_book(tmp_path / "generated.xlsx")
    save = (
        "cell is a formula with no saved value: open the file in a spreadsheet program and save it"
    )
    expected = {
        2: ("invalid_phone", f"phone {save}"),
        3: ("invalid_nik", f"NIK {save}"),
        4: ("invalid_date", f"last_updated_date {save}"),
        5: ("invalid_phone", f"phone {save}"),
        6: ("invalid_phone", "phone is empty"),
    }
    overrides = {"source": "file", "source_file": path, "snapshot_key": new_key()}
    with LocalSandbox([], [["NIK"]], tmp_path / "sb", overrides=overrides) as sb:
        env = str(sb.write_env(tmp_path / "run.env"))
        for _ in ("read", "replayed"):
            code = main(["--env-file", env, "run", "--date", "2024-03-15"])
            path.unlink(missing_ok=True)  # the replay reads the frozen input, not the file
            capsys.readouterr()
            assert code == 0  # (too few rows for the "most rows invalid" warning)
            assert main(["--env-file", env, "report", "latest", "--format", "json"]) == 0
            report = json.loads(capsys.readouterr().out)
            assert {r["row"]: (r["outcome"], r["reason"]) for r in report} == expected
