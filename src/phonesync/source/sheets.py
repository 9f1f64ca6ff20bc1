"""Read the day's rows from Google Sheets API v4 with a service account (docs/sources.md).

Read plan: one metadata request for the tab's grid size, then one values request per
`sheet_chunk_rows` rows (the first chunk includes header row 1). Rows are streamed chunk by
chunk; 500 data rows cost two Sheets requests (the token exchange is not a Sheets request).

Values are asked for with `valueRenderOption=UNFORMATTED_VALUE` and
`dateTimeRenderOption=SERIAL_NUMBER`: a cell formatted as plain text arrives as the JSON string
exactly as typed (leading 0 and `+` kept), and a cell the sheet holds as a number arrives as a
JSON number. That difference is the evidence validation needs: a NIK that arrives as a number
has been through a float and is refused; a phone number that lost its leading 0 can still be
repaired; dates arrive as serial numbers independent of the sheet's locale. FORMATTED_VALUE would
hide all of this behind locale-dependent display text (`3.17401E+15`, `15/03/2024`).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account

from phonesync.errors import ConfigError, SourceUnavailable
from phonesync.masking import redact, register_secret
from phonesync.settings import Settings
from phonesync.source.rows import (
    Cell,
    ColumnMap,
    SheetRow,
    column_letter,
    rows_from_values,
)

SCOPES = ["https://www.googleapis.com/auth/spreadsheets.readonly"]
RENDER_PARAMS = {
    "valueRenderOption": "UNFORMATTED_VALUE",
    "dateTimeRenderOption": "SERIAL_NUMBER",
    "majorDimension": "ROWS",
}
#: Attempts per Sheets request. With the growing delays below the last attempt comes about a
#: minute after the first, which is the window of the 60 reads/min per-user quota.
MAX_ATTEMPTS = 6
BASE_DELAY_S = 2.0
READ_TIMEOUT_S = 60.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_AUTH_HINTS = {
    "invalid_grant": "check the service-account key and the machine clock",
    "invalid_client": "the key was deleted or the service account disabled",
    "unauthorized_client": "the service account may not use this scope",
}
_jitter = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A failed Sheets exchange worth another attempt; `why` is already safe to show."""

    why: str
    retry_after: float | None = None


