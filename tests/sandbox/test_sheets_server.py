"""The Sheets API + OAuth token stand-in: JWT checks, A1 ranges, rendering, Google's shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from phonesync.sandbox.sheets_cells import Grid, RangeError, parse_range, render_cell
from phonesync.sandbox.sheets_server import (
    SHEETS_STATS,
    SheetBook,
    SheetsFaults,
    create_sheets_app,
    load_sheet_file,
    make_service_account,
)
from phonesync.sandbox.threaded import ThreadedServer
from phonesync.source.rows import Cell

SHEET_ID = "book-1"
SCOPES = ["https://www.googleapis.com/auth/spreadsheets.readonly"]
#: Wall-clock cells as a sheet holds them (no zone).
EVENING = datetime(2024, 3, 15, 18, 0)  # noqa: DTZ001


@pytest.fixture(scope="module")
def issued_key() -> tuple[dict[str, str], RSAPublicKey]:
    """The key the sandbox trusts (generated once: RSA keys are slow to make)."""
    return make_service_account("http://placeholder/token")


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


Serve = Callable[..., tuple[str, Any]]


@pytest.fixture
def serve(issued_key: tuple[dict[str, str], RSAPublicKey]) -> Iterator[Serve]:
    """Start the stand-in for some values; returns (base URL, app)."""
    servers: list[ThreadedServer] = []

    def start(values: list[list[Cell]], **options: Any) -> tuple[str, Any]:
        title = options.pop("title", "My Tab")
        book = SheetBook(SHEET_ID, title, values, **options.pop("book", {}))
        key, public_key = issued_key
        app = create_sheets_app(book, public_key, key["client_email"], **options)
        servers.append(ThreadedServer(app).start())
        return servers[-1].url, app

    yield start
    for server in servers:
        server.stop()


def token_for(key: dict[str, str], url: str, http: requests.Session) -> str:
    """Exchange a service-account JWT at the sandbox's /token, exactly as google-auth does."""
    info = {**key, "token_uri": f"{url}/token"}
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    credentials.refresh(Request(http))
    return str(credentials.token)


def get(http: requests.Session, url: str, token: str | None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(url, params=params, headers=headers, timeout=10)


# --- token endpoint ------------------------------------------------------------------------------


def test_issues_a_bearer_token_for_its_own_key(
    serve: Serve, issued_key: tuple[dict[str, str], RSAPublicKey], http: requests.Session
) -> None:
    """A JWT signed with the issued key gets a token that then opens the values endpoint."""
    url, app = serve([["a"]])
    token = token_for(issued_key[0], url, http)
    reply = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}/values/A1", token)
    assert reply.status_code == 200
    assert reply.json()["values"] == [["a"]]
    assert app[SHEETS_STATS].tokens_issued == 1


def test_rejects_a_key_it_did_not_issue(
    serve: Serve, issued_key: tuple[dict[str, str], RSAPublicKey], http: requests.Session
) -> None:
    """Same e-mail, different private key → 400 invalid_grant (bad signature), no token."""
    url, app = serve([["a"]])
    foreign, _ = make_service_account("http://placeholder/token", issued_key[0]["client_email"])
    with pytest.raises(auth_exceptions.RefreshError, match=r"invalid_grant.*Invalid JWT Signature"):
        token_for(foreign, url, http)
    assert app[SHEETS_STATS].tokens_issued == 0


def test_rejects_another_issuer(
    serve: Serve, issued_key: tuple[dict[str, str], RSAPublicKey], http: requests.Session
) -> None:
    """A validly signed JWT for another service account's e-mail → invalid_grant."""
    url, _ = serve([["a"]])
    impostor = {**issued_key[0], "client_email": "other@project.iam.gserviceaccount.com"}
    with pytest.raises(auth_exceptions.RefreshError, match=r"invalid_grant.*unknown issuer"):
        token_for(impostor, url, http)


def test_rejects_a_jwt_from_a_skewed_clock(
    serve: Serve, issued_key: tuple[dict[str, str], RSAPublicKey], http: requests.Session
) -> None:
    """A client clock 70 minutes behind → invalid_grant naming iat/exp, like Google."""
    url, _ = serve([["a"]], clock=lambda: time.time() + 70 * 60)
    with pytest.raises(auth_exceptions.RefreshError, match=r"invalid_grant.*iat and exp"):
        token_for(issued_key[0], url, http)


