"""SheetsSource against the Sheets API stand-in over loopback (field cases C1, C10, C11, C12)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import requests
from aiohttp import web
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account
from sheets_support import HEADER, SHEET_ID, SandboxFactory, data_rows

from phonesync.errors import ConfigError, SheetLayoutError, SourceUnavailable
from phonesync.sandbox.sheets_server import SheetsFaults, make_service_account
from phonesync.sandbox.threaded import ThreadedServer
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.source.rows import Cell, SheetRow
from phonesync.source.sheets import MAX_ATTEMPTS, RetryLater, SheetsSource, classify

NIK_A = "3174014203950001"
NIK_PAPUA = "9271060312000001"
#: A date-time cell: sheets hold wall-clock values without a zone.
EVENING = datetime(2024, 3, 15, 18, 0)  # noqa: DTZ001


def test_c1_text_cells_arrive_as_the_exact_strings(sheets_sandbox: SandboxFactory) -> None:
    """C1: text NIK and phone cells keep every digit, the leading 0 and the '+'."""
    sandbox = sheets_sandbox(
        [HEADER, [NIK_A, "081234567890", "2024-03-15"], [NIK_PAPUA, "+62 812-3456-7890", 45366]]
    )
    rows = list(sandbox.source().read())
    assert rows == [
        SheetRow(row=2, nik=NIK_A, phone="081234567890", updated="2024-03-15"),
        SheetRow(row=3, nik=NIK_PAPUA, phone="+62 812-3456-7890", updated=45366),
    ]


def test_numeric_cells_arrive_as_numbers_and_a_papua_nik_arrives_changed(
    sheets_sandbox: SandboxFactory,
) -> None:
    """A NIK the sheet holds as a number arrives as a different number: why it must be refused."""
    sandbox = sheets_sandbox(
        [
            HEADER,
            [int(NIK_PAPUA), 81234567890, EVENING],
            [NIK_A, "0812", 45366.75],
        ]
    )
    first, second = sandbox.source().read()
    assert isinstance(first.nik, int)
    assert first.nik == 9271060312000000
    assert str(first.nik) != NIK_PAPUA  # silently another valid-looking NIK
    assert first.phone == 81234567890  # the C1 safety net gets an int, not text
    assert first.updated == 45366.75  # C11: a date-time cell arrives as a serial number
    assert second.updated == 45366.75


def test_c10a_500_rows_cost_at_most_two_sheets_requests(sheets_sandbox: SandboxFactory) -> None:
    """C10 A: metadata + one values request for 500 data rows; the token exchange is separate."""
    sandbox = sheets_sandbox([HEADER, *data_rows(500)])
    source = sandbox.source()
    rows = list(source.read())
    assert len(rows) == 500
    assert [r.row for r in rows] == list(range(2, 502))
    assert source.requests <= 2
    assert source.rows_read == 500
    assert sandbox.stats.read_requests <= 2
    assert sandbox.stats.token_requests == 1


@pytest.mark.parametrize(
    ("faults", "expected_waits"),
    [
        pytest.param(
            SheetsFaults(rate_limit_first=1, retry_after="7"), [7.0], id="429-retry-after-7"
        ),
        pytest.param(
            SheetsFaults(rate_limit_first=1, retry_after="86400"), [60.0], id="retry-after-capped"
        ),
        pytest.param(SheetsFaults(server_error_first=1, retry_after="7"), None, id="503-no-header"),
    ],
)
def test_c10b_backs_off_then_reads_every_row(
    sheets_sandbox: SandboxFactory, faults: SheetsFaults, expected_waits: list[float] | None
) -> None:
    """C10 B: a 429/503 first read → one wait via the sleeper, then every row is read."""
    sandbox = sheets_sandbox([HEADER, *data_rows(50)], faults=faults)
    source = sandbox.source()
    rows = list(source.read())
    assert len(rows) == 50
    assert source.retries == 1
    assert len(sandbox.waits) == 1
    if expected_waits is not None:
        assert sandbox.waits == expected_waits
    else:
        assert 1.0 <= sandbox.waits[0] <= 2.0  # first back-off: 2 s jittered down to half


def test_c10b_429_without_retry_after_uses_jittered_growing_delays(
    sheets_sandbox: SandboxFactory,
) -> None:
    """C10 B: three 429s in a row → three growing, jittered waits, then success."""
    sandbox = sheets_sandbox([HEADER, *data_rows(5)], faults=SheetsFaults(rate_limit_first=3))
    assert len(list(sandbox.source().read())) == 5
    for attempt, wait in enumerate(sandbox.waits):
        assert 2.0 * 2**attempt * 0.5 <= wait <= 2.0 * 2**attempt
    assert sandbox.stats.statuses[429] == 3


def test_persistent_429_ends_in_source_unavailable_not_an_empty_sheet(
    sheets_sandbox: SandboxFactory,
) -> None:
    """Bounded attempts: a quota that never recovers raises SourceUnavailable, no rows."""
    sandbox = sheets_sandbox([HEADER, *data_rows(5)], faults=SheetsFaults(rate_limit_first=100))
    source = sandbox.source()
    with pytest.raises(
        SourceUnavailable, match=r"after 6 attempts \(HTTP 429 RESOURCE_EXHAUSTED\)"
    ):
        list(source.read())
    assert len(sandbox.waits) == MAX_ATTEMPTS - 1
    assert all(w <= 60.0 for w in sandbox.waits)
    assert source.rows_read == 0


def test_total_retry_time_is_bounded(sheets_sandbox: SandboxFactory) -> None:
    """The waits of one request never add up to more than PHONESYNC_RETRY_TOTAL_S."""
    sandbox = sheets_sandbox(
        [HEADER, *data_rows(5)], faults=SheetsFaults(rate_limit_first=100, retry_after="30")
    )
    with pytest.raises(SourceUnavailable, match=r"still failing"):
        list(sandbox.source(retry_total_s=70).read())
    assert sandbox.waits == [30.0, 30.0]


def test_c10c_invalid_grant_names_the_cause(sheets_sandbox: SandboxFactory) -> None:
    """C10 C: the token endpoint answers invalid_grant → SourceUnavailable naming it; no reads."""
    sandbox = sheets_sandbox(
        [HEADER, *data_rows(5)], faults=SheetsFaults(token_error="invalid_grant")
    )
    with pytest.raises(SourceUnavailable) as caught:
        list(sandbox.source().read())
    message = str(caught.value)
    assert "Sheets authentication failed (invalid_grant)" in message
    assert "machine clock" in message
    assert "PRIVATE KEY" not in message
    assert sandbox.stats.read_requests == 0
    assert sandbox.waits == []  # an auth refusal is not retried in a loop


def test_key_the_sandbox_did_not_issue_is_refused(sheets_sandbox: SandboxFactory) -> None:
    """A key with the right e-mail but a foreign private key fails the JWT signature check."""
    foreign, _ = make_service_account("http://placeholder/token")
    sandbox = sheets_sandbox([HEADER, *data_rows(1)], key=foreign)
    with pytest.raises(SourceUnavailable, match=r"invalid_grant.*Invalid JWT Signature"):
        list(sandbox.source().read())


def test_c10d_permission_denied_names_the_account_to_share_with(
    sheets_sandbox: SandboxFactory,
) -> None:
    """C10 D: 403 → SourceUnavailable naming PERMISSION_DENIED and the service account."""
    sandbox = sheets_sandbox([HEADER, *data_rows(5)], faults=SheetsFaults(permission_denied=True))
    with pytest.raises(SourceUnavailable) as caught:
        list(sandbox.source().read())
    email = sandbox.key["client_email"]
    assert str(caught.value) == (
        f"no permission to read the sheet: share it with {email} (PERMISSION_DENIED)"
    )
    assert sandbox.waits == []


def test_unknown_spreadsheet_id_is_not_found(sheets_sandbox: SandboxFactory) -> None:
    """404 → SourceUnavailable telling the operator to check the sheet id."""
    sandbox = sheets_sandbox([HEADER, *data_rows(1)])
    with pytest.raises(SourceUnavailable, match=r"spreadsheet not found \(NOT_FOUND\).*SHEET_ID"):
        list(sandbox.source(sheet_id="no-such-sheet").read())


def test_unknown_tab_names_the_tabs_there_are(sheets_sandbox: SandboxFactory) -> None:
    """A tab name that is not in the spreadsheet → SourceUnavailable listing the real tabs."""
    sandbox = sheets_sandbox([HEADER, *data_rows(1)], title="Data Harian")
    with pytest.raises(SourceUnavailable, match=r'tab "Sheet1" not found.*"Data Harian"'):
        list(sandbox.source(sheet_range="Sheet1").read())


def test_tab_with_spaces_and_quotes(sheets_sandbox: SandboxFactory) -> None:
    """A tab title needing A1 quoting ("Pasien's data") is read correctly."""
    sandbox = sheets_sandbox([HEADER, *data_rows(3)], title="Pasien's data")
    assert len(list(sandbox.source(sheet_range="Pasien's data").read())) == 3


def test_reply_that_is_not_json_is_an_error(sheets_sandbox: SandboxFactory) -> None:
    """A 200 HTML page (proxy, captive portal) raises instead of reading as an empty sheet."""
    sandbox = sheets_sandbox([HEADER, *data_rows(5)], faults=SheetsFaults(not_json_first=2))
    with pytest.raises(SourceUnavailable, match=r"not the expected JSON"):
        list(sandbox.source().read())


def test_chunks_yield_every_row_exactly_once(sheets_sandbox: SandboxFactory) -> None:
    """With 100-row chunks, 250 rows on a 1000-row grid come back once each, numbered right."""
    sandbox = sheets_sandbox([HEADER, *data_rows(250)])
    source = sandbox.source(sheet_chunk_rows=100)
    rows = list(source.read())
    assert [r.row for r in rows] == list(range(2, 252))
    assert [r.nik for r in rows] == [cells[0] for cells in data_rows(250)]
    assert sandbox.stats.reads["batchGet"] == 10  # rows 1–1000 in chunks of 100
    assert source.requests == 11


def test_rows_appended_during_the_read_are_picked_up(sheets_sandbox: SandboxFactory) -> None:
    """The last chunk is open-ended, so rows added after the metadata request are read too."""
    sandbox = sheets_sandbox([HEADER, *data_rows(199)], row_count=200)
    rows = []
    for row in sandbox.source(sheet_chunk_rows=100).read():
        rows.append(row)
        if row.row == 2:  # between chunk 1 and chunk 2: the grid grows by 30 rows
            sandbox.book.values.extend(data_rows(30, first_serial=45367))
            sandbox.book.row_count = 230
    assert [r.row for r in rows] == list(range(2, 231))


def test_a_failure_after_some_chunks_raises(sheets_sandbox: SandboxFactory) -> None:
    """A read failing mid-way raises SourceUnavailable; it never looks like a shorter sheet."""
    sandbox = sheets_sandbox([HEADER, *data_rows(250)])
    seen: list[SheetRow] = []

    def consume() -> None:
        for row in sandbox.source(sheet_chunk_rows=100).read():
            seen.append(row)
            sandbox.faults.permission_denied = True  # access revoked while we read

    with pytest.raises(SourceUnavailable, match=r"PERMISSION_DENIED"):
        consume()
    assert len(seen) == 99


def test_c12_through_the_api(sheets_sandbox: SandboxFactory) -> None:
    """C12 end to end: messy header, a short row, whitespace rows to r1000 → two rows."""
    values: list[list[Cell]] = [
        ["NIK ", "No HP", "last_updated_date", "catatan", "", ""],
        [NIK_A, "0812-3456-7890", "2024-03-15"],
        ["3174013112850002", "0813-3333-4444"],
        *([[" ", "", " "]] * 997),
    ]
    source = sheets_sandbox(values).source()
    rows = list(source.read())
    assert [(r.row, r.updated) for r in rows] == [(2, "2024-03-15"), (3, None)]
    assert source.rows_read == 2


def test_duplicate_header_fails_before_any_row(sheets_sandbox: SandboxFactory) -> None:
    """Two 'No HP' columns → SheetLayoutError on the first chunk, no row yielded."""
    sandbox = sheets_sandbox([["NIK", "No HP", "last_updated_date", "No HP"], *data_rows(3)])
    with pytest.raises(SheetLayoutError, match=r'"No HP" appears in columns B and D'):
        next(iter(sandbox.source().read()))


def test_empty_sheet_is_a_layout_error(sheets_sandbox: SandboxFactory) -> None:
    """A sheet with nothing at all (not even a header) is an error, not a quiet night."""
    with pytest.raises(SheetLayoutError, match=r"row 1 is empty"):
        list(sheets_sandbox([]).source().read())


def test_header_only_sheet_reads_zero_rows(sheets_sandbox: SandboxFactory) -> None:
    """A header and no data is a legitimate empty day: zero rows, no error."""
    source = sheets_sandbox([HEADER]).source()
    assert list(source.read()) == []
    assert source.rows_read == 0


def test_unreachable_api_backs_off_then_gives_up() -> None:
    """Connection refused → bounded retries via the sleeper, then SourceUnavailable."""
    with ThreadedServer(_empty_app()) as server:
        url = server.url  # a port that is closed once the server stops
    key, _ = make_service_account(f"{url}/token")
    settings = Settings.load(
        env_file=None, sheet_id=SHEET_ID, service_account_key=json.dumps(key), sheets_api_url=url
    )
    waits: list[float] = []
    with pytest.raises(SourceUnavailable, match=r"after 6 attempts \(network: "):
        list(SheetsSource(settings, sleeper=waits.append).read())
    assert len(waits) == MAX_ATTEMPTS - 1


def test_malformed_key_is_a_configuration_error() -> None:
    """A key that is not a service-account JSON → ConfigError that does not echo the key."""
    settings = Settings.load(env_file=None, sheet_id=SHEET_ID, service_account_key="{not json")
    with pytest.raises(ConfigError, match=r"not a usable service-account key") as caught:
        SheetsSource(settings)
    assert "{not json" not in str(caught.value)


def test_open_source_picks_the_sheets_reader(sheets_sandbox: SandboxFactory) -> None:
    """open_source(settings) with source=sheets reads through the Sheets API."""
    sandbox = sheets_sandbox([HEADER, *data_rows(2)])
    source = open_source(sandbox.settings())
    assert isinstance(source, SheetsSource)
    assert len(list(source.read())) == 2


def test_formatted_value_renders_big_numbers_like_the_sheet_displays_them(
    sheets_sandbox: SandboxFactory,
) -> None:
    """FORMATTED_VALUE turns numeric NIKs into '3.17401E+15' — why phonesync never asks for it."""
    sandbox = sheets_sandbox([HEADER, [int(NIK_A), 81234567890, 45366.75], [NIK_A, "0812", 45366]])
    credentials = service_account.Credentials.from_service_account_info(
        sandbox.key, scopes=["https://www.googleapis.com/auth/spreadsheets.readonly"]
    )
    with (
        requests.Session() as token_http,
        AuthorizedSession(credentials, auth_request=Request(token_http)) as session,
    ):
        reply = session.get(
            f"{sandbox.server.url}/v4/spreadsheets/{SHEET_ID}/values/Sheet1!A2:C3",
            params={"valueRenderOption": "FORMATTED_VALUE"},
        )
    assert reply.json()["values"] == [
        ["3.17401E+15", "81234567890", "45366.75"],
        [NIK_A, "0812", "45366"],
    ]


# --- classification (no HTTP) -------------------------------------------------------------------

_EMAIL = "reader@project.iam.gserviceaccount.com"


def _google(code: int, status: str, message: str = "m", reason: str | None = None) -> str:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return json.dumps({"error": error})


@pytest.mark.parametrize(
    ("status", "headers", "body", "retry_after"),
    [
        pytest.param(429, {"Retry-After": "7"}, _google(429, "RESOURCE_EXHAUSTED"), 7.0, id="429"),
        pytest.param(503, {}, "Service Unavailable", None, id="503-text"),
        pytest.param(500, {}, _google(500, "INTERNAL"), None, id="500"),
        pytest.param(408, {"Retry-After": "soon"}, "", None, id="408-bad-header"),
    ],
)
def test_classify_retryable(
    status: int, headers: dict[str, str], body: str, retry_after: float | None
) -> None:
    """408, 429 and 5xx are worth another attempt; a readable Retry-After is passed on."""
    verdict = classify(status, headers, body, _EMAIL)
    assert isinstance(verdict, RetryLater)
    assert verdict.retry_after == retry_after


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(403, _google(403, "PERMISSION_DENIED"), f"share it with {_EMAIL}", id="403"),
        pytest.param(
            403,
            _google(403, "PERMISSION_DENIED", "API disabled", reason="SERVICE_DISABLED"),
            "Sheets API is not enabled",
            id="403-api-disabled",
        ),
        pytest.param(401, _google(401, "UNAUTHENTICATED"), "refused the access token", id="401"),
        pytest.param(404, _google(404, "NOT_FOUND"), "spreadsheet not found", id="404"),
        pytest.param(
            400,
            _google(400, "INVALID_ARGUMENT", "Unable to parse range: X!A1"),
            "tab or range",
            id="400-range",
        ),
        pytest.param(418, "<html>teapot</html>", "HTTP 418", id="other"),
    ],
)
def test_classify_refusals(status: int, body: str, expected: str) -> None:
    """Other failures raise SourceUnavailable at once, with a message saying what to do."""
    with pytest.raises(SourceUnavailable, match=expected):
        classify(status, {}, body, _EMAIL)


def test_classify_masks_personal_data_in_server_text() -> None:
    """A server message quoting a NIK or phone is masked before it reaches the error text."""
    body = _google(400, "INVALID_ARGUMENT", f"bad value {NIK_A} / +6281234567890")
    with pytest.raises(SourceUnavailable) as caught:
        classify(400, {}, body, _EMAIL)
    assert NIK_A not in str(caught.value)
    assert "6281234567890" not in str(caught.value)


def test_classify_ok_needs_a_json_object() -> None:
    """200 with a JSON object is the reply; a JSON list is not what Sheets sends."""
    assert classify(200, {}, '{"sheets": []}', _EMAIL) == {"sheets": []}
    with pytest.raises(SourceUnavailable):
        classify(200, {}, "[]", _EMAIL)


def _empty_app() -> web.Application:
    return web.Application()


def test_injected_session_carries_the_token_exchange(sheets_sandbox: SandboxFactory) -> None:
    """The `session` argument is the transport for the token exchange (and stays open)."""
    sandbox = sheets_sandbox([HEADER, *data_rows(2)])
    seen: list[str] = []
    with requests.Session() as token_http:
        token_http.hooks["response"].append(lambda reply, **_: seen.append(reply.url))
        source = SheetsSource(sandbox.settings(), sleeper=sandbox.waits.append, session=token_http)
        assert len(list(source.read())) == 2
        assert len(list(source.read())) == 2  # the caller's session is still usable
    assert seen == [sandbox.key["token_uri"]]  # one exchange: the token is reused while valid
    assert source.requests == 2  # counters restart with each read


def test_stopping_early_closes_the_session(sheets_sandbox: SandboxFactory) -> None:
    """Closing the iterator after one row releases the HTTP session (no ResourceWarning)."""
    sandbox = sheets_sandbox([HEADER, *data_rows(300)])
    rows = sandbox.source(sheet_chunk_rows=100).read()
    assert next(rows).row == 2
    rows.close()
    assert sandbox.stats.reads["batchGet"] == 1
