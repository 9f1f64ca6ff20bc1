"""Header mapping and row extraction (field case C12; domain.md §5)."""

from __future__ import annotations

import pytest

from phonesync.errors import SheetLayoutError, SourceUnavailable
from phonesync.settings import Settings
from phonesync.source.rows import Cell, ColumnMap, SheetRow, column_letter, rows_from_values

NIK_A = "3174014203950001"
NIK_B = "3174013112850002"


@pytest.fixture
def settings() -> Settings:
    return Settings.load(env_file=None)


def test_c12_trailing_space_blank_columns_short_row_and_phantom_rows(settings: Settings) -> None:
    """C12: 'NIK ' maps, blank headers are ignored, r3 is not shifted, r4–r1000 vanish."""
    header: list[Cell] = ["NIK ", "No HP", "last_updated_date", "catatan", "", ""]
    body: list[list[Cell]] = [
        [NIK_A, "0812-3456-7890", "2024-03-15"],
        [NIK_B, "0813-3333-4444"],
        *([[]] * 300),
        *([["", "", "", "", "", ""]] * 300),
        *([["  ", None, "\u00a0"]] * 397),
    ]
    columns = ColumnMap.resolve(header, settings)
    rows = list(rows_from_values(body, 2, columns))
    assert columns == ColumnMap(nik=0, phone=1, date=2)
    assert rows == [
        SheetRow(row=2, nik=NIK_A, phone="0812-3456-7890", updated="2024-03-15"),
        SheetRow(row=3, nik=NIK_B, phone="0813-3333-4444", updated=None),
    ]
    assert len(body) + 1 == 1000  # the phantom rows really reached row 1000


def test_duplicate_header_names_both_columns(settings: Settings) -> None:
    """C12 variant: two 'No HP' columns → SheetLayoutError naming the header and both columns."""
    header: list[Cell] = ["NIK", "No HP", "last_updated_date", "No HP"]
    with pytest.raises(SheetLayoutError, match=r'header "No HP" appears in columns B and D'):
        ColumnMap.resolve(header, settings)


def test_duplicate_header_differing_only_in_case_and_spaces(settings: Settings) -> None:
    """'No HP' and ' no  hp' are the same header after normalising, so they are duplicates."""
    header: list[Cell] = ["NIK", "No HP", "Tanggal Update", " no  hp"]
    with pytest.raises(SheetLayoutError, match=r"appears in columns B and D"):
        ColumnMap.resolve(header, settings)


def test_two_different_aliases_of_one_field_are_ambiguous(settings: Settings) -> None:
    """'No HP' and 'No WhatsApp' both match the phone aliases: refuse rather than guess."""
    header: list[Cell] = ["NIK", "No HP", "last_updated_date", "No WhatsApp"]
    with pytest.raises(SheetLayoutError, match=r"phone column is ambiguous") as caught:
        ColumnMap.resolve(header, settings)
    assert '"No HP" (B)' in str(caught.value)
    assert '"No WhatsApp" (D)' in str(caught.value)
    assert "PHONESYNC_COLUMNS_PHONE" in str(caught.value)


def test_configured_alias_resolves_the_ambiguity() -> None:
    """Narrowing PHONESYNC_COLUMNS_PHONE to one alias picks that column."""
    settings = Settings.load(env_file=None, columns_phone="No WhatsApp")
    header: list[Cell] = ["NIK", "No HP", "last_updated_date", "No WhatsApp"]
    assert ColumnMap.resolve(header, settings).phone == 3


def test_missing_column_names_the_aliases_tried(settings: Settings) -> None:
    """No date column → SheetLayoutError listing the date aliases and the setting."""
    header: list[Cell] = ["NIK", "No HP", "catatan"]
    with pytest.raises(SheetLayoutError) as caught:
        ColumnMap.resolve(header, settings)
    message = str(caught.value)
    assert "no date column" in message
    assert '"last_updated_date"' in message
    assert '"Tanggal Update"' in message
    assert "PHONESYNC_COLUMNS_DATE" in message
    assert isinstance(caught.value, SourceUnavailable)  # the run aborts with exit code 3