def test_token_error_fault(
    serve: Serve, issued_key: tuple[dict[str, str], RSAPublicKey], http: requests.Session
) -> None:
    """SheetsFaults(token_error=…) answers every token request with that OAuth error."""
    url, app = serve([["a"]], faults=SheetsFaults(token_error="invalid_grant"))
    reply = http.post(f"{url}/token", data={"grant_type": "x", "assertion": "y"}, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_grant"
    assert app[SHEETS_STATS].token_requests == 1


@pytest.mark.parametrize("token", [None, "ya29.made-up"], ids=["missing", "never-issued"])
def test_reads_need_an_issued_token(
    serve: Serve, http: requests.Session, token: str | None
) -> None:
    """No token or an unknown one → 401 in Google's error shape."""
    url, _ = serve([["a"]])
    reply = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}", token)
    assert reply.status_code == 401
    assert reply.json()["error"]["status"] == "UNAUTHENTICATED"
    assert reply.json()["error"]["code"] == 401


# --- reads -----------------------------------------------------------------------------------


@pytest.fixture
def reader(
    serve: Serve, issued_key: tuple[dict[str, str], RSAPublicKey], http: requests.Session
) -> Callable[..., tuple[str, str, Any]]:
    """(base URL, token, app) for a sandbox serving the given values."""

    def start(values: list[list[Cell]], **options: Any) -> tuple[str, str, Any]:
        url, app = serve(values, **options)
        return url, token_for(issued_key[0], url, http), app

    return start


GRID_VALUES: list[list[Cell]] = [
    ["h1", "h2", "h3", "h4"],
    ["a2", "b2", "c2"],
    ["a3", None, "c3", "d3"],
    ["a4"],
]
#: GRID_VALUES as the API returns them: an empty cell inside a row is "".
GRID_JSON = [["h1", "h2", "h3", "h4"], ["a2", "b2", "c2"], ["a3", "", "c3", "d3"], ["a4"]]


@pytest.mark.parametrize(
    ("a1", "returned_range", "values"),
    [
        pytest.param("'My Tab'", "'My Tab'!A1:Z1000", GRID_JSON, id="tab"),
        pytest.param("'My Tab'!A1:B2", "'My Tab'!A1:B2", [["h1", "h2"], ["a2", "b2"]], id="box"),
        pytest.param(
            "'My Tab'!A2:F",
            "'My Tab'!A2:F1000",
            [["a2", "b2", "c2"], ["a3", "", "c3", "d3"], ["a4"]],
            id="open-end",
        ),
        pytest.param("A1:C10", "'My Tab'!A1:C10", [r[:3] for r in GRID_JSON], id="first-tab"),
        pytest.param("'My Tab'!D:D", "'My Tab'!D1:D1000", [["h4"], [], ["d3"]], id="column"),
        pytest.param("'My Tab'!3:3", "'My Tab'!A3:Z3", [["a3", "", "c3", "d3"]], id="row"),
        pytest.param(
            "'My Tab'!B2:A1", "'My Tab'!A1:B2", [["h1", "h2"], ["a2", "b2"]], id="reversed"
        ),
        pytest.param("'My Tab'!E1:F5", "'My Tab'!E1:F5", None, id="empty-area"),
    ],
)
def test_a1_ranges(
    reader: Callable[..., tuple[str, str, Any]],
    http: requests.Session,
    a1: str,
    returned_range: str,
    values: list[list[Cell]] | None,
) -> None:
    """Tab, boxes, open ends, whole rows/columns, first-tab ranges; empty areas have no values."""
    url, token, _ = reader(GRID_VALUES)
    reply = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}/values/{a1}", token)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["range"] == returned_range
    assert body.get("values") == values


def test_trailing_empty_cells_and_rows_are_omitted(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """Trailing empties of a row and trailing empty rows vanish; inner empties are ''."""
    url, token, _ = reader([["a", None, "", None], ["", "b"], [None], ["x", ""], [], [None, ""]])
    reply = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}/values/'My Tab'", token)
    assert reply.json()["values"] == [["a"], ["", "b"], [], ["x"]]


