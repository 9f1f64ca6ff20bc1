"""Typed settings from `PHONESYNC_*` environment variables, a `.env` file and `*_FILE` secrets.

Built once in the entry point (`Settings.load()`) and passed down; never a module-level global.
Every field is documented in docs/configuration.md; `phonesync --help` lists them too. Which
`.env` file is read, if any, is chosen once (`find_env_file`) and kept on the settings
(`Settings.env_file`), so that `phonesync doctor` can show it.
"""

from __future__ import annotations

import difflib
import enum
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from phonesync.errors import ConfigError
from phonesync.masking import register_secret

ENV_PREFIX = "PHONESYNC_"
#: Shortest PHONESYNC_HASH_KEY accepted: the ledger's keyed hashes are only as strong as the key.
HASH_KEY_MIN_LENGTH = 16
#: An identifier system as the NIK search carries it: an absolute URI, nothing splitting a token.
_NIK_SYSTEM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[!-~]+")  # printable ASCII, no space
_SECRET_REFERENCE_PREFIXES = ("gcp-sm://", "vault://")  # resolved after validation (secrets.py)

DEFAULT_NIK_ALIASES = ("NIK", "No NIK", "Nomor NIK", "NIK Pasien", "No KTP", "NIK KTP")
DEFAULT_PHONE_ALIASES = (
    "No HP",
    "No WhatsApp",
    "No WA",
    "Nomor HP",
    "Nomor WhatsApp",
    "Nomor Telepon",
    "No Telp",
    "Phone",
    "HP",
    "WhatsApp",
)
DEFAULT_DATE_ALIASES = (
    "last_updated_date",
    "Tanggal Update",
    "Tanggal Pembaruan",
    "Last Updated",
    "Tanggal",
)


#: The ledger file of the default PHONESYNC_DATABASE_URL, under the XDG state directory.
LEDGER_STATE_PATH = Path("phonesync") / "ledger.sqlite3"
#: The ledger file earlier versions used by default, in the working directory (see `load`).
LEGACY_LEDGER_FILE = "phonesync.sqlite3"


def default_ledger_path() -> Path:
    """`$XDG_STATE_HOME/phonesync/ledger.sqlite3`, or `~/.local/state/phonesync/ledger.sqlite3`.

    Independent of the working directory: a cron job started in `$HOME` or `/` and a shell in
    the project find the same ledger. A relative `XDG_STATE_HOME` is ignored (the XDG base
    directory specification says so). Relative only when there is no home directory either
    (`Settings.load` refuses that, asking for PHONESYNC_DATABASE_URL).
    """
    state = os.environ.get("XDG_STATE_HOME", "")
    if state and os.path.isabs(state):
        base = Path(state)
    else:
        base = Path(os.path.expanduser("~")) / ".local" / "state"  # "~" itself when unknown
    return Path(os.path.normpath(base / LEDGER_STATE_PATH))


def default_database_url() -> str:
    """The default PHONESYNC_DATABASE_URL, resolved once when the settings are built."""
    return f"sqlite:///{default_ledger_path()}"


def hash_key_problem(key: str) -> str | None:
    """Why `key` cannot be PHONESYNC_HASH_KEY (empty, too short), or None; never quotes it."""
    if not key.strip():
        return "is empty; set a random key of at least 16 characters (docs/configuration.md)"
    if len(key.strip()) < HASH_KEY_MIN_LENGTH:
        return (
            f"is shorter than {HASH_KEY_MIN_LENGTH} characters; use a random key, e.g. "
            "python -c 'import secrets; print(secrets.token_hex(32))' (docs/configuration.md)"
        )
    return None


