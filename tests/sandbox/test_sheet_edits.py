"""The Sheets sandbox's own write endpoints: late edits and new rows, seen by the next read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from phonesync.sandbox.sheets_server import (
    SHEETS_STATS,
    SheetBook,
    create_sheets_app,
    make_service_account,
)
from phonesync.sandbox.threaded import ThreadedServer
from phonesync.source.rows import Cell

SHEET_ID = "book-1"
HEADER: list[Cell] = ["Timestamp", "NIK", "No WhatsApp", "last_updated_date", "Catatan"]
NIK = "3174014503950001"


@pytest.fixture(scope="module")
def issued_key() -> tuple[dict[str, str], RSAPublicKey]:
    """The key the sandbox trusts (generated once: RSA keys are slow to make)."""
    return make_service_account("http://placeholder/token")


@pytest.fixture
def sheet(issued_key: tuple[dict[str, str], RSAPublicKey]) -> Iterator[tuple[str, str, Any]]:
    """(base URL, bearer token, app) for a three-row sheet on a loopback port."""
    values: list[list[Cell]] = [
        list(HEADER),
        ["15/03/2024 09:00:00", NIK, "0812-1111-0001", "15/03/2024"],
        ["15/03/2024 10:00:00", "3174010101900002", "0812-2222-0002"],
    ]
    key, public_key = issued_key
    app = create_sheets_app(SheetBook(SHEET_ID, "Sheet1", values), public_key, key["client_email"])
    server = ThreadedServer(app).start()
    try:
        info = {**key, "token_uri": f"{server.url}/token"}
        scopes = ["https://www.googleapis.com/auth/spreadsheets.readonly"]
        credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        with requests.Session() as http:
            credentials.refresh(Request(http))
        yield server.url, str(credentials.token), app
    finally:
        server.stop()


def _read(url: str, token: str) -> list[list[Any]]:
    reply = requests.get(
        f"{url}/v4/spreadsheets/{SHEET_ID}/values/Sheet1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    reply.raise_for_status()
    values: list[list[Any]] = reply.json()["values"]
    return values


def test_edit_and_append_change_what_the_next_read_returns(sheet: tuple[str, str, Any]) -> None:
    """A cell edited by header name, a short row widened, two rows appended by header name."""
    url, token, app = sheet
    edit = {"row": 2, "column": "No WhatsApp", "value": "0813-9999-0001"}
    reply = requests.post(f"{url}/_sandbox/sheet/edit", json=edit, timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"row": 2, "column": "No WhatsApp"}
    widen = {"row": 3, "column": "Catatan", "value": "telat"}
    assert requests.post(f"{url}/_sandbox/sheet/edit", json=widen, timeout=10).status_code == 200
    rows = [
        {"NIK": NIK, "No WhatsApp": "0813-9999-0003", "last_updated_date": "16/03/2024"},
        {"last_updated_date": "12/03/2024", "NIK": NIK},
    ]
    reply = requests.post(f"{url}/_sandbox/sheet/append", json={"rows": rows}, timeout=10)
    assert reply.json() == {"rows": [4, 5]}

    assert _read(url, token) == [
        HEADER,
        ["15/03/2024 09:00:00", NIK, "0813-9999-0001", "15/03/2024"],
        ["15/03/2024 10:00:00", "3174010101900002", "0812-2222-0002", "", "telat"],
        ["", NIK, "0813-9999-0003", "16/03/2024"],
        ["", NIK, "", "12/03/2024"],
    ]
    stats = requests.get(f"{url}/_sandbox/stats", timeout=10).json()
    assert (stats["cells_edited"], stats["rows_appended"]) == (2, 2)
    assert "400" not in stats["statuses"]  # /_sandbox/ requests are not counted as API answers
    assert app[SHEETS_STATS].read_requests == 1


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("edit", {"row": 1, "column": "NIK", "value": "x"}, "row must be a data row"),
        ("edit", {"row": 9, "column": "NIK", "value": "x"}, "from 2 to 3"),
        ("edit", {"row": True, "column": "NIK", "value": "x"}, "row must be"),
        ("edit", {"row": 2, "column": "Phone", "value": "x"}, "no column headed 'Phone'"),
        ("edit", {"row": 2, "column": "NIK", "value": [1]}, "not list"),
        ("edit", ["row", 2], "a JSON object"),
        ("append", {"rows": [{"HP": "x"}]}, "no column headed 'HP'"),
        ("append", {"rows": "x"}, "expected"),
    ],
)
def test_refused_writes_change_nothing(
    sheet: tuple[str, str, Any], path: str, body: object, message: str
) -> None:
    """A write naming no data row, an unknown header or a non-cell value → 400, sheet unchanged."""
    url, token, _ = sheet
    before = _read(url, token)
    reply = requests.post(f"{url}/_sandbox/sheet/{path}", json=body, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert message in reply.json()["error"]["message"]
    assert _read(url, token) == before
