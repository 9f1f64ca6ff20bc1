"""`phonesync sandbox`: seed and serve the FHIR and Sheets stand-ins, and write an env file.

The env file holds every `PHONESYNC_*` setting `phonesync run` needs to talk to the sandbox, so
`phonesync --env-file var/sandbox/sandbox.env run` works as is.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from phonesync.crypto import new_key
from phonesync.errors import ConfigError
from phonesync.sandbox.fhir_server import (
    FhirProfile,
    PatientStore,
    create_fhir_app,
    load_patients_ndjson,
)
from phonesync.sandbox.sheets_server import (
    SheetBook,
    create_sheets_app,
    load_sheet_file,
    make_service_account,
)
from phonesync.sandbox.synth import SandboxData, generate

log = logging.getLogger("phonesync.sandbox")

_T = TypeVar("_T")

SHEET_ID = "sandbox-sheet"
SHEET_TAB = "Sheet1"


@dataclass
class SandboxOptions:
    """Everything `phonesync sandbox` can be told (see `phonesync sandbox --help`)."""

    business_date: date
    patients: int = 2000
    rows: int = 2000
    seed: int = 1
    patients_file: Path | None = None
    sheet_file: Path | None = None
    host: str = "127.0.0.1"
    fhir_port: int = 8090
    sheets_port: int = 8091
    state_dir: Path = Path("var/sandbox")
    env_file: Path | None = None
    write_mode: str = "put"
    auth: str = "api-key"
    profile: FhirProfile = field(default_factory=FhirProfile)


@dataclass
class SandboxState:
    """What a started sandbox holds, for the demo and the tests."""

    store: PatientStore
    book: SheetBook
    data: SandboxData | None
    env: dict[str, str]
    env_file: Path
    runners: list[web.AppRunner] = field(default_factory=list)


def seed(options: SandboxOptions) -> tuple[PatientStore, list[list[Any]], SandboxData | None]:
    """Patients and sheet rows: from files when given (read first), synthetic otherwise."""
    patients = values = None
    if options.patients_file is not None:
        patients = _load("--patients-file", load_patients_ndjson, options.patients_file)
    if options.sheet_file is not None:
        values = _load("--sheet-file", load_sheet_file, options.sheet_file)
    data: SandboxData | None = None
    if patients is None or values is None:
        data = generate(
            seed=options.seed,
            patients=options.patients,
            rows=options.rows,
            business_date=options.business_date,
            write_mode_national=options.write_mode == "patch",
        )
        patients = data.patients if patients is None else patients
        values = data.values if values is None else values
    store = PatientStore()
    for patient in patients:
        store.add(patient)
    return store, values, data


def _load(option: str, loader: Callable[[Path], _T], path: Path) -> _T:
    """A user's file through its loader; what is wrong with it becomes one `ConfigError` line."""
    try:
        return loader(path)
    except ValueError as exc:  # the loaders name the file (and the line) and the problem
        raise ConfigError(f"{option} {exc}") from None


def _hash_key(state_dir: Path) -> str:
    """A stable hash key per sandbox state dir (ledger look-ups need it to stay the same)."""
    path = state_dir / "hash.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _snapshot_key(state_dir: Path) -> str:
    """A stable Fernet key per sandbox state dir, so frozen inputs can be replayed."""
    path = state_dir / "snapshot.key"
    if not path.exists():
        path.write_text(new_key())
        path.chmod(0o600)
    return path.read_text().strip()


def env_values(options: SandboxOptions, key_file: Path) -> dict[str, str]:
    base = f"http://{options.host}"
    env = {
        "PHONESYNC_SOURCE": "sheets",
        "PHONESYNC_SHEET_ID": SHEET_ID,
        "PHONESYNC_SHEET_RANGE": SHEET_TAB,
        "PHONESYNC_SERVICE_ACCOUNT_KEY_FILE": str(key_file.resolve()),
        "PHONESYNC_SHEETS_API_URL": f"{base}:{options.sheets_port}",
        "PHONESYNC_FHIR_BASE_URL": f"{base}:{options.fhir_port}/fhir-r4/v1",
        "PHONESYNC_FHIR_AUTH": options.auth,
        "PHONESYNC_WRITE_MODE": options.write_mode,
        "PHONESYNC_HASH_KEY": _hash_key(options.state_dir),
        "PHONESYNC_SNAPSHOT_KEY": _snapshot_key(options.state_dir),
        "PHONESYNC_DATABASE_URL": f"sqlite:///{(options.state_dir / 'ledger.sqlite3').resolve()}",
    }
    profile = options.profile
    if options.auth == "api-key":
        env["PHONESYNC_FHIR_API_KEY"] = profile.api_key
        env["PHONESYNC_FHIR_API_KEY_HEADER"] = profile.api_key_header
    else:
        env["PHONESYNC_OAUTH_TOKEN_URL"] = f"{base}:{options.fhir_port}/oauth2/v1/accesstoken"
        env["PHONESYNC_OAUTH_CLIENT_ID"] = profile.client_id
        env["PHONESYNC_OAUTH_CLIENT_SECRET"] = profile.client_secret
    return env


def write_env_file(path: Path, env: dict[str, str]) -> None:
    lines = ["# written by `phonesync sandbox`: settings that point phonesync at the local sandbox"]
    lines += [f"{k}={v}" for k, v in env.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)  # atomic: a waiting demo never reads half a file


async def start(options: SandboxOptions) -> SandboxState:
    """Seed, serve both apps on loopback, write the env file; returns once both listen."""
    options.state_dir.mkdir(parents=True, exist_ok=True)
    store, values, data = seed(options)
    token_uri = f"http://{options.host}:{options.sheets_port}/token"
    key_info, public_key = make_service_account(token_uri)
    key_file = options.state_dir / "service-account.json"
    key_file.write_text(json.dumps(key_info))
    key_file.chmod(0o600)
    book = SheetBook(spreadsheet_id=SHEET_ID, title=SHEET_TAB, values=values)
    profile = options.profile
    profile.write_modes = frozenset(
        {"put", "patch"} if options.write_mode == "both" else {options.write_mode}
    )
    profile.auth = options.auth  # type: ignore[assignment]
    apps = [
        (create_fhir_app(store, profile), options.fhir_port),
        (create_sheets_app(book, public_key, key_info["client_email"]), options.sheets_port),
    ]
    runners = []
    for app, port in apps:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, options.host, port).start()
        runners.append(runner)
    env = env_values(options, key_file)
    if data is not None:
        (options.state_dir / "expected.json").write_text(
            json.dumps(
                {
                    "business_date": options.business_date.isoformat(),
                    "expected": {str(k): v for k, v in data.expected.items()},
                    "notes": data.notes,
                }
            )
        )
    env_file = options.env_file or options.state_dir / "sandbox.env"
    write_env_file(env_file, env)
    return SandboxState(
        store=store, book=book, data=data, env=env, env_file=env_file, runners=runners
    )


async def serve_forever(options: SandboxOptions) -> None:
    state = await start(options)
    # The seeded patients live as long as the sandbox: out of the collector's full passes, which
    # stay short while serving (a long pause would bunch the requests that arrive during it, and
    # spike arrest would refuse them: a stall of the sandbox, not the client's doing).
    gc.collect()
    gc.freeze()
    log.info(
        "sandbox ready",
        extra={
            "fhir": state.env["PHONESYNC_FHIR_BASE_URL"],
            "sheets": state.env["PHONESYNC_SHEETS_API_URL"],
            "env_file": str(state.env_file),
            "patients": len(state.store),
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in state.runners:
        await runner.cleanup()
