"""Where the day's rows come from: the Google Sheet, or a CSV/XLSX export of it.

`open_source(settings)` picks the reader named by `PHONESYNC_SOURCE`; both implement `RowSource`.
"""

from __future__ import annotations

from collections.abc import Callable

from phonesync.errors import ConfigError
from phonesync.settings import Settings
from phonesync.source.rows import Cell, ColumnMap, RowSource, SheetRow, rows_from_values

__all__ = ["Cell", "ColumnMap", "RowSource", "SheetRow", "open_source", "rows_from_values"]


def _sheets(settings: Settings) -> RowSource:
    from phonesync.source.sheets import SheetsSource  # google-auth loads only when needed

    return SheetsSource(settings)


def _file(settings: Settings) -> RowSource:
    from phonesync.source.files import FileSource

    if settings.source_file is None:
        raise ConfigError("source=file needs PHONESYNC_SOURCE_FILE (a .csv or .xlsx export)")
    return FileSource(settings.source_file, settings)


_OPENERS: dict[str, Callable[[Settings], RowSource]] = {"sheets": _sheets, "file": _file}


def open_source(settings: Settings) -> RowSource:
    """The row source `settings.source` names (`sheets` or `file`)."""
    return _OPENERS[settings.source](settings)
