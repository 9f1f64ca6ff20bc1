"""Read the day's rows from a CSV or XLSX export of the sheet (docs/sources.md, "File source").

CSV has no types: every cell is text, exactly as written (an empty cell is None), so a NIK column
exported from a text-formatted sheet keeps its 16 digits. XLSX keeps the workbook's types:
numbers stay int/float (so a NIK stored as a number is refused by validation) and dates stay
`datetime`. Row numbers are the file's own (header = row 1), as an operator sees them.

A CSV record with more cells than the header's cell count has its columns shifted (an
unquoted delimiter inside a cell, `Budi, S.Kom`): its `SheetRow` carries `ShiftedCells`, and an
invalid such row says so in its reason. XLSX rows are never marked: a cell cannot be split there,
and a filled cell past the last header is a notes column, as in a Google Sheet.

A formula cell gives the value the workbook saved with it. A workbook written by a program may
hold formulas without a saved value (openpyxl reads None, as for an empty cell): the workbook is
read twice in step, values and formulas, and such a cell becomes `UNSAVED_FORMULA`, which
validation refuses with a reason saying so — not "empty". A formula whose saved value is the
empty text (what spreadsheet programs save for `=IF(…;"";…)`) stays an empty cell.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import zipfile
from collections.abc import Generator, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import openpyxl

from phonesync.errors import SourceUnavailable
from phonesync.settings import Settings
from phonesync.source.rows import UNSAVED_FORMULA, Cell, ColumnMap, SheetRow, rows_from_values

DELIMITERS = (",", ";")


def pick_delimiter(header_line: str) -> str:
    """`,` or `;`: whichever splits the header into more columns (ties → `,`).

    Deterministic on purpose: `csv.Sniffer` guesses from content and can pick a character that
    happens to repeat inside phone numbers.
    """
    counts = {d: len(next(csv.reader([header_line], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], d == ","))


def csv_rows(stream: TextIO, delimiter: str | None = None) -> Iterator[list[str | None]]:
    """Records of a CSV stream (delimiter picked from the first line unless given); empty
    cells → None."""
    if delimiter is None:
        delimiter = pick_delimiter(stream.readline())
        stream.seek(0)
    for record in csv.reader(stream, delimiter=delimiter):
        yield [cell if cell != "" else None for cell in record]


class FileSource:
    """A `.csv` or `.xlsx` file → `SheetRow`s (implements `RowSource`; never sends requests)."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = Path(path)
        self._settings = settings
        self.requests = 0
        self.rows_read = 0
        #: The CSV delimiter of the last read (None for XLSX): rows longer than the header are
        #: marked only then.
        self._delimiter: str | None = None
        readers = {".csv": self._csv_records, ".xlsx": self._xlsx_records}
        reader = readers.get(self.path.suffix.lower())
        if reader is None:
            kind = self.path.suffix or "(none)"
            raise self._unreadable(f"unsupported type {kind!r}; use .csv or .xlsx")
        self._records = reader

    def read(self) -> Iterator[SheetRow]:
        """Stream the file's data rows; unreadable files raise `SourceUnavailable`."""
        self.rows_read = 0
        records = self._records()
        try:
            header = next(records, None)
            columns = ColumnMap.resolve(header or [], self._settings)
            csv_width = len(header) if header is not None and self._delimiter else None
            delimiter = self._delimiter or ","
            rows = rows_from_values(
                records, 2, columns, header_width=csv_width, delimiter=delimiter
            )
            for row in rows:
                self.rows_read += 1
                yield row
        finally:
            records.close()  # releases the file even when the caller stops early

    def _csv_records(self) -> Generator[Sequence[Cell], None, None]:
        # utf-8-sig drops a BOM (Excel's "CSV UTF-8") and reads plain UTF-8 unchanged.
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as stream:
                self._delimiter = pick_delimiter(stream.readline())
                stream.seek(0)
                yield from csv_rows(stream, self._delimiter)
        except OSError as exc:
            raise self._unreadable(exc.strerror or type(exc).__name__) from None
        except UnicodeDecodeError:
            raise self._unreadable("not UTF-8 text; export the sheet as CSV UTF-8") from None
        except csv.Error as exc:
            raise self._unreadable(f"malformed CSV ({exc})") from None

    def _xlsx_records(self) -> Generator[Sequence[Cell], None, None]:
        with contextlib.ExitStack() as books:
            # the saved values, and the formulas: both views of the same XML, row for row
            cached = books.enter_context(self._workbook(data_only=True))
            written = books.enter_context(self._workbook(data_only=False))
            # read_only mode yields gap rows too, so the enumeration matches the row numbers.
            values = self._worksheet(cached).iter_rows()
            formulas = self._worksheet(written).iter_rows(values_only=True)
            for cells, raw in itertools.zip_longest(values, formulas, fillvalue=()):
                yield [_xlsx_cell(c, f) for c, f in itertools.zip_longest(cells, raw)]

    @contextlib.contextmanager
    def _workbook(self, *, data_only: bool) -> Iterator[Any]:
        try:
            workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=data_only)
        except OSError as exc:
            raise self._unreadable(exc.strerror or type(exc).__name__) from None
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise self._unreadable(f"not a readable XLSX workbook ({type(exc).__name__})") from None
        try:
            yield workbook
        finally:
            workbook.close()

    def _worksheet(self, workbook: Any) -> Any:
        """The tab named by PHONESYNC_SHEET_RANGE, or the only tab; anything else is an error."""
        wanted = self._settings.sheet_range.strip().strip("'")
        names = list(workbook.sheetnames)
        if wanted in names:
            return workbook[wanted]
        if len(names) == 1:
            return workbook[names[0]]
        shown = ", ".join(f'"{name}"' for name in names)
        raise SourceUnavailable(
            f'source file {self.path.name}: no tab "{wanted}" (tabs: {shown}); '
            "set PHONESYNC_SHEET_RANGE"
        )

    def _unreadable(self, why: str) -> SourceUnavailable:
        return SourceUnavailable(f"cannot read source file {self.path.name}: {why}")


def _xlsx_cell(cell: Any, formula: object) -> Cell:
    """Workbook values unchanged, except types a sheet row cannot carry (times, durations).

    `cell` is the saved-values view's cell, `formula` the same cell's content in the formulas
    view. No saved value (`data_type` "n", the default: no text, number or error was saved)
    where the formulas view has a formula: `UNSAVED_FORMULA`.
    """
    value = None if cell is None else cell.value
    if value is None:
        unsaved = formula is not None and cell is not None and cell.data_type == "n"
        return UNSAVED_FORMULA if unsaved else None
    if isinstance(value, str | int | float | bool | datetime | date):
        return value
    return str(value)  # a bare time or duration in a NIK/phone/date column is refused downstream
