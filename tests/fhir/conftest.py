"""Fixtures for the FHIR client: the sandbox server on loopback, fake time, settings, patients."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from phonesync.fhir.http import FhirHttp
from phonesync.fhir.pacing import FixedLimiter
from phonesync.fhir.updater import Updater
from phonesync.normalise.nik import Nik, parse_nik
from phonesync.plan import WorkItem
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore, create_fhir_app
from phonesync.sandbox.threaded import ThreadedServer
from phonesync.settings import Settings

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIK_A = "3174014203950001"  # female, born 1995-03-02
NIK_B = "3174013112850002"  # male, born 1985-12-31
D = date(2024, 3, 15)
JAKARTA = ZoneInfo("Asia/Jakarta")
API_KEY = "sandbox-key"


@dataclass
class FakeTime:
    """Monotonic clock, wall clock (Asia/Jakarta) and a sleeper that records waits, never sleeps."""

    t: float = 1000.0
    wall0: datetime = datetime(2024, 3, 15, 23, 0, tzinfo=JAKARTA)
    waits: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    """Injected clock and sleeper."""
    return FakeTime()


@pytest.fixture
def store() -> PatientStore:
    """An empty sandbox patient store."""
    return PatientStore()


Serve = Callable[..., ThreadedServer]


@pytest.fixture
def serve(store: PatientStore) -> Iterator[Serve]:
    """Start the sandbox FHIR server for `store` with a profile; stopped after the test."""
    servers: list[ThreadedServer] = []

    def start(profile: FhirProfile | None = None, **app_kwargs: Any) -> ThreadedServer:
        app = create_fhir_app(store, profile or FhirProfile(), **app_kwargs)
        server = ThreadedServer(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(serve: Serve) -> ThreadedServer:
    """The sandbox FHIR server with the default profile (api-key, PUT and PATCH)."""
    return serve()


def make_settings(server: ThreadedServer, **overrides: Any) -> Settings:
    """Settings pointing at the sandbox's national-style base URL."""
    values: dict[str, Any] = {
        "fhir_base_url": f"{server.url}/fhir-r4/v1",
        "fhir_api_key": API_KEY,
        "hash_key": "test-hash-key-of-the-fhir-tests",
    }
    if overrides.get("fhir_auth") == "oauth2":
        values["oauth_token_url"] = f"{server.url}/oauth2/v1/accesstoken"
        values["oauth_client_id"] = "sandbox-client"
        values["oauth_client_secret"] = "sandbox-secret"
    values.update(overrides)
    return Settings.load(env_file=None, **values)


@asynccontextmanager
async def open_http(
    settings: Settings, fake_time: FakeTime, *, seed: int = 7, **kwargs: Any
) -> AsyncIterator[FhirHttp]:
    """A `FhirHttp` on fake time with a seeded jitter."""
    limiter = FixedLimiter(
        settings.concurrency, settings.max_rate, clock=fake_time.now, sleeper=fake_time.sleep
    )
    async with FhirHttp(
        settings,
        limiter=limiter,
        sleeper=fake_time.sleep,
        clock=fake_time.now,
        wall_clock=fake_time.wall,
        rng=kwargs.pop("rng", random.Random(seed)),
        **kwargs,
    ) as http:
        yield http


@asynccontextmanager
async def open_updater(
    server: ThreadedServer, fake_time: FakeTime, **overrides: Any
) -> AsyncIterator[Updater]:
    """An `Updater` for business date D against the sandbox."""
    settings = make_settings(server, **overrides)
    async with open_http(settings, fake_time) as http:
        yield Updater(http, settings, D)


def nik(value: str) -> Nik:
    parsed = parse_nik(value)
    assert isinstance(parsed, Nik)
    return parsed


def work(nik_value: str = NIK_A, phone: str = "+6282222222222", row: int = 2) -> WorkItem:
    """A WorkItem as the planner would hand it on."""
    return WorkItem(
        row=row,
        nik=nik(nik_value),
        phone=phone,
        moment=datetime(2024, 3, 15, 9, 0, tzinfo=JAKARTA).astimezone(UTC),
        nik_hash="h-" + nik_value[-4:],
        phone_hash="h-" + phone[-4:],
    )


def patient_a(pid: str = "P001", **extra: Any) -> dict[str, Any]:
    """C6's Patient: birthDate, gender, address, an extension, email + mobile, a contact."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {"use": "official", "system": NIK_SYSTEM, "value": NIK_A},
            {"system": "https://fhir.kemkes.go.id/id/ihs-number", "value": pid},
        ],
        "active": True,
        "name": [{"use": "official", "text": "Siti Aminah", "family": "Aminah"}],
        "telecom": [
            {"system": "email", "value": "a@example.org"},
            {"system": "phone", "value": "+6281111111111", "use": "mobile"},
        ],
        "gender": "female",
        "birthDate": "1995-03-02",
        "address": [
            {
                "use": "home",
                "line": ["Jl. Melati No. 1"],
                "city": "Jakarta Timur",
                "extension": [
                    {
                        "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode",
                        "extension": [{"url": "province", "valueCode": "31"}],
                    }
                ],
            }
        ],
        "extension": [
            {
                "url": "https://fhir.kemkes.go.id/r4/StructureDefinition/birthPlace",
                "valueAddress": {"city": "Bandung"},
            },
            {"url": "https://example.org/fhir/StructureDefinition/weight", "valueDecimal": 3.10},
        ],
        "contact": [
            {
                "relationship": [{"text": "mother"}],
                "telecom": [{"system": "phone", "value": "+6281399998888", "use": "mobile"}],
            }
        ],
        "multipleBirthBoolean": False,
        "_unknownVendorField": {"keep": ["me", 1, None]},
    }
    resource.update(extra)
    return resource