def check_ledger_location(url: str, *, default: bool) -> None:
    """Refuse a ledger that depends on the working directory (`ConfigError`, exit 2).

    An explicit SQLite URL with a relative path (also one a `vault://`/`gcp-sm://` reference
    resolved to); the default when no home directory is known; and the default while the
    working directory holds `phonesync.sqlite3`, the ledger of a phonesync from before the
    default moved: using the new, empty default instead would forget what that one applied.
    """
    from phonesync.ledger.engine import (
        ABSOLUTE_SQLITE_EXAMPLE,
        relative_sqlite_path,
        relative_sqlite_problem,
    )

    setting = f"{ENV_PREFIX}DATABASE_URL"
    if not default:
        problem = relative_sqlite_problem(url)
        if problem is not None:
            raise ConfigError(f"invalid configuration: {setting}: {problem}")
        return
    if relative_sqlite_path(url) is not None:  # the default, with no home directory to put it
        raise ConfigError(
            f"invalid configuration: {setting} is not set and neither XDG_STATE_HOME nor a home "
            "directory gives its default a place; set it to an absolute path, with four "
            f"slashes: {ABSOLUTE_SQLITE_EXAMPLE}"
        )
    legacy = Path(LEGACY_LEDGER_FILE)
    if legacy.is_file():
        raise ConfigError(
            f"invalid configuration: {setting} is not set, and the working directory holds "
            f"{LEGACY_LEDGER_FILE}, the ledger earlier versions used by default; the default "
            f"is now {url}. Set {setting}=sqlite:///{legacy.absolute()} to keep using it (or "
            "move it to the new default), so that no run starts on an empty ledger"
        )


#: Names the .env file to read, from the environment only (a cron job's or a systemd unit's).
ENV_FILE_VARIABLE = f"{ENV_PREFIX}ENV_FILE"
#: The .env file read when neither `--env-file` nor PHONESYNC_ENV_FILE names one (if present).
LOCAL_ENV_FILE = ".env"
ABSOLUTE_ENV_FILE_EXAMPLE = "/etc/phonesync/phonesync.env"


@dataclass(frozen=True)
class EnvFile:
    """The .env file the settings are read from (`path`, absolute), or None, and why."""

    path: Path | None
    chosen_by: str  # "--env-file", "PHONESYNC_ENV_FILE", "./.env", or why there is none


class _Find(enum.Enum):
    FIND = "find"  # `Settings.load()`: `find_env_file()` decides


def _readable_env_file(path: Path, named: str) -> Path:
    """`path` made absolute, if it is a readable file; else a `ConfigError` naming `named`."""
    if not path.exists():
        raise ConfigError(f"{named}: no such file")
    if not path.is_file():
        raise ConfigError(f"{named}: not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{named}: cannot be read ({exc.strerror or exc})") from None
    return path.absolute()


def env_file_named(path: str | Path, *, by: str = "--env-file") -> EnvFile:
    """A file named explicitly (`by`: how, e.g. `--env-file`); it must exist and be readable."""
    return EnvFile(_readable_env_file(Path(path), f"{by} {path}"), by)


def find_env_file(option: str | Path | None = None) -> EnvFile:
    """Which .env file to read: `--env-file` (`option`), else PHONESYNC_ENV_FILE, else ./.env.

    A file named by either must exist (`ConfigError`, exit 2), since running without it would
    run with other settings. PHONESYNC_ENV_FILE must be absolute: it is set for jobs (cron, a
    systemd timer) that start in any directory. `./.env` is read only when present; it depends
    on the working directory, which is why PHONESYNC_ENV_FILE exists. An empty
    PHONESYNC_ENV_FILE counts as unset.
    """
    if option is not None:
        return env_file_named(option)
    named = os.environ.get(ENV_FILE_VARIABLE, "")
    if named:
        if not os.path.isabs(named):
            raise ConfigError(
                f"{ENV_FILE_VARIABLE}={named} is a path relative to the working directory, so "
                "phonesync started in another directory (cron, a systemd timer) would read "
                f"another file or none; give an absolute path, e.g. {ABSOLUTE_ENV_FILE_EXAMPLE}"
            )
        path = _readable_env_file(Path(named), f"{ENV_FILE_VARIABLE}={named}")
        return EnvFile(path, ENV_FILE_VARIABLE)
    local = Path(LOCAL_ENV_FILE)
    if local.is_file():
        return EnvFile(_readable_env_file(local, f"./{LOCAL_ENV_FILE}"), f"./{LOCAL_ENV_FILE}")
    return EnvFile(
        None,
        f"no --env-file, {ENV_FILE_VARIABLE} not set, no {LOCAL_ENV_FILE} in {Path.cwd()}",
    )


