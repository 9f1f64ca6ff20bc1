"""Secrets from where operations keep them: environment, mounted file, Secret Manager, Vault.

A secret setting (every `SecretStr` field, and `PHONESYNC_DATABASE_URL`) arrives in one of four
forms; the first two are read by `Settings` itself, the last two are *references* resolved here,
once, when the settings load (`Settings.load` → `resolve_settings`):

    PHONESYNC_FHIR_API_KEY=…                                   the value itself
    PHONESYNC_FHIR_API_KEY_FILE=/run/secrets/fhir-api-key      a mounted file (Kubernetes, Docker)
    PHONESYNC_FHIR_API_KEY=gcp-sm://projects/P/secrets/S/versions/V     Google Secret Manager
    PHONESYNC_FHIR_API_KEY=vault://secret/phonesync/prod#fhir_api_key   Vault KV v2 (mount/path#key)

The scheme picks the resolver by dict lookup (`RESOLVERS`). Every resolved value is registered with
`masking.register_secret`, so it is scrubbed from any log line or error text; errors name the
*reference* (not a secret) and never echo a value or a token. `PHONESYNC_DATABASE_PASSWORD` is put
into the database URL here, so the URL in the environment can stay password-free.

TLS: `PHONESYNC_TLS_VERIFY=false` is accepted only when the FHIR base URL is loopback (a local
sandbox with a self-signed certificate); anywhere else it is a configuration error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from pydantic import SecretStr

from phonesync.errors import ConfigError
from phonesync.masking import register_secret

if TYPE_CHECKING:
    from phonesync.settings import Settings

Resolver = Callable[[str, "Settings"], str]
#: Settings never resolved through a reference: they are what opens the secret stores.
_BOOTSTRAP = frozenset({"vault_token"})
_GCP_NAME = re.compile(r"projects/[^/]+/secrets/[^/]+/versions/[^/]+")
_LOOPBACK_NAMES = frozenset({"localhost"})


def secret_fields(settings: Settings) -> list[str]:
    """Names of the settings that may hold a secret or a reference to one."""
    names = [
        name
        for name, field in type(settings).model_fields.items()
        if field.annotation in (SecretStr, SecretStr | None)
    ]
    return [*names, "database_url"]


def _text(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def _scheme(text: str) -> str:
    return text.partition("://")[0] if "://" in text else ""


def resolve_settings(settings: Settings) -> Settings:
    """Settings with every secret reference replaced by its value; checks `tls_verify`."""
    updates: dict[str, Any] = {}
    for name in secret_fields(settings):
        raw = getattr(settings, name)
        text = _text(raw)
        resolver = RESOLVERS.get(_scheme(text)) if text and name not in _BOOTSTRAP else None
        if text is None or resolver is None:
            continue
        value = resolver(text, settings)
        register_secret(value)
        updates[name] = SecretStr(value) if isinstance(raw, SecretStr) else value
    password = updates.get("database_password", settings.database_password)
    url = updates.get("database_url", settings.database_url)
    if password is not None:
        updates["database_url"] = with_password(url, password.get_secret_value())
    register_url_password(updates.get("database_url", url))
    if updates:
        settings = settings.model_copy(update=updates)
    check_tls(settings)
    return settings


# --- database URL ---------------------------------------------------------------------------------
def with_password(url: str, password: str) -> str:
    """`url` with its password set (SQLAlchemy quotes it)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError("PHONESYNC_DATABASE_URL is not a valid database URL") from None
    register_secret(password)
    return parsed.set(password=password).render_as_string(hide_password=False)


def register_url_password(url: str) -> None:
    """Scrub a password written into the database URL from every log line and error."""
    try:
        password = sa.make_url(url).password
    except sa.exc.ArgumentError:
        return
    if password:
        register_secret(str(password))


def hide_url_password(url: str) -> str:
    """The database URL as it may be shown and stored: `postgresql+psycopg://u:***@h/db`."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "[not a valid URL]"


# --- TLS ------------------------------------------------------------------------------------------
def is_loopback_url(url: str | None) -> bool:
    """Whether `url` points at this machine (127.0.0.0/8, ::1, localhost)."""
    host = urlsplit(url or "").hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(settings: Settings) -> None:
    """Refuse `tls_verify=false` unless the FHIR server is a local sandbox."""
    if not settings.tls_verify and not is_loopback_url(settings.fhir_base_url):
        raise ConfigError(
            "PHONESYNC_TLS_VERIFY=false is only allowed for a loopback FHIR URL (the sandbox); "
            "install the server's CA certificate instead"
        )


# --- Google Secret Manager ----------------------------------------------------------------------
def _default_gcp_client() -> Any:
    try:
        from google.cloud import secretmanager
    except ImportError:
        raise ConfigError(
            "gcp-sm:// secrets need google-cloud-secret-manager (install phonesync[gcp])"
        ) from None
    return secretmanager.SecretManagerServiceClient()


#: Builds the Secret Manager client (Application Default Credentials); tests point it elsewhere.
gcp_client_factory: Callable[[], Any] = _default_gcp_client


def resolve_gcp(reference: str, settings: Settings) -> str:
    """`gcp-sm://projects/P/secrets/S/versions/V` → the secret version's payload (UTF-8)."""
    name = reference.removeprefix("gcp-sm://")
    if not _GCP_NAME.fullmatch(name):
        raise ConfigError(
            f"{reference!r} is not gcp-sm://projects/PROJECT/secrets/SECRET/versions/VERSION"
        )
    try:
        response = gcp_client_factory().access_secret_version(request={"name": name})
        return str(response.payload.data.decode("utf-8"))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - google-api-core raises many types; none may leak
        raise ConfigError(
            f"cannot read secret {reference} from Google Secret Manager ({type(exc).__name__})"
        ) from None


# --- HashiCorp Vault (KV v2) --------------------------------------------------------------------
def _vault_client(settings: Settings) -> Any:
    import hvac  # type: ignore[import-untyped]  # hvac ships no type hints

    token = settings.vault_token.get_secret_value() if settings.vault_token else None
    if token:
        register_secret(token)
    # url/token None: hvac falls back to VAULT_ADDR / VAULT_TOKEN (and ~/.vault-token).
    return hvac.Client(url=settings.vault_addr, token=token, timeout=10)


def _vault_parts(reference: str) -> tuple[str, str, str, int | None]:
    parts = urlsplit(reference)
    mount, path, key = parts.netloc, parts.path.strip("/"), parts.fragment
    version = parse_qs(parts.query).get("version", [None])[0]
    if not (mount and path and key) or (version is not None and not version.isdigit()):
        raise ConfigError(f"{reference!r} is not vault://MOUNT/PATH[?version=N]#KEY")
    return mount, path, key, int(version) if version is not None else None


def resolve_vault(reference: str, settings: Settings) -> str:
    """`vault://mount/path#key` → field `key` of the KV v2 secret `path` under `mount`."""
    mount, path, key, version = _vault_parts(reference)
    try:
        reply = _vault_client(settings).secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, version=version, raise_on_deleted_version=True
        )
    except Exception as exc:  # noqa: BLE001 - hvac/requests errors may quote the request; none leak
        raise ConfigError(f"cannot read {mount}/{path} from Vault ({type(exc).__name__})") from None
    data = (reply.get("data") or {}).get("data") or {}
    value = data.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"Vault secret {mount}/{path} has no text field {key!r}")
    return value


RESOLVERS: dict[str, Resolver] = {"gcp-sm": resolve_gcp, "vault": resolve_vault}
