"""Secrets from env, _FILE, Google Secret Manager and Vault; never shown anywhere."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from tests.service.conftest import Recorder

from phonesync import secrets
from phonesync.cli import build_parser
from phonesync.errors import ConfigError
from phonesync.masking import redact
from phonesync.settings import Settings

VAULT_TOKEN = "hvs.test-token-0001"
API_KEY = "key-from-vault-8842"


def vault(raw: bytes, path: str) -> tuple[int, object]:
    """Vault KV v2: GET /v1/{mount}/data/{path} → {"data": {"data": {...}, "metadata": {...}}}."""
    if path == "/v1/secret/data/phonesync/prod":
        return 200, {"data": {"data": {"fhir_api_key": API_KEY}, "metadata": {"version": 3}}}
    return 404, {"errors": []}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PHONESYNC_*/VAULT_* variables from the outer environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("PHONESYNC_", "VAULT_")):
            monkeypatch.delenv(name)


def test_a_vault_reference_is_resolved_through_the_kv2_api(
    recorder: Recorder, clean_env: None
) -> None:
    """vault://secret/phonesync/prod#fhir_api_key → the value, with our token; shown nowhere."""
    recorder.answer = vault
    settings = Settings.load(
        env_file=None,
        fhir_api_key="vault://secret/phonesync/prod#fhir_api_key",
        vault_addr=recorder.url,
        vault_token=VAULT_TOKEN,
    )
    assert settings.fhir_api_key is not None
    assert settings.fhir_api_key.get_secret_value() == API_KEY
    assert recorder.seen[0]["headers"]["X-Vault-Token"] == VAULT_TOKEN
    assert settings.effective_config()["fhir_api_key"] == "[set]"
    assert redact(f"sent {API_KEY} with {VAULT_TOKEN}") == "sent [secret] with [secret]"


@pytest.mark.parametrize(
    "reference",
    ["vault://secret/phonesync/missing#fhir_api_key", "vault://secret/phonesync/prod#nope"],
)
def test_vault_errors_name_the_reference_never_a_value(
    recorder: Recorder, clean_env: None, reference: str
) -> None:
    """An unknown path or key is a ConfigError that quotes neither the token nor a value."""
    recorder.answer = vault
    with pytest.raises(ConfigError) as caught:
        Settings.load(
            env_file=None, hash_key=reference, vault_addr=recorder.url, vault_token=VAULT_TOKEN
        )
    assert "secret/phonesync" in str(caught.value)
    assert VAULT_TOKEN not in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_a_secret_manager_reference_uses_the_google_client(
    recorder: Recorder, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcp-sm://… → the library's REST client, pointed at a loopback stand-in, reads the payload."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    def answer(_raw: bytes, path: str) -> tuple[int, object]:
        payload = base64.b64encode(b"hash-key-from-gcp").decode()
        return 200, {"name": path.removeprefix("/v1/").removesuffix(":access"),
                     "payload": {"data": payload}}  # fmt: skip

    recorder.answer = answer
    monkeypatch.setattr(
        secrets,
        "gcp_client_factory",
        lambda: secretmanager.SecretManagerServiceClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options={"api_endpoint": recorder.url},
        ),
    )
    settings = Settings.load(
        env_file=None, hash_key="gcp-sm://projects/p1/secrets/hash-key/versions/2"
    )
    assert settings.hash_key is not None
    assert settings.hash_key.get_secret_value() == "hash-key-from-gcp"
    assert recorder.seen[0]["path"] == "/v1/projects/p1/secrets/hash-key/versions/2:access"


def test_a_bad_secret_manager_name_is_a_config_error(clean_env: None) -> None:
    """gcp-sm:// needs projects/P/secrets/S/versions/V."""
    with pytest.raises(ConfigError, match="versions"):
        Settings.load(env_file=None, hash_key="gcp-sm://projects/p1/secrets/hash-key")


def test_the_database_password_comes_from_a_file_and_is_never_stored(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHONESYNC_DATABASE_PASSWORD_FILE goes into the URL; effective_config and redact hide it."""
    secret_file = tmp_path / "db-password"
    secret_file.write_text("pa55-w0rd-xyz\n")
    monkeypatch.setenv("PHONESYNC_DATABASE_PASSWORD_FILE", str(secret_file))
    monkeypatch.setenv("PHONESYNC_DATABASE_URL", "postgresql+psycopg://phonesync@db:5432/ledger")
    settings = Settings.load(env_file=None)
    assert settings.database_url == "postgresql+psycopg://phonesync:pa55-w0rd-xyz@db:5432/ledger"
    assert "pa55-w0rd-xyz" not in str(settings.effective_config())
    assert settings.effective_config()["database_url"].startswith(
        "postgresql+psycopg://phonesync:***@"
    )
    assert "pa55-w0rd-xyz" not in redact(f"could not connect to {settings.database_url}")


def test_secret_values_never_appear_in_help(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`phonesync --help` lists every setting but shows no secret's value."""
    monkeypatch.setenv("PHONESYNC_FHIR_API_KEY", "env-key-5150")
    text = build_parser().format_help()
    assert "PHONESYNC_WEBHOOK_URL" in text
    assert "PHONESYNC_VAULT_TOKEN" in text
    assert "env-key-5150" not in text


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/fhir-r4/v1", True),
        ("https://localhost/fhir", True),
        ("https://[::1]:8443/fhir", True),
        ("https://api-satusehat.kemkes.go.id/fhir-r4/v1", False),
        ("https://127.0.0.1.nip.io/fhir", False),
    ],
)
def test_tls_verification_can_only_be_off_for_a_loopback_sandbox(
    clean_env: None, url: str, allowed: bool
) -> None:
    """tls_verify=false is a ConfigError unless the FHIR URL is loopback."""
    if allowed:
        assert Settings.load(env_file=None, fhir_base_url=url, tls_verify=False).tls_verify is False
    else:
        with pytest.raises(ConfigError, match="TLS_VERIFY"):
            Settings.load(env_file=None, fhir_base_url=url, tls_verify=False)
