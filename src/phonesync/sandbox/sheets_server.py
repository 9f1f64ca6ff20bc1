"""A local stand-in for Google Sheets API v4 and Google's OAuth token endpoint (aiohttp).

Faithful where phonesync depends on it: service-account JWT grants verified like Google does,
bearer tokens required, numbers stored as Sheets stores them (15 significant digits, float64) and
rendered per `valueRenderOption`, trailing empty cells and rows omitted, Google's error JSON.
Faults (429, 5xx, 403, token errors, non-JSON replies) are switched on with `SheetsFaults`.

    POST /token                                   JWT-bearer grant → access token
    GET  /v4/spreadsheets/{id}                    metadata (`fields` honoured loosely)
    GET  /v4/spreadsheets/{id}/values/{range}     one A1 range
    GET  /v4/spreadsheets/{id}/values:batchGet    ?ranges=…&ranges=…
    GET  /_sandbox/stats                          counters (also `app[SHEETS_STATS]`)
    POST /_sandbox/sheet/edit                     {"row": N, "column": HEADER, "value": cell}
    POST /_sandbox/sheet/append                   {"rows": [{HEADER: cell, …}, …]}

The two `POST /_sandbox/sheet/…` endpoints are not Google's API: they let a process that does not
hold the `SheetBook` (the demo, a test) change the sheet between runs, as a person would.
"""

from __future__ import annotations

import csv
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from phonesync.sandbox.keys import GrantRejected, make_service_account, verify_grant
from phonesync.sandbox.sheets_cells import Grid, RangeError, parse_range, render_cell
from phonesync.source.files import csv_rows
from phonesync.source.rows import Cell

__all__ = [
    "SHEETS_STATS",
    "SheetBook",
    "SheetsFaults",
    "SheetsStats",
    "create_sheets_app",
    "load_sheet_file",
    "make_service_account",
]

TOKEN_LIFETIME_S = 3599
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class SheetBook:
    """One spreadsheet with one tab. int/float cells are numbers, str cells are text.

    `row_count`/`column_count` are the tab's grid size (default: a new sheet's 1000 × 26, grown
    to fit the values).
    """

    spreadsheet_id: str
    title: str
    values: list[list[Cell]]
    row_count: int | None = None
    column_count: int | None = None

    def grid(self) -> Grid:
        rows = max(self.row_count or 1000, len(self.values))
        columns = max(self.column_count or 26, max((len(r) for r in self.values), default=0))
        return Grid(self.title, rows, columns)


@dataclass
class SheetsFaults:
    """Failures to inject. Read requests are counted after authentication; the first
    `rate_limit_first` get 429, the next `server_error_first` get 503, the next `not_json_first`
    get a 200 HTML page."""

    rate_limit_first: int = 0
    token_error: str | None = None
    permission_denied: bool = False
    server_error_first: int = 0
    not_json_first: int = 0
    retry_after: str | None = None  # sent with the injected 429s when set


@dataclass
class SheetsStats:
    """What the sandbox saw; read it from tests or via `GET /_sandbox/stats`."""

    token_requests: int = 0
    tokens_issued: int = 0
    reads: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    cells_edited: int = 0  # POST /_sandbox/sheet/edit
    rows_appended: int = 0  # POST /_sandbox/sheet/append

    @property
    def read_requests(self) -> int:
        return sum(self.reads.values())

    def as_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs and miscounts.
        return {
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "reads": dict(self.reads),
            "read_requests": self.read_requests,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "cells_edited": self.cells_edited,
            "rows_appended": self.rows_appended,
        }


SHEETS_STATS = web.AppKey("sheets_stats", SheetsStats)


@dataclass
class _State:
    book: SheetBook
    public_key: RSAPublicKey
    client_email: str
    faults: SheetsFaults
    stats: SheetsStats
    clock: Callable[[], float]
    tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (epoch seconds)
    admitted: int = 0  # read requests that passed authentication and permission checks


_STATE = web.AppKey("sheets_state", _State)


def google_error(code: int, status: str, message: str) -> web.Response:
    """Google's error JSON: `{"error": {"code", "message", "status"}}`."""
    body = {"error": {"code": code, "message": message, "status": status}}
    return web.json_response(body, status=code)


# --- token endpoint ------------------------------------------------------------------------------


