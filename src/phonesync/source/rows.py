"""Rows as they come out of a sheet: raw cells, the sheet's own row numbers, header mapping."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from phonesync.errors import SheetLayoutError
from phonesync.masking import redact

if TYPE_CHECKING:
    from phonesync.settings import Settings


@dataclass(frozen=True, slots=True)
class UnsavedFormula:
    """A formula cell of an XLSX file whose value was never computed and saved.

    A workbook written by a program (not saved by a spreadsheet program) can hold formulas
    without their results. Such a cell is not empty, but what it holds is unknown: validation
    refuses it in its column's outcome with `unsaved_formula_reason`, never as "empty".
    """

    def __str__(self) -> str:
        return ""  # no value: nothing to show, masked or not


UNSAVED_FORMULA = UnsavedFormula()

#: A cell exactly as the source delivered it. Sources never convert: a NIK that arrived as a
#: number stays a number so that validation can refuse it.
Cell = str | int | float | bool | datetime | date | UnsavedFormula | None


def unsaved_formula_reason(column: str) -> str:
    """The reason for a `column` cell that is a formula with no saved value."""
    return (
        f"{column} cell is a formula with no saved value: open the file in a spreadsheet "
        "program and save it"
    )


@dataclass(frozen=True, slots=True)
class ShiftedCells:
    """A CSV record with more cells than its header: its columns are shifted.

    An unquoted delimiter inside a cell (a name `Budi, S.Kom` in a `,` file) splits that cell in
    two, and every cell after it lands one column to the right: the NIK, phone and date cells
    read are then other columns' text. Only counts and the delimiter are kept (no cell text).
    Only the CSV reader marks rows: a Google Sheet or an XLSX tab may hold filled cells past the
    last header (a notes column), and no delimiter can split a cell there.
    """

    cells: int  # the record's cells
    header: int  # the header record's cells
    delimiter: str = ","


def shifted_row_reason(shift: ShiftedCells, as_read: str) -> str:
    """The reason of an invalid row whose cells are shifted; `as_read` is the usual reason.

    The shift leads (the fix is in the row, not in the cell the usual reason names); the usual
    reason follows, so the outcome it gave still makes sense.
    """
    return (
        f"the row has {shift.cells} cells while the header has {shift.header}: an unquoted "
        f"'{shift.delimiter}' (the file's delimiter) inside a cell shifted the cells after it "
        "to the right; fix the row in the file (put that cell in double quotes); "
        f"as read: {as_read}"
    )


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One data row: `row` is the sheet's row number (the header is row 1).

    `shifted` is set by the CSV reader for a record with filled cells beyond the header
    (`ShiftedCells`): an invalid such row gets `shifted_row_reason`, a valid one is unaffected.
    """

    row: int
    nik: Cell
    phone: Cell
    updated: Cell
    shifted: ShiftedCells | None = None


# --- header mapping -----------------------------------------------------------------------------


