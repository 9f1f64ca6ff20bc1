"""FileSource: CSV (every cell text) and XLSX (cells keep their types) exports of the sheet."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from phonesync.errors import ConfigError, SheetLayoutError, SourceUnavailable
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.source.files import FileSource, pick_delimiter
from phonesync.source.rows import SheetRow

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