async def _token(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats.token_requests += 1
    form = await request.post()
    if state.faults.token_error is not None:
        return _grant_error(state.faults.token_error, "Invalid grant: account not found")
    if form.get("grant_type") != _JWT_GRANT:
        return _grant_error("unsupported_grant_type", "Invalid grant_type")
    url = str(request.url.with_query(None))
    try:
        verify_grant(
            str(form.get("assertion", "")), state.public_key, state.client_email, url, state.clock()
        )
    except GrantRejected as exc:
        return _grant_error("invalid_grant", str(exc))
    token = "ya29.sandbox-" + secrets.token_urlsafe(24)
    state.tokens[token] = state.clock() + TOKEN_LIFETIME_S
    state.stats.tokens_issued += 1
    return web.json_response(
        {"access_token": token, "expires_in": TOKEN_LIFETIME_S, "token_type": "Bearer"}
    )


def _grant_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


# --- reads ---------------------------------------------------------------------------------------


def _gate(request: web.Request, endpoint: str) -> web.Response | None:
    """Authentication, spreadsheet id and injected faults, in the order Google applies them."""
    state = request.app[_STATE]
    state.stats.reads[endpoint] += 1
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expiry = state.tokens.get(token) if scheme.lower() == "bearer" else None
    if expiry is None or expiry < state.clock():
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
        )
    if request.match_info["id"] != state.book.spreadsheet_id:
        return google_error(404, "NOT_FOUND", "Requested entity was not found.")
    if state.faults.permission_denied:
        return google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
    state.admitted += 1
    return _injected(state.faults, state.admitted)


def _injected(faults: SheetsFaults, served: int) -> web.Response | None:
    """The fault planned for the `served`-th admitted read, if any."""
    if served <= faults.rate_limit_first:
        response = google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
            "minute per user' of service 'sheets.googleapis.com'.",
        )
        if faults.retry_after is not None:
            response.headers["Retry-After"] = faults.retry_after
        return response
    served -= faults.rate_limit_first
    if served <= faults.server_error_first:
        return google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    if served - faults.server_error_first <= faults.not_json_first:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
    return None


@web.middleware
async def _count_statuses(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not request.path.startswith("/_sandbox/"):
        request.app[_STATE].stats.statuses[response.status] += 1
    return response


async def _metadata(request: web.Request) -> web.Response:
    refused = _gate(request, "metadata")
    if refused is not None:
        return refused
    book = request.app[_STATE].book
    grid = book.grid()
    body: dict[str, Any] = {
        "spreadsheetId": book.spreadsheet_id,
        "properties": {"title": "phonesync sandbox", "locale": "id_ID", "timeZone": "Asia/Jakarta"},
        "sheets": [
            {
                "properties": {
                    "sheetId": 0,
                    "title": grid.title,
                    "index": 0,
                    "sheetType": "GRID",
                    "gridProperties": {"rowCount": grid.rows, "columnCount": grid.columns},
                }
            }
        ],
    }
    fields = request.query.get("fields")
    if fields:  # loosely: keep the top-level parts named, as Google's field masks do
        wanted = {part.split(".")[0].split("(")[0].strip() for part in _top_level(fields)}
        body = {k: v for k, v in body.items() if k in wanted}
    return web.json_response(body)


def _top_level(fields: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in fields:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _value_range(request: web.Request, a1: str) -> dict[str, Any]:
    book = request.app[_STATE].book
    query = request.query
    window = parse_range(a1, book.grid())
    value_option = query.get("valueRenderOption", "FORMATTED_VALUE")
    datetime_option = query.get("dateTimeRenderOption", "SERIAL_NUMBER")
    rows = [
        [
            render_cell(_at(book.values, r, c), value_option, datetime_option)
            for c in range(window.first_col, window.last_col + 1)
        ]
        for r in range(window.first_row, window.last_row + 1)
    ]
    rows = _trim(rows)
    major = query.get("majorDimension", "ROWS")
    if major == "COLUMNS":
        width = max((len(r) for r in rows), default=0)
        rows = _trim([[r[c] if c < len(r) else None for r in rows] for c in range(width)])
    out: dict[str, Any] = {"range": window.a1, "majorDimension": major}
    if rows:
        out["values"] = [[("" if v is None else v) for v in row] for row in rows]
    return out


def _at(values: list[list[Cell]], row: int, col: int) -> Cell:
    if row - 1 < len(values) and col < len(values[row - 1]):
        return values[row - 1][col]
    return None


def _trim(rows: list[list[Any]]) -> list[list[Any]]:
    """Drop trailing empty cells of each row, then trailing empty rows, as Google does."""
    trimmed = []
    for row in rows:
        end = len(row)
        while end and row[end - 1] is None:
            end -= 1
        trimmed.append(row[:end])
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    return trimmed


async def _values(request: web.Request) -> web.Response:
    refused = _gate(request, "values")
    if refused is not None:
        return refused
    a1 = request.match_info["range"]
    try:
        return web.json_response(
            {"spreadsheetId": request.match_info["id"], **_value_range(request, a1)}
        )
    except RangeError as exc:
        return google_error(400, "INVALID_ARGUMENT", str(exc))


async def _batch_get(request: web.Request) -> web.Response:
    refused = _gate(request, "batchGet")
    if refused is not None:
        return refused
    ranges = request.query.getall("ranges", [])
    try:
        value_ranges = [_value_range(request, a1) for a1 in ranges]
    except RangeError as exc:
        return google_error(400, "INVALID_ARGUMENT", str(exc))
    return web.json_response(
        {"spreadsheetId": request.match_info["id"], "valueRanges": value_ranges}
    )


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].stats.as_json())


