"""Fixtures for the service: a small synthetic night on both sandboxes, a clock in Jakarta."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.sandbox.threaded import ThreadedServer

JAKARTA = ZoneInfo("Asia/Jakarta")
DAY = date(2024, 3, 15)
NIGHT = datetime(2024, 3, 15, 23, 0, tzinfo=JAKARTA)


@pytest.fixture(scope="session")
def night() -> SandboxData:
    """60 in-scope rows of every messy kind for DAY."""
    return generate(seed=11, patients=120, rows=60, business_date=DAY)


@pytest.fixture
def sandbox(tmp_path: Path, night: SandboxData) -> Iterator[LocalSandbox]:
    """Both sandboxes seeded with the night, SQLite ledger in tmp_path, no catch-up."""
    overrides = {"catch_up_missed": False}
    with LocalSandbox(night.patients, night.values, tmp_path, overrides=overrides) as sb:
        yield sb


@pytest.fixture
def ledger(sandbox: LocalSandbox) -> Iterator[Ledger]:
    """The sandbox's ledger, opened and migrated."""
    opened = Ledger.open(sandbox.settings.database_url)
    yield opened
    opened.close()


@dataclass
class Recorder:
    """A tiny HTTP stand-in on loopback that records every request and answers from a script."""

    answer: Any = None  # callable(request_json, path) -> (status, json body)
    seen: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadedServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": raw,
            }
        )
        status, body = self.answer(raw, request.path) if self.answer else (200, {})
        return web.json_response(body, status=status)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def json_bodies(self) -> list[Any]:
        return [json.loads(s["body"]) for s in self.seen if s["body"]]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A loopback HTTP server that records requests (Pushgateway, webhook, Vault stand-ins)."""
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    rec.server = ThreadedServer(app).start()
    yield rec
    rec.server.stop()


def fail_searches(
    sandbox: LocalSandbox, night: SandboxData, count: int, body: str | None = None
) -> list[str]:
    """The searches of `count` rows due `updated` answer 500 five times; returns their NIKs.

    `body` may use `{nik}`; by default the server's text names the NIK it failed on.
    """
    nik_col = night.values[0].index("NIK")
    rows = [r for r, o in sorted(night.expected.items()) if o == "updated"][:count]
    niks = [str(night.values[row - 1][nik_col]).strip() for row in rows]
    for nik in niks:
        sandbox.store.faults.push(
            method="GET",
            path_prefix=f"/Patient?identifier=https://fhir.kemkes.go.id/id/nik|{nik}",
            status=500,
            body=(body or "backend error for {nik}").replace("{nik}", nik),
            headers={"Retry-After": "0"},  # retried at once: no real sleep
            times=5,
        )
    return niks
