"""Rows as they come out of a sheet: raw cells, the sheet's own row numbers, header mapping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

#: A cell exactly as the source delivered it. Sources never convert: a NIK that arrived as a
#: number stays a number so that validation can refuse it.
Cell = str | int | float | bool | datetime | date | None


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One data row: `row` is the sheet's row number (the header is row 1)."""

    row: int
    nik: Cell
    phone: Cell
    updated: Cell