class SheetsSource:
    """Google Sheets tab → `SheetRow`s, over a service account (implements `RowSource`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleeper: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        if settings.sheet_id is None or settings.service_account_key is None:
            raise ConfigError(
                "source=sheets needs PHONESYNC_SHEET_ID and PHONESYNC_SERVICE_ACCOUNT_KEY"
            )
        self._settings = settings
        self._sheet_id: str = settings.sheet_id
        self._sleeper = sleeper
        self._token_session = session  # transport for the token exchange; owned by the caller
        self._credentials = _credentials(settings.service_account_key.get_secret_value())
        api = settings.sheets_api_url.rstrip("/")
        self._base = f"{api}/v4/spreadsheets/{quote(self._sheet_id, safe='')}"
        self.requests = 0
        self.retries = 0
        self.rows_read = 0

    @property
    def account(self) -> str:
        """The service account's e-mail: the address the sheet must be shared with."""
        return str(self._credentials.service_account_email)

    def read(self) -> Iterator[SheetRow]:
        """Stream the tab's data rows; raises `SourceUnavailable` rather than stopping short."""
        self.requests = self.retries = self.rows_read = 0
        session = self._open_session()
        try:
            yield from self._read_chunks(session)
        finally:
            session.close()  # type: ignore[no-untyped-call]  # google-auth is untyped here

    # --- read plan ---------------------------------------------------------------------------

    def _read_chunks(self, session: AuthorizedSession) -> Iterator[SheetRow]:
        tab, row_count, column_count = self._grid(session)
        chunk = self._settings.sheet_chunk_rows
        last_column = column_letter(max(column_count, 1) - 1)
        columns: ColumnMap | None = None
        first = 1
        while True:
            # Sheets refuses explicit ranges past the grid ("exceeds grid limits"), so the chunk
            # that reaches the last row is open-ended: it also picks up rows appended since the
            # metadata request. Trailing empty rows are omitted from every reply.
            last = first + chunk - 1
            final = last >= row_count
            bound = "" if final else str(last)
            values = self._values(session, f"{_quote_tab(tab)}!A{first}:{last_column}{bound}")
            data_start = first
            if columns is None:
                columns = ColumnMap.resolve(values[0] if values else [], self._settings)
                values, data_start = values[1:], 2
            for row in rows_from_values(values, data_start, columns):
                self.rows_read += 1
                yield row
            if final:
                return
            first = last + 1

    def _grid(self, session: AuthorizedSession) -> tuple[str, int, int]:
        """The tab's title, row count and column count from one metadata request."""
        fields = "sheets.properties(title,gridProperties(rowCount,columnCount))"
        body = self._get_json(session, self._base, {"fields": fields})
        wanted = _tab_name(self._settings.sheet_range)
        tabs: dict[str, tuple[int, int]] = {}
        try:
            for sheet in body.get("sheets", []):
                props = sheet["properties"]
                grid = props.get("gridProperties", {})
                tabs[str(props["title"])] = (
                    int(grid["rowCount"]),
                    int(grid.get("columnCount", 26)),
                )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SourceUnavailable(
                "Sheets API metadata is not the expected JSON (sheets[].properties.gridProperties)"
            ) from None
        if wanted not in tabs:
            names = ", ".join(f'"{name}"' for name in tabs) or "none"
            raise SourceUnavailable(
                f'tab "{wanted}" not found in spreadsheet {self._sheet_id} (tabs: {names}); '
                "check PHONESYNC_SHEET_RANGE"
            )
        return wanted, *tabs[wanted]

    def _values(self, session: AuthorizedSession, a1_range: str) -> list[list[Cell]]:
        params = {**RENDER_PARAMS, "ranges": a1_range}
        body = self._get_json(session, f"{self._base}/values:batchGet", params)
        ranges = body.get("valueRanges")
        if not isinstance(ranges, list) or len(ranges) != 1 or not isinstance(ranges[0], dict):
            raise SourceUnavailable("Sheets API values reply has no single valueRanges entry")
        return _checked_values(ranges[0].get("values", []))

    # --- HTTP --------------------------------------------------------------------------------

    def _open_session(self) -> AuthorizedSession:
        auth_request = Request(self._token_session) if self._token_session is not None else None
        # google-auth ships no annotations for these calls: the ignores below say only that.
        session = AuthorizedSession(self._credentials, auth_request=auth_request)  # type: ignore[no-untyped-call]
        # Count every response, including the re-send google-auth makes after refreshing on 401.
        session.hooks["response"].append(self._count)
        return session

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests += 1

    def _get_json(
        self, session: AuthorizedSession, url: str, params: dict[str, str]
    ) -> dict[str, Any]:
        """GET with bounded, jittered, Retry-After-honouring retries; a JSON object or raise."""
        waited = 0.0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome = self._attempt(session, url, params)
            if not isinstance(outcome, RetryLater):
                return outcome
            delay = self._delay(attempt, outcome.retry_after)
            if attempt == MAX_ATTEMPTS or waited + delay > self._settings.retry_total_s:
                raise SourceUnavailable(
                    f"Sheets API still failing after {attempt} attempts ({outcome.why}); "
                    "quota is 60 reads/min per service account"
                )
            self.retries += 1
            waited += delay
            self._sleeper(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _attempt(
        self, session: AuthorizedSession, url: str, params: dict[str, str]
    ) -> dict[str, Any] | RetryLater:
        try:
            response = session.get(url, params=params, timeout=READ_TIMEOUT_S)
        except auth_exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                return RetryLater(f"token endpoint: {_auth_cause(exc)[0]}")
            raise SourceUnavailable(_auth_message(exc)) from None
        except (requests.RequestException, auth_exceptions.TransportError) as exc:
            if isinstance(exc, requests.RequestException):
                self.requests += 1  # sent (or tried) without a response for the hook to count
            return RetryLater(f"network: {type(exc).__name__}")
        try:
            return classify(response.status_code, response.headers, response.text, self.account)
        finally:
            response.close()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = self._settings.retry_max_wait_s
        if retry_after is not None:
            return min(max(retry_after, 0.0), cap)
        grown = min(BASE_DELAY_S * 2.0 ** (attempt - 1), cap)
        return grown * _jitter.uniform(0.5, 1.0)


# --- classification: the one place that decides what a Sheets reply means --------------------


def classify(status: int, headers: Any, text: str, account: str) -> dict[str, Any] | RetryLater:
    """A Sheets API reply → its JSON object, a `RetryLater`, or a raised `SourceUnavailable`.

    `account` is the service account's e-mail, named in the 403 message (share the sheet with it).
    """
    if status == 200:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SourceUnavailable(
                "Sheets API answered 200 with a body that is not the expected JSON "
                "(a proxy or captive portal in the way?)"
            )
        return body
    error = _google_error(text)
    if status in _RETRY_STATUSES:
        return RetryLater(f"HTTP {status} {error.status}".rstrip(), _retry_after(headers))
    raise SourceUnavailable(_refusal(status, error, account))


@dataclass(frozen=True, slots=True)
class _GoogleError:
    status: str = ""
    message: str = ""
    reasons: tuple[str, ...] = ()


def _google_error(text: str) -> _GoogleError:
    """Google's `{"error": {"code", "message", "status", "details"}}`, tolerating anything."""
    try:
        error = json.loads(text).get("error")
        details = error.get("details") or []
        reasons = tuple(str(d.get("reason", "")) for d in details if isinstance(d, dict))
        return _GoogleError(str(error.get("status", "")), str(error.get("message", "")), reasons)
    except (ValueError, AttributeError, TypeError):
        return _GoogleError()


def _refusal(status: int, error: _GoogleError, account: str) -> str:
    said = redact(error.message)[:300]
    if status == 403 and "SERVICE_DISABLED" in error.reasons:
        return f"the Google Sheets API is not enabled for the service account's project ({said})"
    if status == 403:
        return (
            f"no permission to read the sheet: share it with {account} "
            f"({error.status or 'PERMISSION_DENIED'})"
        )
    if status == 401:
        return f"Sheets API refused the access token ({error.status or 'UNAUTHENTICATED'}): {said}"
    if status == 404:
        return f"spreadsheet not found ({error.status or 'NOT_FOUND'}): check PHONESYNC_SHEET_ID"
    if status == 400 and "Unable to parse range" in error.message:
        return f"tab or range not found: check PHONESYNC_SHEET_RANGE ({said})"
    return f"Sheets API refused the read: HTTP {status} {error.status} {said}".rstrip()


def _retry_after(headers: Any) -> float | None:
    """`Retry-After` in seconds or as an HTTP-date; None when absent or unreadable."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


def _auth_cause(exc: auth_exceptions.RefreshError) -> tuple[str, str]:
    """(error code, description) of a token failure, e.g. ("invalid_grant", "Invalid JWT …")."""
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    code = str(data.get("error") or "")
    text = str(exc.args[0]) if exc.args else ""
    if not code:
        match = re.match(r"\s*([a-z_]+):", text)
        code = match.group(1) if match else "token refused"
    description = str(data.get("error_description") or text.partition(":")[2])
    return code, redact(description.strip())[:200]


def _auth_message(exc: auth_exceptions.RefreshError) -> str:
    code, description = _auth_cause(exc)
    hint = _AUTH_HINTS.get(code, "check the service-account key")
    detail = f" [{description}]" if description else ""
    return f"Sheets authentication failed ({code}): {hint}{detail}"


# --- small helpers -------------------------------------------------------------------------------


def _credentials(key_json: str) -> Any:
    try:
        info = json.loads(key_json)
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=SCOPES
        )
    except (ValueError, KeyError, TypeError) as exc:
        # The message never echoes the key: only which part is wrong.
        what = "not JSON" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise ConfigError(
            f"PHONESYNC_SERVICE_ACCOUNT_KEY is not a usable service-account key file ({what})"
        ) from None
    register_secret(str(info.get("private_key", "")))
    return credentials


def _tab_name(sheet_range: str) -> str:
    """`Sheet1` or `'My Tab'` → the tab title (quotes removed, doubled quotes undone)."""
    name = sheet_range.strip()
    if len(name) >= 2 and name[0] == name[-1] == "'":
        name = name[1:-1].replace("''", "'")
    return name


def _quote_tab(tab: str) -> str:
    return "'" + tab.replace("'", "''") + "'"


_CELL_TYPES = (str, int, float, bool)


def _checked_values(values: Any) -> list[list[Cell]]:
    """The `values` array, checked: rows are lists of JSON scalars (never objects)."""
    if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
        raise SourceUnavailable("Sheets API values reply is not a list of rows")
    for row in values:
        if not all(cell is None or isinstance(cell, _CELL_TYPES) for cell in row):
            raise SourceUnavailable("Sheets API values reply holds a cell that is not a value")
    return values
