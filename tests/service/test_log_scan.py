"""C15 across a full run: no NIK, phone number, key or token in clear in any log line."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.service.conftest import DAY, NIGHT, fail_searches

from phonesync import logs
from phonesync.batch import run_observed
from phonesync.ledger.store import Ledger
from phonesync.normalise.phone import normalise_phone
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.source import open_source
from phonesync.sync import RunRequest


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything phonesync logs at DEBUG, through its own handler (removed afterwards)."""
    import logging

    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield stream
    for handler in list(root.handlers):
        if getattr(handler, "_phonesync", False):
            root.removeHandler(handler)
    root.setLevel(level)


def personal_values(night: SandboxData) -> set[str]:
    """Every NIK and phone number of the night, as digits and as written."""
    found: set[str] = set()
    for row in night.values[1:]:
        for cell in row[1:4]:
            text = str(cell).strip()
            if len(re.sub(r"\D", "", text)) >= 10:
                found |= {text, re.sub(r"\D", "", text)}
                normal = normalise_phone(cell)
                if isinstance(normal, str):
                    found |= {normal, normal[1:], "0" + normal[3:]}
    for patient in night.patients:
        for ident in patient.get("identifier", []):
            if "/nik" in str(ident.get("system")):  # NIK and mother's NIK; not the IHS number
                found.add(str(ident.get("value")))
        for tel in patient.get("telecom", []):
            found.add(str(tel.get("value")))
    return {v for v in found if len(re.sub(r"\D", "", v)) >= 10}


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("auth", ["api-key", "oauth2"])
async def test_no_personal_data_or_secret_in_any_log_line(
    tmp_path: Path, night: SandboxData, captured: io.StringIO, fmt: str, auth: str
) -> None:
    """A run with server errors echoing NIK, phone and key logs none of them in clear."""
    overrides = {"max_attempts": 2, "catch_up_missed": False}
    profile = FhirProfile(auth=auth)  # type: ignore[arg-type]
    with LocalSandbox(night.patients, night.values, tmp_path, profile, overrides=overrides) as sb:
        logs.configure("DEBUG", fmt, stream=captured)
        settings = sb.settings
        phone = next(t["value"] for p in night.patients for t in p.get("telecom", []))
        key = profile.api_key if auth == "api-key" else profile.client_secret
        hash_key = settings.hash_key.get_secret_value() if settings.hash_key else ""
        said = f"{{nik}} {phone} key={key} hash={hash_key}"
        niks = fail_searches(sb, night, 3, body=json.dumps({"issue": [{"diagnostics": said}]}))
        down = f"down {niks[0]}"
        sb.store.faults.push(
            method="GET",
            path_prefix="/Patient/",
            status=503,
            body=down,
            headers={"Retry-After": "0"},
        )
        with Ledger.open(settings.database_url) as ledger:
            outcome = await run_observed(
                settings, ledger, open_source(settings), RunRequest(DAY), now=lambda: NIGHT
            )
        tokens = {
            r.headers.get("Authorization", "").removeprefix("Bearer ") for r in sb.store.requests
        } - {""}
    assert outcome.summary["outcomes"]["failed"] == 3
    text = captured.getvalue()
    assert "retrying" in text
    assert "row" in text
    secrets = {key, hash_key, *tokens}
    assert settings.service_account_key is not None
    key_info = json.loads(settings.service_account_key.get_secret_value())
    secrets.add(key_info["private_key"].splitlines()[1])
    watched = personal_values(night) | secrets
    served = said.replace("{nik}", niks[0])
    assert {niks[0], phone, key, hash_key} <= watched  # the scan would see what the server said
    assert [v for v in watched if v and v in served]
    leaks = [v for v in watched if v and v in text]
    assert leaks == []
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert any(line.get("row") for line in lines if line["level"] == "warning")
        assert all(line.get("run_id") for line in lines if line["logger"] == "phonesync.fhir.http")