def test_all_missing_columns_are_reported_at_once(settings: Settings) -> None:
    """An empty header row names every missing field in one error."""
    with pytest.raises(SheetLayoutError) as caught:
        ColumnMap.resolve([], settings)
    message = str(caught.value)
    assert "no NIK column" in message
    assert "no phone column" in message
    assert "no date column" in message
    assert "row 1 is empty" in message


def test_layout_error_does_not_echo_data_in_row_one(settings: Settings) -> None:
    """If row 1 holds data instead of a header, the error text masks the NIK and phone."""
    with pytest.raises(SheetLayoutError) as caught:
        ColumnMap.resolve([NIK_A, "081234567890", "2024-03-15"], settings)
    assert NIK_A not in str(caught.value)
    assert "81234567890" not in str(caught.value)


def test_one_column_matching_two_fields_is_refused() -> None:
    """Overlapping alias lists must not map the NIK and the phone to the same column."""
    settings = Settings.load(env_file=None, columns_phone="NIK")
    with pytest.raises(SheetLayoutError, match=r"several fields"):
        ColumnMap.resolve(["NIK", "last_updated_date"], settings)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(["  nik", "NO HP", "LAST_UPDATED_DATE"], id="case-and-edges"),
        pytest.param(["NIK", "No\u00a0HP", "last_updated_date"], id="nbsp"),
        pytest.param(["NIK", "No \t  HP", " last_updated_date\n"], id="inner-whitespace"),
        pytest.param(["NIK", "Nomor HP", "Tanggal Update"], id="other-aliases"),
    ],
)
def test_header_matching_trims_collapses_and_ignores_case(
    header: list[Cell], settings: Settings
) -> None:
    """Header cells are trimmed, inner whitespace collapsed and compared case-insensitively."""
    assert ColumnMap.resolve(header, settings) == ColumnMap(nik=0, phone=1, date=2)


def test_non_text_header_cells_are_tolerated(settings: Settings) -> None:
    """Numbers or booleans in the header row are ignored rather than crashing the mapping."""
    header: list[Cell] = [1, True, "NIK", None, "No HP", 2.5, "last_updated_date"]
    assert ColumnMap.resolve(header, settings) == ColumnMap(nik=2, phone=4, date=6)


@pytest.mark.parametrize(
    "cells",
    [
        pytest.param([], id="omitted-row"),
        pytest.param([None], id="none"),
        pytest.param(["", " ", "\u00a0"], id="whitespace"),
        pytest.param(["", "", "", "=ROW()-1 result 7"], id="only-unmapped-column"),
    ],
)
def test_blank_rows_are_skipped(cells: list[Cell]) -> None:
    """A row whose NIK, phone and date are all blank is not yielded (nor counted)."""
    columns = ColumnMap(nik=0, phone=1, date=2)
    assert list(rows_from_values([cells], 5, columns)) == []


def test_row_numbers_count_skipped_rows() -> None:
    """Row numbers stay the sheet's own even when blank rows in between are skipped."""
    columns = ColumnMap(nik=1, phone=3, date=0)
    values: list[list[Cell]] = [[45366, NIK_A, "x", "0812"], [], [None, NIK_B]]
    rows = list(rows_from_values(values, 10, columns))
    assert rows == [
        SheetRow(row=10, nik=NIK_A, phone="0812", updated=45366),
        SheetRow(row=12, nik=NIK_B, phone=None, updated=None),
    ]


def test_cells_keep_their_types() -> None:
    """Numbers stay numbers (validation refuses a numeric NIK); only '' becomes None."""
    columns = ColumnMap(nik=0, phone=1, date=2)
    [row] = rows_from_values([[9271060312000000, 81234567890, ""]], 2, columns)
    assert row == SheetRow(row=2, nik=9271060312000000, phone=81234567890, updated=None)
    assert isinstance(row.nik, int)


@pytest.mark.parametrize(
    ("index", "letters"), [(0, "A"), (1, "B"), (25, "Z"), (26, "AA"), (701, "ZZ"), (702, "AAA")]
)
def test_column_letter(index: int, letters: str) -> None:
    """0-based column indexes print as the sheet's column letters."""
    assert column_letter(index) == letters