def test_batch_get_several_ranges(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """values:batchGet answers one valueRange per `ranges` parameter, in order."""
    url, token, app = reader(GRID_VALUES, title="Sheet1")
    reply = get(
        http,
        f"{url}/v4/spreadsheets/{SHEET_ID}/values:batchGet",
        token,
        ranges=["Sheet1!A1:A2", "Sheet1!C3"],
        majorDimension="ROWS",
    )
    ranges = reply.json()["valueRanges"]
    assert [r["range"] for r in ranges] == ["Sheet1!A1:A2", "Sheet1!C3:C3"]
    assert [r["values"] for r in ranges] == [[["h1"], ["a2"]], [["c3"]]]
    assert app[SHEETS_STATS].reads["batchGet"] == 1


@pytest.mark.parametrize(
    ("a1", "message"),
    [
        ("Other!A1:B2", "Unable to parse range: Other!A1:B2"),
        ("Nope", "Unable to parse range: Nope"),
        ("'My Tab'!A1:Z5000", "exceeds grid limits. Max rows: 1000, max columns: 26"),
    ],
)
def test_bad_ranges_are_400(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session, a1: str, message: str
) -> None:
    """Unknown tab or unparseable range → 400 'Unable to parse range'; past the grid → 400."""
    url, token, _ = reader(GRID_VALUES)
    reply = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}/values/{a1}", token)
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert message in reply.json()["error"]["message"]