#: PHONESYNC_* names read outside `Settings`: the test suite's own switches (tests/conftest.py,
#: tests/web/test_browser.py, the Makefile). Accepted, never suggested.
TOOLING_VARIABLES = frozenset(
    {
        f"{ENV_PREFIX}TEST_POSTGRES_ADMIN_URL",
        f"{ENV_PREFIX}TEST_SKIP_POSTGRES",
        f"{ENV_PREFIX}TEST_SKIP_BROWSER",
        f"{ENV_PREFIX}UPDATE_SCREENSHOTS",
    }
)
#: Names starting with this are the test suite's, whatever follows (never a setting).
TOOLING_PREFIX = f"{ENV_PREFIX}TEST_"


def _is_secret_field(field: FieldInfo) -> bool:
    """A secret setting: it also accepts `PHONESYNC_<NAME>_FILE` (`_SecretFileSource`)."""
    return field.annotation is SecretStr or field.annotation == SecretStr | None


def known_variables(settings_cls: type[BaseSettings]) -> frozenset[str]:
    """Every PHONESYNC_* name phonesync reads: each setting, the `_FILE` variant of each
    secret, PHONESYNC_ENV_FILE (tooling names apart: `TOOLING_VARIABLES`)."""
    names = {ENV_FILE_VARIABLE}
    for name, field in settings_cls.model_fields.items():
        names.add(f"{ENV_PREFIX}{name.upper()}")
        if _is_secret_field(field):
            names.add(f"{ENV_PREFIX}{name.upper()}_FILE")
    return frozenset(names)


def unknown_variable_problem(name: str, known: frozenset[str]) -> str | None:
    """Why `name` (any case) is not a setting, with the closest known name; None if it is one
    (or not PHONESYNC_* at all). Names only: a value may be a secret."""
    upper = name.upper()
    if not upper.startswith(ENV_PREFIX) or upper in known or upper in TOOLING_VARIABLES:
        return None
    if upper.startswith(TOOLING_PREFIX):
        return None
    # Compared without the prefix every name shares, which would make any two look alike.
    tails = {k[len(ENV_PREFIX) :]: k for k in known}
    close = difflib.get_close_matches(upper[len(ENV_PREFIX) :], list(tails), n=1, cutoff=0.8)
    hint = f" (did you mean {tails[close[0]]}?)" if close else ""
    return f"unknown setting {name}{hint}"


