"""Helpers for source tests: a running Sheets API stand-in (real HTTP on loopback) and the
settings that point at it. The fixtures live in conftest.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from phonesync.sandbox.sheets_server import (
    SHEETS_STATS,
    SheetBook,
    SheetsFaults,
    SheetsStats,
    create_sheets_app,
)
from phonesync.sandbox.threaded import ThreadedServer
from phonesync.settings import Settings
from phonesync.source.rows import Cell
from phonesync.source.sheets import SheetsSource

SHEET_ID = "1sandboxSheetIdForPhonesyncTests"
TAB = "Sheet1"
HEADER: list[Cell] = ["NIK", "No HP", "last_updated_date"]


@dataclass
class SheetsSandbox:
    """The stand-in's pieces; `source()` builds a SheetsSource whose sleeper records waits."""

    server: ThreadedServer
    app: web.Application
    book: SheetBook
    faults: SheetsFaults
    key: dict[str, str]
    waits: list[float] = field(default_factory=list)

    @property
    def stats(self) -> SheetsStats:
        return self.app[SHEETS_STATS]

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "source": "sheets",
            "sheet_id": SHEET_ID,
            "sheet_range": self.book.title,
            "service_account_key": json.dumps(self.key),
            "sheets_api_url": self.server.url,
            **overrides,
        }
        return Settings.load(env_file=None, **values)

    def source(self, **overrides: Any) -> SheetsSource:
        return SheetsSource(self.settings(**overrides), sleeper=self.waits.append)


SandboxFactory = Callable[..., SheetsSandbox]


def start_sandbox(
    started: list[ThreadedServer],
    issued_key: tuple[dict[str, str], RSAPublicKey],
    values: list[list[Cell]],
    *,
    faults: SheetsFaults | None = None,
    title: str = TAB,
    key: dict[str, str] | None = None,
    **book_options: Any,
) -> SheetsSandbox:
    """Serve `values` as one tab; `key` replaces the issued key in the key file (same e-mail)."""
    template, public_key = issued_key
    faults = faults or SheetsFaults()
    book = SheetBook(SHEET_ID, title, values, **book_options)
    app = create_sheets_app(book, public_key, template["client_email"], faults=faults)
    server = ThreadedServer(app).start()
    started.append(server)
    key = dict(key or template)
    key["token_uri"] = f"{server.url}/token"
    return SheetsSandbox(server, app, book, faults, key)


def data_rows(count: int, first_serial: int = 45366) -> list[list[Cell]]:
    """`count` valid-looking text rows (distinct NIKs and phones), one date each."""
    return [
        [f"3174014203{950001 + i:06d}"[:16], f"0812{10000000 + i:08d}", first_serial]
        for i in range(count)
    ]