def column_letter(index: int) -> str:
    """0 → `A`, 25 → `Z`, 26 → `AA`: how operators see a column in the sheet."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _header_key(cell: Cell) -> str:
    """Header text as matched: trimmed, inner whitespace (NBSP too) collapsed, case folded."""
    if cell is None:
        return ""
    return " ".join(str(cell).split()).casefold()


def _show_header(cell: Cell) -> str:
    return " ".join(str(cell).split())


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """0-based indexes of the NIK, phone and date columns within a row of the read range."""

    nik: int
    phone: int
    date: int

    @classmethod
    def resolve(cls, header: Sequence[Cell], settings: Settings) -> ColumnMap:
        """Map header row 1 to columns via the `columns_*` aliases; ambiguity is an error.

        Refusing (rather than picking the first match) is deliberate: a wrong phone or date column
        would write wrong numbers or mis-scope rows without any visible symptom.
        """
        fields = {
            "nik": ("NIK", "PHONESYNC_COLUMNS_NIK", settings.columns_nik),
            "phone": ("phone", "PHONESYNC_COLUMNS_PHONE", settings.columns_phone),
            "date": ("date", "PHONESYNC_COLUMNS_DATE", settings.columns_date),
        }
        found: dict[str, int] = {}
        missing: list[str] = []
        for name, (label, setting, aliases) in fields.items():
            index = _find_column(header, label, setting, aliases)
            if index is None:
                tried = ", ".join(f'"{alias}"' for alias in aliases)
                missing.append(f"no {label} column (tried {tried}; set {setting})")
            else:
                found[name] = index
        if missing:
            raise SheetLayoutError(
                "cannot map the header row: "
                + "; ".join(missing)
                + f"; header: {_describe(header)}"
            )
        _refuse_shared_column(header, found)
        return cls(nik=found["nik"], phone=found["phone"], date=found["date"])


def _find_column(
    header: Sequence[Cell], label: str, setting: str, aliases: Sequence[str]
) -> int | None:
    wanted = {_header_key(alias) for alias in aliases} - {""}
    hits = [i for i, cell in enumerate(header) if _header_key(cell) and _header_key(cell) in wanted]
    if len(hits) <= 1:
        return hits[0] if hits else None
    texts = {_header_key(header[i]) for i in hits}
    columns = " and ".join(column_letter(i) for i in hits)
    if len(texts) == 1:
        raise SheetLayoutError(
            f'header "{_show_header(header[hits[0]])}" appears in columns {columns}: '
            f"rename or delete one so the {label} column is unambiguous"
        )
    shown = ", ".join(f'"{_show_header(header[i])}" ({column_letter(i)})' for i in hits)
    raise SheetLayoutError(
        f"the {label} column is ambiguous: headers {shown} all match {setting}; "
        "keep only the alias of the column to use"
    )


def _refuse_shared_column(header: Sequence[Cell], found: dict[str, int]) -> None:
    by_column: dict[int, list[str]] = {}
    for name, index in found.items():
        by_column.setdefault(index, []).append(name)
    for index, names in by_column.items():
        if len(names) > 1:
            raise SheetLayoutError(
                f'header "{_show_header(header[index])}" ({column_letter(index)}) matches the '
                f"aliases of several fields ({', '.join(names)}): make the column aliases distinct"
            )


def _describe(header: Sequence[Cell]) -> str:
    """The header row for an error text; redacted because row 1 may hold data, not a header."""
    if not any(_header_key(cell) for cell in header):
        return "row 1 is empty"
    return redact(", ".join(f'"{_show_header(c)}"' for c in header if _header_key(c)))


# --- rows ---------------------------------------------------------------------------------------


def is_blank(cell: Cell) -> bool:
    """None, an empty string or whitespace only (NBSP included); an `UnsavedFormula` is not."""
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _cell(values: Sequence[Cell], index: int) -> Cell:
    # Sheets omits trailing empty cells, so a short row means "empty here", never a shifted row.
    value = values[index] if index < len(values) else None
    return None if value == "" else value


def _shifted(
    cells: Sequence[Cell], header_width: int, delimiter: str, columns: ColumnMap
) -> ShiftedCells | None:
    """A marker when a CSV record has more cells than the header's `header_width`: a filled
    cell past the header, or only empty ones there while the NIK or phone column reads right
    one split further (`_realigned`).

    The common shift is a comma in a name with the last column (notes) empty: only an empty
    cell past the header shows it. An empty cell past the header alone is no proof (a trailing
    comma typed by hand): then the key cells have to say so."""
    extra = len(cells) - header_width
    if extra <= 0:
        return None
    if all(is_blank(c) for c in cells[header_width:]) and not _realigned(cells, extra, columns):
        return None
    return ShiftedCells(cells=len(cells), header=header_width, delimiter=delimiter)


def _realigned(cells: Sequence[Cell], extra: int, columns: ColumnMap) -> bool:
    """Whether the NIK or the phone column holds no number while the cell `extra` further does:
    the cells from there on moved right by the extra cells."""
    return any(
        not _number_like(_cell(cells, col)) and _number_like(_cell(cells, col + extra))
        for col in (columns.nik, columns.phone)
    )


def _number_like(cell: Cell) -> bool:
    """A NIK or phone-looking cell: at least 9 digits (a date has 8), only digits, spaces, and
    + ( ) . - besides."""
    text = cell.strip() if isinstance(cell, str) else ""
    digits = sum(ch.isdigit() for ch in text)
    return digits >= 9 and all(ch.isdigit() or ch in " +().-" for ch in text)


def rows_from_values(
    values: Iterable[Sequence[Cell]],
    first_row_number: int,
    columns: ColumnMap,
    *,
    header_width: int | None = None,
    delimiter: str = ",",
) -> Iterator[SheetRow]:
    """Turn data rows into `SheetRow`s numbered from `first_row_number`.

    A row is skipped when its NIK, phone and date cells are all blank, whatever its other
    columns hold: formulas or running numbers dragged down to row 1000 must not become 997
    "invalid" rows every night. Empty strings become None (an empty cell); nothing else changes.
    A formula with no saved value (`UnsavedFormula`) is not blank: its row is kept and refused.

    `header_width` (the CSV reader only: the header record's cell count) marks a row with more
    cells than that as `shifted` (an unquoted `delimiter` inside a cell; `_shifted`). Without it
    (Sheets, XLSX) cells past the header are another column's, never a symptom.
    """
    for offset, cells in enumerate(values):
        nik = _cell(cells, columns.nik)
        phone = _cell(cells, columns.phone)
        updated = _cell(cells, columns.date)
        if is_blank(nik) and is_blank(phone) and is_blank(updated):
            continue
        shifted = (
            None if header_width is None else _shifted(cells, header_width, delimiter, columns)
        )
        yield SheetRow(
            row=first_row_number + offset, nik=nik, phone=phone, updated=updated, shifted=shifted
        )


class RowSource(Protocol):
    """Where rows come from. `read()` streams data rows (header excluded) in sheet order.

    A read failure raises `SourceUnavailable` (possibly after some rows were yielded): it never
    ends the iteration early as if the sheet were shorter.
    """

    #: Sheets API requests sent by the last `read()` (0 for files).
    requests: int
    #: Non-blank data rows yielded by the last `read()`.
    rows_read: int

    def read(self) -> Iterator[SheetRow]: ...