def env_file_problems(path: Path, known: frozenset[str]) -> list[str]:
    """What in the .env file at `path` would be silently lost: lines python-dotenv cannot
    parse (it only warns and skips them), a PHONESYNC_* name without `=`, unknown PHONESYNC_*
    names. Each names the file and the line number, never a line's content or a value."""
    from dotenv.parser import parse_stream

    try:
        data = path.read_bytes()
    except OSError as exc:
        return [f"{path}: cannot be read ({exc.strerror or exc})"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return [f"{path} line {line}: not UTF-8 text"]
    problems: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        # A binding's text starts with the blank lines before it; its own line comes after.
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error:
            problems.append(
                f"{path} line {line}: cannot be parsed (expected NAME=value, a comment or a "
                "blank line; the line is not shown)"
            )
        elif binding.key is None:
            continue
        elif binding.value is None and binding.key.upper().startswith(ENV_PREFIX):
            problems.append(f"{path} line {line}: {binding.key} has no value (NAME=value)")
        else:
            problem = unknown_variable_problem(binding.key, known)
            if problem is not None:
                problems.append(f"{problem} in {path} line {line}")
    return problems


def check_variable_names(settings_cls: type[BaseSettings], env_file: Path | None) -> None:
    """Refuse (`ConfigError`, exit 2) what would otherwise be silently ignored: an unknown
    PHONESYNC_* name in the environment or in the .env file read (a misspelled setting would
    run with its default), and .env lines that cannot be parsed. One message, every problem."""
    known = known_variables(settings_cls)
    problems = env_file_problems(env_file, known) if env_file is not None else []
    for name in sorted(os.environ):
        problem = unknown_variable_problem(name, known)
        if problem is not None:
            problems.append(f"{problem} in the environment")
    if problems:
        raise ConfigError(f"invalid configuration: {'; '.join(problems)}")


class _SecretFileSource(PydanticBaseSettingsSource):
    """`PHONESYNC_<NAME>_FILE=/path` reads a secret from a mounted file (Kubernetes/Docker).

    The `_FILE` variable may come from the environment or from the `.env` file.
    """

    def __init__(self, settings_cls: type[BaseSettings], dotenv: Mapping[str, str | None]) -> None:
        super().__init__(settings_cls)
        self._dotenv = {k.upper(): v for k, v in dotenv.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = f"{ENV_PREFIX}{field_name.upper()}_FILE"
        path = os.environ.get(name) or self._dotenv.get(name)
        if not path:
            return None, field_name, False
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except OSError as exc:
            raise ConfigError(
                f"{ENV_PREFIX}{field_name.upper()}_FILE points at a file that cannot be read "
                f"({exc.strerror})"
            ) from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not _is_secret_field(field):
                continue
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """All of phonesync's configuration. Secrets are `SecretStr` and never logged or stored."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,  # chosen by `load` (find_env_file), never implicitly from the cwd
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- source: Google Sheet or file -------------------------------------------------------
    source: Literal["sheets", "file"] = Field("sheets", description="Where rows come from.")
    sheet_id: str | None = Field(None, description="Spreadsheet id (from its URL).")
    sheet_range: str = Field("Sheet1", description="Tab name (A1 range without cells).")
    service_account_key: SecretStr | None = Field(
        None, description="Service-account key JSON (use _FILE to point at the key file)."
    )
    sheets_api_url: str = Field(
        "https://sheets.googleapis.com", description="Sheets API base URL (sandbox: local)."
    )
    sheet_chunk_rows: int = Field(5000, ge=100, description="Rows per Sheets read request.")
    source_file: Path | None = Field(None, description="CSV or XLSX export when source=file.")
    columns_nik: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_NIK_ALIASES, description="Header aliases: NIK."
    )
    columns_phone: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_PHONE_ALIASES, description="Header aliases: new phone number."
    )
    columns_date: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_DATE_ALIASES, description="Header aliases: last_updated_date."
    )

    # --- FHIR server ------------------------------------------------------------------------
    fhir_base_url: str | None = Field(None, description="FHIR R4 base URL.")
    fhir_auth: Literal["api-key", "oauth2"] = Field("api-key", description="Auth mode.")
    fhir_api_key: SecretStr | None = Field(None, description="API key (auth=api-key).")
    fhir_api_key_header: str = Field("x-api-key", description="Header carrying the API key.")
    oauth_token_url: str | None = Field(
        None, description="Token endpoint (auth=oauth2), e.g. …/oauth2/v1/accesstoken."
    )
    oauth_client_id: str | None = Field(None, description="OAuth2 client id.")
    oauth_client_secret: SecretStr | None = Field(None, description="OAuth2 client secret.")
    write_mode: Literal["put", "patch"] = Field("put", description="PUT whole resource or PATCH.")
    nik_system: str = Field(
        "https://fhir.kemkes.go.id/id/nik", description="Identifier system of the NIK."
    )
    identity_guard: Literal["enforce", "warn", "off"] = Field(
        "enforce", description="Refuse writes when birthDate/gender contradict the NIK."
    )
    old_number: Literal["keep", "drop"] = Field(
        "keep", description="Previous mobile number: keep as use=old with period.end, or drop."
    )
    concurrency: int = Field(
        512,
        ge=1,
        le=1024,
        description="Rows in flight at once (the ceiling when pacing is adaptive).",
    )
    batch_size: int = Field(
        50,
        ge=0,
        le=500,
        description="Requests per FHIR batch Bundle, used only when the server's "
        "CapabilityStatement lists the batch interaction (0 or 1 = never batch).",
    )
    max_rate: float | None = Field(
        None, gt=0, description="Maximum FHIR requests per second (even pacing); unset = none."
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Timeout of one FHIR request.")
    max_attempts: int = Field(5, ge=1, le=20, description="Attempts per FHIR request.")
    retry_max_wait_s: float = Field(60.0, gt=0, description="Cap on one back-off/Retry-After.")
    retry_total_s: float = Field(
        300.0, gt=0, description="Cap on the time spent retrying one request."
    )
    max_conflicts: int = Field(3, ge=1, le=10, description="Version conflicts before `conflict`.")
    # pacing and the circuit breaker: docs/resilience.md
    pacing: Literal["adaptive", "fixed"] = Field(
        "adaptive",
        description="adaptive = find the server's capacity (concurrency is the ceiling); "
        "fixed = always `concurrency` in flight.",
    )
    min_concurrency: int = Field(
        2, ge=1, le=512, description="Adaptive pacing never goes below this many in flight."
    )
    breaker_error_ratio: float = Field(
        0.5, gt=0, le=1, description="Share of 5xx/network errors that opens the circuit breaker."
    )
    breaker_window: int = Field(
        50, ge=5, le=10_000, description="Recent FHIR exchanges the breaker's ratio is taken over."
    )
    patient_id_cache: bool = Field(
        True, description="Remember NIK → Patient id in the ledger: known patients skip the search."
    )
    outage_deadline_s: float = Field(
        600.0, gt=0, description="Abort the run (exit 4) when the server stays down this long."
    )

    # --- ledger, run ------------------------------------------------------------------------
    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL of the ledger: by default the SQLite file "
        "$XDG_STATE_HOME/phonesync/ledger.sqlite3 (else under ~/.local/state); a SQLite path "
        "must be absolute (four slashes: sqlite:////var/lib/phonesync/ledger.sqlite3).",
    )
    hash_key: SecretStr | None = Field(
        None, description="Key for keyed NIK hashes in the ledger (required, keep it stable)."
    )
    snapshot_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) encrypting stored inputs (comma-separated: first encrypts).",
    )
    snapshot_retention_days: int = Field(
        90, ge=1, description="Days to keep stored inputs (frozen rows) before pruning them."
    )
    sync_mode: Literal["daily", "catch-up"] = Field(
        "catch-up",
        description="daily = only the business date's rows; catch-up = also unsettled or edited "
        "rows of the look-back window.",
    )
    catch_up_days: int = Field(
        7, ge=1, le=90, description="Look-back window of catch-up mode, in days."
    )
    timezone: str = Field("Asia/Jakarta", description="Business-date zone.")
    earliest_date: date = Field(
        date(2022, 1, 1),
        description="Earliest business date run/retry/plan/worker accept (SATUSEHAT started in "
        "2022); an earlier --date is refused, exit 2.",
    )
    failure_threshold: float = Field(
        0.01, ge=0, le=1, description="Failure ratio above which a run is completed_with_failures."
    )
    not_found_threshold: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of searched NIKs not found above which a run is "
        "completed_with_failures (once 20 rows were searched).",
    )
    invalid_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of invalid rows (invalid_nik/phone/date) above which a run is "
        "completed_with_failures (once 10 rows are in scope).",
    )
    quiet_nights: bool = Field(
        False,
        description="true: a night whose sheet has data rows but none dated the night (nor "
        "later) succeeds; false: it is completed_with_failures (a tab that stopped receiving "
        "rows).",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="On SIGTERM/SIGINT: seconds rows in flight get to finish before they are "
        "cancelled.",
    )
    lock_stale_s: float = Field(
        300.0, gt=0, description="A run lock without heartbeat for this long may be taken over."
    )
    ledger_wait_s: float = Field(
        60.0,
        ge=0,
        description="Ledger unreachable mid-run: the run stops (exit 6) and keeps trying this "
        "many seconds to record its rows and its end before it exits.",
    )
    scaleout_batch: int = Field(
        50, ge=1, le=5000, description="Scale-out: work items a worker claims at once."
    )
    scaleout_lease_s: float = Field(
        300.0, gt=0, description="Scale-out: claimed items of a silent worker are re-claimed after."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto = console on a terminal, JSON otherwise."
    )
    progress: Literal["auto", "on", "off"] = Field("auto", description="Progress bar.")

    # --- dashboard (docs/dashboard.md) ------------------------------------------------------
    dashboard_users: SecretStr | None = Field(
        None,
        description="Dashboard users `name:role:argon2hash` (role viewer|operator), separated "
        "by commas, semicolons or newlines; hashes from `phonesync hash-password`.",
    )
    dashboard_session_key: SecretStr | None = Field(
        None, description="Key signing dashboard session cookies (unset: random per process)."
    )
    dashboard_cookie_secure: bool = Field(
        True, description="Send the session cookie over HTTPS only (false for local http)."
    )
    dashboard_session_max_age_s: int = Field(
        28_800, ge=60, description="Dashboard session lifetime in seconds."
    )
    dashboard_trusted_header: str | None = Field(
        None, description="Header naming the user, set by an authenticating proxy (e.g. SSO)."
    )
    dashboard_role_header: str | None = Field(
        None, description="Header with the user's groups/role, set by the same proxy."
    )
    dashboard_operator_groups: Annotated[tuple[str, ...], NoDecode] = Field(
        ("operator",), description="Values of the role header that grant the operator role."
    )
    dashboard_slow_run_s: float = Field(
        1800.0, gt=0, description="Dashboard alert: a run longer than this many seconds."
    )

    # --- service: schedule, metrics, notifications, secrets (docs/serve.md) ------------------
    schedule: str = Field(
        "0 23 * * *",
        description="`serve`: cron expression (5 fields) in PHONESYNC_TIMEZONE, or `off`.",
    )
    catch_up_missed: bool = Field(
        True, description="`serve`: on start-up, run the last scheduled night if it was missed."
    )
    serve_host: str = Field("127.0.0.1", description="`serve`: address to listen on.")
    serve_port: int = Field(8080, ge=1, le=65535, description="`serve`: port to listen on.")
    pushgateway_url: str | None = Field(
        None, description="Prometheus Pushgateway a CLI run pushes its metrics to; unset = none."
    )
    pushgateway_job: str = Field("phonesync", description="Pushgateway job label.")
    webhook_url: SecretStr | None = Field(
        None, description="Webhook (JSON POST) called when a run breaches a threshold."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Signs webhook bodies (X-Phonesync-Signature: sha256=HMAC)."
    )
    run_window_s: float = Field(
        1800.0, gt=0, description="A run longer than this breaches (webhook, projected overrun)."
    )
    notify_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook call.")
    whatsapp_check_url: str | None = Field(
        None, description="Number-verification endpoint (POST {number} → {exists}); unset = off."
    )
    whatsapp_check_key: SecretStr | None = Field(
        None, description="Bearer key for the number-verification endpoint."
    )
    whatsapp_check_mode: Literal["record", "refuse"] = Field(
        "record",
        description="record = count and log only; refuse = a number not on WhatsApp ends "
        "invalid_phone.",
    )
    whatsapp_timeout_s: float = Field(5.0, gt=0, description="Timeout of one WhatsApp check.")
    database_password: SecretStr | None = Field(
        None, description="Password put into PHONESYNC_DATABASE_URL (keeps it out of the URL)."
    )
    vault_addr: str | None = Field(
        None, description="HashiCorp Vault address for vault:// secrets (default: VAULT_ADDR)."
    )
    vault_token: SecretStr | None = Field(
        None, description="Vault token for vault:// secrets (default: VAULT_TOKEN)."
    )
    tls_verify: bool = Field(
        True,
        description="Verify TLS certificates; false is refused unless the FHIR URL is "
        "loopback (sandbox).",
    )

    _dotenv_choice: EnvFile | None = PrivateAttr(default=None)

    _csv_columns = field_validator("columns_nik", "columns_phone", "columns_date", mode="before")(
        _csv
    )
    _csv_groups = field_validator("dashboard_operator_groups", mode="before")(_csv)

    @field_validator("hash_key")
    @classmethod
    def _strong_hash_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # Surrounding white space is a pasting accident, never part of a key: trimmed here as
        # it is for a _FILE secret, so both spellings of one key hash alike.
        text = value.get_secret_value().strip()
        if not text.startswith(_SECRET_REFERENCE_PREFIXES):
            problem = hash_key_problem(text)
            if problem is not None:
                raise PydanticCustomError("hash_key", problem)
        return SecretStr(text)

    @field_validator("database_url")
    @classmethod
    def _absolute_sqlite_path(cls, value: str) -> str:
        if value.startswith(_SECRET_REFERENCE_PREFIXES) or value == default_database_url():
            return value  # checked once resolved, the default with its own message (`load`)
        from phonesync.ledger.engine import relative_sqlite_problem

        problem = relative_sqlite_problem(value)
        if problem is not None:
            raise PydanticCustomError("database_url", "{problem}", {"problem": problem})
        return value

    @field_validator("nik_system")
    @classmethod
    def _plain_uri(cls, value: str) -> str:
        # The system goes into `identifier=<system>|<NIK>`: a `|` or `,` in it changes what the
        # search means (a `,` is OR), and white space is no URI. Such a system finds nobody, and
        # a night of `patient_not_found` must not pass for a quiet one.
        if not _NIK_SYSTEM.fullmatch(value) or any(c in value for c in "|,\\"):
            raise ValueError(
                "must be an absolute URI (scheme:…) of printable ASCII characters: no white "
                "space, no invisible or non-ASCII character, no '|', ',' or '\\'; "
                "e.g. https://fhir.kemkes.go.id/id/nik"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        dotenv_vars = getattr(dotenv_settings, "env_vars", {}) or {}
        return (
            init_settings,
            env_settings,
            _SecretFileSource(settings_cls, dotenv_vars),
            dotenv_settings,
        )

    # ------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, env_file: EnvFile | str | Path | _Find | None = _Find.FIND, **overrides: Any
    ) -> Settings:
        """Build settings, turning validation errors into one readable `ConfigError`.

        `env_file`: by default `find_env_file()` (PHONESYNC_ENV_FILE, else ./.env if present);
        a path: that file, which must exist; None: no file; or an `EnvFile` already chosen.
        An unknown PHONESYNC_* name (environment or that file) or a line of the file that
        cannot be parsed is a `ConfigError` too (`check_variable_names`).
        """
        if env_file is _Find.FIND:
            chosen = find_env_file()
        elif env_file is None:
            chosen = EnvFile(None, "no env file asked for")
        elif isinstance(env_file, EnvFile):
            chosen = env_file
        else:
            chosen = env_file_named(env_file, by="env file")
        check_variable_names(cls, chosen.path)
        try:
            settings = cls(_env_file=chosen.path, **overrides)
        except SettingsError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from None
        from phonesync.secrets import resolve_settings  # secret managers load only when named

        default_ledger = "database_url" not in settings.model_fields_set
        settings = resolve_settings(settings)
        check_ledger_location(settings.database_url, default=default_ledger)
        if settings.hash_key is not None:  # again: a gcp-sm:// or vault:// key is known only now
            problem = hash_key_problem(settings.hash_key.get_secret_value())
            if problem is not None:
                raise ConfigError(f"invalid configuration: {ENV_PREFIX}HASH_KEY: {problem}")
        for secret in (
            settings.fhir_api_key,
            settings.oauth_client_secret,
            settings.hash_key,
            settings.snapshot_key,
            settings.dashboard_users,
            settings.dashboard_session_key,
        ):
            if secret is not None:
                register_secret(secret.get_secret_value())
        settings._dotenv_choice = chosen
        return settings

    @property
    def env_file(self) -> EnvFile:
        """The .env file these settings were read from (none when built without `load`)."""
        return self._dotenv_choice or EnvFile(None, "settings not loaded from the environment")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def require_for_run(self) -> None:
        """Check the settings a sync needs; one error listing everything missing."""
        missing: list[str] = []
        if self.source == "sheets":
            missing += [n for n in ("sheet_id", "service_account_key") if getattr(self, n) is None]
        elif self.source_file is None:
            missing.append("source_file")
        if self.fhir_base_url is None:
            missing.append("fhir_base_url")
        if self.fhir_auth == "api-key" and self.fhir_api_key is None:
            missing.append("fhir_api_key")
        if self.fhir_auth == "oauth2":
            missing += [
                n
                for n in ("oauth_token_url", "oauth_client_id", "oauth_client_secret")
                if getattr(self, n) is None
            ]
        if self.hash_key is None:
            missing.append("hash_key")
        if missing:
            names = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise ConfigError(f"missing settings: {names} (see docs/configuration.md)")

    def effective_config(self) -> dict[str, Any]:
        """The settings of a run as recorded in the ledger: secrets shown only as set/unset."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "[set]"
            elif name == "database_url":
                from phonesync.secrets import hide_url_password

                out[name] = hide_url_password(value)
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, date):
                out[name] = value.isoformat()
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = value
        return out