def test_unknown_spreadsheet_is_404(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """An id the sandbox does not hold → 404 NOT_FOUND."""
    url, token, _ = reader(GRID_VALUES)
    reply = get(http, f"{url}/v4/spreadsheets/other-id", token)
    assert reply.status_code == 404
    assert reply.json()["error"]["status"] == "NOT_FOUND"


def test_metadata_reports_the_grid_and_honours_fields(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """Metadata gives title and grid size (a new sheet's 1000×26, grown to fit); fields filter."""
    url, token, _ = reader([["x"] * 30] * 1200, title="Data")
    fields = "sheets.properties(title,gridProperties(rowCount,columnCount))"
    body = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}", token, fields=fields).json()
    assert list(body) == ["sheets"]
    props = body["sheets"][0]["properties"]
    assert props["title"] == "Data"
    assert props["gridProperties"] == {"rowCount": 1200, "columnCount": 30}


def test_faults_come_in_order_and_are_counted(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """rate_limit_first, then server_error_first, then normal answers; /_sandbox/stats counts."""
    faults = SheetsFaults(rate_limit_first=2, server_error_first=1, retry_after="7")
    url, token, app = reader(GRID_VALUES, faults=faults)
    statuses = [get(http, f"{url}/v4/spreadsheets/{SHEET_ID}", token) for _ in range(4)]
    assert [r.status_code for r in statuses] == [429, 429, 503, 200]
    assert statuses[0].headers["Retry-After"] == "7"
    assert statuses[0].json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    stats = http.get(f"{url}/_sandbox/stats", timeout=10).json()
    assert stats["statuses"] == {"429": 2, "503": 1, "200": 2}  # the token request is a 200 too
    assert stats["reads"] == {"metadata": 4}
    assert stats["token_requests"] == 1
    assert app[SHEETS_STATS].read_requests == 4


def test_permission_denied_fault(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """permission_denied → 403 PERMISSION_DENIED on reads."""
    url, token, _ = reader(GRID_VALUES, faults=SheetsFaults(permission_denied=True))
    reply = get(http, f"{url}/v4/spreadsheets/{SHEET_ID}/values/A1", token)
    assert reply.status_code == 403
    assert reply.json()["error"]["status"] == "PERMISSION_DENIED"


# --- numbers and rendering (no HTTP) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "unformatted", "formatted"),
    [
        pytest.param(3174014203950001, 3174014203950000, "3.17401E+15", id="nik-16-digits"),
        pytest.param(3174014203950007, 3174014203950000, "3.17401E+15", id="C2-15-digits-kept"),
        pytest.param(9271060312000001, 9271060312000000, "9.27106E+15", id="papua-past-2^53"),
        pytest.param(6281234567890, 6281234567890, "6.28123E+12", id="phone-with-62"),
        pytest.param(81234567890, 81234567890, "81234567890", id="phone-lost-its-0"),
        pytest.param(45366, 45366, "45366", id="serial"),
        pytest.param(45366.75, 45366.75, "45366.75", id="serial-with-time"),
        pytest.param(45366.0, 45366, "45366", id="integral-float"),
        pytest.param(1e15, 1000000000000000, "1E+15", id="round-power"),
        pytest.param(-0.5, -0.5, "-0.5", id="negative-fraction"),
        pytest.param(True, True, "TRUE", id="boolean"),
        pytest.param("081234567890", "081234567890", "081234567890", id="text-digits"),
        pytest.param("'3174014203950001", "'3174014203950001", "'3174014203950001", id="text"),
        pytest.param(date(2024, 3, 15), 45366, "15/03/2024", id="date"),
        pytest.param(EVENING, 45366.75, "15/03/2024 18:00:00", id="datetime"),
    ],
)
def test_render_cell(cell: Cell, unformatted: object, formatted: str) -> None:
    """Numbers are stored like Sheets (15 digits, float64) and rendered per render option."""
    assert render_cell(cell, "UNFORMATTED_VALUE", "SERIAL_NUMBER") == unformatted
    assert render_cell(cell, "FORMULA", "SERIAL_NUMBER") == unformatted
    assert render_cell(cell, "FORMATTED_VALUE", "SERIAL_NUMBER") == formatted


def test_dates_as_formatted_strings_on_request() -> None:
    """dateTimeRenderOption=FORMATTED_STRING turns date cells into text even when unformatted."""
    assert render_cell(date(2024, 3, 15), "UNFORMATTED_VALUE", "FORMATTED_STRING") == "15/03/2024"


def test_integral_numbers_are_json_integers(
    reader: Callable[..., tuple[str, str, Any]], http: requests.Session
) -> None:
    """UNFORMATTED_VALUE sends 45366, not 45366.0, and a 16-digit number without its last digit."""
    url, token, _ = reader([[45366.0, 3174014203950001]])
    reply = get(
        http,
        f"{url}/v4/spreadsheets/{SHEET_ID}/values/A1:B1",
        token,
        valueRenderOption="UNFORMATTED_VALUE",
    )
    assert '"values": [[45366, 3174014203950000]]' in reply.text


@pytest.mark.parametrize(
    ("a1", "window"),
    [
        ("Sheet1", (1, 1000, 0, 29)),
        ("Sheet1!B7", (7, 7, 1, 1)),
        ("Sheet1!A2:F", (2, 1000, 0, 5)),
        ("'Sheet1'!AA1:AB3", (1, 3, 26, 27)),
        ("b2:c3", (2, 3, 1, 2)),
    ],
)
def test_parse_range(a1: str, window: tuple[int, int, int, int]) -> None:
    """A1 ranges resolve to (first row, last row, first column, last column)."""
    resolved = parse_range(a1, Grid("Sheet1", 1000, 30))
    assert (resolved.first_row, resolved.last_row, resolved.first_col, resolved.last_col) == window


@pytest.mark.parametrize("a1", ["Sheet1!", "Sheet1!A0", "Sheet1!A", "'Sheet1", "Sheet1!A1:B2:C3"])
def test_parse_range_refuses_nonsense(a1: str) -> None:
    """Malformed A1 text is refused with Google's 'Unable to parse range'."""
    with pytest.raises(RangeError, match=r"Unable to parse range|exceeds grid"):
        parse_range(a1, Grid("Sheet1", 1000, 26))


# --- sheet files ---------------------------------------------------------------------------------


def test_load_csv_is_all_text(tmp_path: Path) -> None:
    """CSV sheet files: every cell text, exactly as written; empty cells are empty."""
    path = tmp_path / "sheet.csv"
    path.write_text("NIK;No HP\n3174014203950001;081234567890\n;x\n", encoding="utf-8")
    assert load_sheet_file(path) == [
        ["NIK", "No HP"],
        ["3174014203950001", "081234567890"],
        [None, "x"],
    ]


def test_load_json_keeps_numbers(tmp_path: Path) -> None:
    """JSON sheet files: JSON numbers are numeric cells, strings text cells."""
    path = tmp_path / "sheet.json"
    path.write_text(json.dumps({"values": [["NIK"], [9271060312000001, "0812", None, 1.5]]}))
    assert load_sheet_file(path) == [["NIK"], [9271060312000001, "0812", None, 1.5]]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("sheet.json", "{not json", r"not JSON"),
        ("sheet.json", '{"rows": []}', r'expected \{"values"'),
        ("sheet.json", '{"values": [["a", {"b": 1}]]}', r"row 1, column 2 is a dict"),
        ("sheet.xml", "<x/>", r"use .csv or .json"),
    ],
)
def test_load_sheet_file_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    """Bad sheet files raise ValueError saying what is wrong."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_sheet_file(path)
