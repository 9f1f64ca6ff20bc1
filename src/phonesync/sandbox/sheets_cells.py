"""How the Sheets stand-in stores, addresses and renders cells (A1 ranges, render options).

Numbers are kept as Sheets keeps them: 15 significant digits (the rest truncated to zeros, as
spreadsheets do since Excel), then an IEEE float64, so `9271060312000001` becomes
`9271060312000000`. Rendering follows `valueRenderOption`:

- UNFORMATTED_VALUE / FORMULA: numbers as JSON numbers (integral values as integers),
  dates as serial numbers (days since 1899-12-30) unless `dateTimeRenderOption=FORMATTED_STRING`;
- FORMATTED_VALUE: what the "Automatic" format displays: integers below 10^11 plainly, larger
  numbers in scientific notation with 6 significant digits (`3.17401E+15`), fractions with up to
  10 significant digits (`45366.75`), dates as `dd/mm/yyyy` (locale id_ID). This is a faithful
  approximation of the display rules, not Google's code.

Text cells are returned as typed in every render option.
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from datetime import date, datetime

from phonesync.source.rows import Cell, UnsavedFormula, column_letter

SERIAL_EPOCH = datetime(1899, 12, 30)  # noqa: DTZ001 - serials count wall-clock days, no zone
_PRECISION = decimal.Context(prec=15, rounding=decimal.ROUND_DOWN)
_REF = re.compile(r"^([A-Za-z]*)(\d*)$")
_PLAIN_TAB = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RangeError(ValueError):
    """An A1 range the sandbox (like Google) refuses; the message is Google's wording."""


@dataclass(frozen=True, slots=True)
class Grid:
    """A tab's title and size (rows, columns), as the metadata reports them."""

    title: str
    rows: int
    columns: int


@dataclass(frozen=True, slots=True)
class Window:
    """A resolved range: rows 1-based, columns 0-based, both inclusive."""

    first_row: int
    last_row: int
    first_col: int
    last_col: int
    a1: str


# --- numbers -------------------------------------------------------------------------------------


def sheet_number(value: int | float) -> float:
    """A number as Sheets stores it: 15 significant digits (truncated), then float64."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a sheet cannot hold NaN or infinity")
    exact = decimal.Decimal(value) if isinstance(value, int) else decimal.Decimal(repr(value))
    return float(_PRECISION.plus(exact))


def json_number(value: float) -> int | float:
    """Integral values as JSON integers (`45366`, not `45366.0`), like the Sheets API."""
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


def automatic_format(value: float) -> str:
    """The text the "Automatic" number format displays."""
    if value.is_integer() and abs(value) < 1e11:
        return str(int(value))
    text = f"{value:.10g}"
    if abs(value) >= 1e11 or "e" in text:
        mantissa, _, exponent = f"{value:.5E}".partition("E")
        return f"{mantissa.rstrip('0').rstrip('.')}E{exponent}"
    return text


def serial_number(moment: date) -> float:
    """Days since 1899-12-30 (wall clock; a datetime's time is the fraction of the day)."""
    if isinstance(moment, datetime):
        delta = moment.replace(tzinfo=None) - SERIAL_EPOCH
        return round(delta.days + delta.seconds / 86400 + delta.microseconds / 8.64e10, 10)
    return float((moment - SERIAL_EPOCH.date()).days)


def _date_text(moment: date) -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%d/%m/%Y %H:%M:%S")
    return moment.strftime("%d/%m/%Y")


def render_cell(
    cell: Cell, value_option: str, datetime_option: str
) -> str | int | float | bool | None:
    """One cell as the API returns it for these render options; None = empty cell."""
    formatted = value_option == "FORMATTED_VALUE"
    if cell is None or cell == "" or isinstance(cell, UnsavedFormula):  # (XLSX files only)
        return None
    if isinstance(cell, str):
        return cell
    if isinstance(cell, bool):
        return ("TRUE" if cell else "FALSE") if formatted else cell
    if isinstance(cell, date):  # datetime is a date too
        if formatted or datetime_option == "FORMATTED_STRING":
            return _date_text(cell)
        return json_number(serial_number(cell))
    number = sheet_number(cell)
    return automatic_format(number) if formatted else json_number(number)


# --- A1 ranges -----------------------------------------------------------------------------------


def quote_title(title: str) -> str:
    """`Sheet1` stays bare; `My Tab` becomes `'My Tab'` (quotes doubled), as Google writes it."""
    return title if _PLAIN_TAB.match(title) else "'" + title.replace("'", "''") + "'"


def _split(a1: str, title: str) -> tuple[str, str]:
    """(tab, cells) of an A1 range; a bare cell range means the first tab."""
    text = a1.strip()
    if text.startswith("'"):
        match = re.fullmatch(r"'((?:[^']|'')*)'(?:!(.*))?", text)
        if match is None:
            raise RangeError(f"Unable to parse range: {a1}")
        if match.group(2) == "":
            raise RangeError(f"Unable to parse range: {a1}")
        return match.group(1).replace("''", "'"), match.group(2) or ""
    if "!" in text:
        tab, _, cells = text.partition("!")
        if not cells:
            raise RangeError(f"Unable to parse range: {a1}")
        return tab, cells
    return (text, "") if text == title else (title, text)


def _ref(text: str, a1: str) -> tuple[int | None, int | None]:
    """`B7` → (1, 7); `B` → (1, None); `7` → (None, 7)."""
    match = _REF.fullmatch(text.strip())
    if match is None or not (match.group(1) or match.group(2)):
        raise RangeError(f"Unable to parse range: {a1}")
    letters, digits = match.group(1).upper(), match.group(2)
    column = None
    if letters:
        column = 0
        for letter in letters:
            column = column * 26 + ord(letter) - ord("A") + 1
        column -= 1
    row = int(digits) if digits else None
    if row == 0:
        raise RangeError(f"Unable to parse range: {a1}")
    return column, row


def parse_range(a1: str, grid: Grid) -> Window:
    """Resolve `Tab`, `Tab!A1:Z500`, `'My Tab'!A2:F`, `A1:C10` (first tab) against the grid.

    Open ends stop at the grid's edge; explicit bounds past it are refused like Google does.
    """
    tab, cells = _split(a1, grid.title)
    if tab != grid.title:
        raise RangeError(f"Unable to parse range: {a1}")
    if not cells:
        return _window(grid, 1, grid.rows, 0, grid.columns - 1)
    start_text, colon, end_text = cells.partition(":")
    start_col, start_row = _ref(start_text, a1)
    end_col, end_row = _ref(end_text, a1) if colon else (start_col, start_row)
    if not colon and (start_col is None or start_row is None):
        raise RangeError(f"Unable to parse range: {a1}")
    first_row, first_col = start_row or 1, start_col or 0
    last_row = grid.rows if end_row is None else end_row
    last_col = grid.columns - 1 if end_col is None else end_col
    first_row, last_row = sorted((first_row, last_row))
    first_col, last_col = sorted((first_col, last_col))
    if last_row > grid.rows or last_col >= grid.columns:
        raise RangeError(
            f"Range ({quote_title(grid.title)}!{cells}) exceeds grid limits. "
            f"Max rows: {grid.rows}, max columns: {grid.columns}"
        )
    return _window(grid, first_row, last_row, first_col, last_col)


def _window(grid: Grid, first_row: int, last_row: int, first_col: int, last_col: int) -> Window:
    a1 = (
        f"{quote_title(grid.title)}!{column_letter(first_col)}{first_row}:"
        f"{column_letter(last_col)}{last_row}"
    )
    return Window(first_row, last_row, first_col, last_col, a1)
