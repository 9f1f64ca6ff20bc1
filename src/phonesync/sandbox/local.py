"""Both sandboxes in this process, on loopback ports, with `Settings` pointing at them.

For tests and tools that need the real HTTP path without a subprocess:

    with LocalSandbox(patients, values, tmp_path) as sb:
        outcome = asyncio.run(run_sync(sb.settings, ...))
        sb.store.history("P00000000001")
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phonesync.sandbox.fhir_server import FhirProfile, PatientStore, create_fhir_app
from phonesync.sandbox.sheets_server import (
    SHEETS_STATS,
    SheetBook,
    SheetsFaults,
    SheetsStats,
    create_sheets_app,
    make_service_account,
)
from phonesync.sandbox.threaded import ThreadedServer
from phonesync.settings import Settings
from phonesync.source.rows import Cell

SHEET_ID = "sandbox-sheet"
SHEET_TAB = "Sheet1"


@dataclass
class LocalSandbox:
    """FHIR + Sheets stand-ins served from background threads; `settings` talks to them."""

    patients: list[dict[str, Any]]
    values: list[list[Cell]]
    state_dir: Path
    profile: FhirProfile = field(default_factory=FhirProfile)
    sheets_faults: SheetsFaults | None = None
    database_url: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    store: PatientStore = field(init=False)
    book: SheetBook = field(init=False)
    settings: Settings = field(init=False)
    _servers: list[ThreadedServer] = field(default_factory=list, init=False)

    def __enter__(self) -> LocalSandbox:
        self.store = PatientStore()
        for patient in self.patients:
            self.store.add(patient)
        self.book = SheetBook(spreadsheet_id=SHEET_ID, title=SHEET_TAB, values=self.values)
        fhir = ThreadedServer(create_fhir_app(self.store, self.profile)).start()
        self._servers.append(fhir)
        # the token URI must be known before the app exists: reserve the port first
        sheets = ThreadedServer(create_sheets_app_placeholder()).start()
        sheets.stop()
        key_info, public_key = make_service_account(f"http://127.0.0.1:{sheets.port}/token")
        app = create_sheets_app(
            self.book, public_key, key_info["client_email"], faults=self.sheets_faults
        )
        self._sheets_app = app
        self._servers.append(ThreadedServer(app, port=sheets.port).start())
        self.settings = self._settings(fhir.url, f"http://127.0.0.1:{sheets.port}", key_info)
        return self

    def _settings(self, fhir_url: str, sheets_url: str, key_info: dict[str, Any]) -> Settings:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "source": "sheets",
            "sheet_id": SHEET_ID,
            "sheet_range": SHEET_TAB,
            "service_account_key": json.dumps(key_info),
            "sheets_api_url": sheets_url,
            "fhir_base_url": f"{fhir_url}/fhir-r4/v1",
            "fhir_auth": self.profile.auth,
            "hash_key": secrets.token_urlsafe(24),
            "database_url": self.database_url
            or f"sqlite:///{(self.state_dir / 'ledger.sqlite3').resolve()}",
            "progress": "off",
        }
        if self.profile.auth == "api-key":
            values |= {
                "fhir_api_key": self.profile.api_key,
                "fhir_api_key_header": self.profile.api_key_header,
            }
        else:
            values |= {
                "oauth_token_url": f"{fhir_url}/oauth2/v1/accesstoken",
                "oauth_client_id": self.profile.client_id,
                "oauth_client_secret": self.profile.client_secret,
            }
        return Settings.load(env_file=None, **(values | self.overrides))

    def write_env(self, path: Path) -> Path:
        """An env file with these settings, for `phonesync --env-file PATH …` in a subprocess."""
        key_file = self.state_dir / "service-account.json"
        lines = []
        for name, value in self.settings.model_dump().items():
            if value is None:
                continue
            if name == "service_account_key":
                key_file.write_text(value.get_secret_value())
                lines.append(f"PHONESYNC_SERVICE_ACCOUNT_KEY_FILE={key_file}")
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if isinstance(value, (list, tuple)):
                value = ",".join(value)
            lines.append(f"PHONESYNC_{name.upper()}={value}")
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def sheets_stats(self) -> SheetsStats:
        return self._sheets_app[SHEETS_STATS]

    def fhir_requests(self) -> int:
        """FHIR requests the server has seen so far (excluding `/_sandbox`)."""
        return len(self.store.requests)

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()


def create_sheets_app_placeholder() -> Any:
    from aiohttp import web

    return web.Application()