# --- sandbox-only writes -------------------------------------------------------------------------


class _BadEdit(ValueError):
    """A write request the sandbox refuses (400 INVALID_ARGUMENT)."""


def _column(book: SheetBook, name: object) -> int:
    """The position of the header cell named `name` in row 1."""
    header = book.values[0] if book.values else []
    if isinstance(name, str) and name in header:
        return header.index(name)
    raise _BadEdit(f"no column headed {name!r} in row 1")


def _cell_value(value: object) -> Cell:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _BadEdit(
        f"a cell value must be text, a number, a boolean or null, not {type(value).__name__}"
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _BadEdit("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _BadEdit("the body must be a JSON object")
    return body


def _set(row: list[Cell], column: int, value: Cell) -> None:
    row.extend([None] * (column + 1 - len(row)))
    row[column] = value


async def _edit(request: web.Request) -> web.Response:
    """One cell of an existing data row (row 2 onwards) takes a new value."""
    book = request.app[_STATE].book
    try:
        body = await _json_body(request)
        number = body.get("row")
        if (
            not isinstance(number, int)
            or isinstance(number, bool)
            or not 2 <= number <= len(book.values)
        ):
            raise _BadEdit(f"row must be a data row number from 2 to {len(book.values)}")
        column = _column(book, body.get("column"))
        _set(book.values[number - 1], column, _cell_value(body.get("value")))
    except _BadEdit as exc:
        return google_error(400, "INVALID_ARGUMENT", str(exc))
    request.app[_STATE].stats.cells_edited += 1
    return web.json_response({"row": number, "column": body["column"]})


async def _append(request: web.Request) -> web.Response:
    """Rows added after the last one, their cells named by header; answers their row numbers."""
    book = request.app[_STATE].book
    try:
        rows = (await _json_body(request)).get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise _BadEdit('expected {"rows": [{"<header>": <cell>, …}, …]}')
        new: list[list[Cell]] = []
        for cells in rows:
            row: list[Cell] = []
            for name, value in cells.items():
                _set(row, _column(book, name), _cell_value(value))
            new.append(row)
    except _BadEdit as exc:
        return google_error(400, "INVALID_ARGUMENT", str(exc))
    first = len(book.values) + 1
    book.values.extend(new)
    request.app[_STATE].stats.rows_appended += len(new)
    return web.json_response({"rows": list(range(first, first + len(new)))})


def create_sheets_app(
    book: SheetBook,
    public_key: RSAPublicKey,
    client_email: str,
    *,
    faults: SheetsFaults | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The Sheets API + token endpoint stand-in for `book`; tokens only for `client_email`."""
    stats = SheetsStats()
    app = web.Application(middlewares=[_count_statuses])
    app[_STATE] = _State(book, public_key, client_email, faults or SheetsFaults(), stats, clock)
    app[SHEETS_STATS] = stats
    app.router.add_post("/token", _token)
    app.router.add_get("/v4/spreadsheets/{id}/values:batchGet", _batch_get)
    app.router.add_get("/v4/spreadsheets/{id}/values/{range:.+}", _values)
    app.router.add_get("/v4/spreadsheets/{id}", _metadata)
    app.router.add_get("/_sandbox/stats", _stats)
    app.router.add_post("/_sandbox/sheet/edit", _edit)
    app.router.add_post("/_sandbox/sheet/append", _append)
    return app


# --- sheet files ---------------------------------------------------------------------------------


def load_sheet_file(path: Path) -> list[list[Cell]]:
    """`.csv` → every cell text (empty → empty cell); `.json` `{"values": [[…]]}` → JSON numbers
    are numeric cells. ValueError naming the problem otherwise."""
    path = Path(path)
    loaders = {".csv": _load_csv, ".json": _load_json}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise ValueError(f"{path}: use .csv or .json, not {path.suffix or '(none)'!r}")
    try:
        return loader(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def _load_csv(path: Path) -> list[list[Cell]]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        try:
            return [list(row) for row in csv_rows(stream)]
        except csv.Error as exc:
            raise ValueError(f"{path}: malformed CSV ({exc})") from None


def _load_json(path: Path) -> list[list[Cell]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
        raise ValueError(f'{path}: expected {{"values": [[...], ...]}}')
    for number, row in enumerate(values, start=1):
        for column, cell in enumerate(row, start=1):
            if cell is not None and not isinstance(cell, str | int | float | bool):
                raise ValueError(
                    f"{path}: row {number}, column {column} is a "
                    f"{type(cell).__name__}, not a cell value"
                )
    return values
