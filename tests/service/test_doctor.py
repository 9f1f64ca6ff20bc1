"""`phonesync doctor` against the sandboxes: a verdict per check, non-zero exit on a failure."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from tests.ledger.helpers import dead_pid, start_run

from phonesync.cli import main
from phonesync.doctor import FAIL, OK, WARN, exit_code, render, run_doctor
from phonesync.ledger import locks
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.sheets_server import make_service_account


def by_check(verdicts: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {v.check: v.result for v in verdicts}


async def test_a_healthy_set_up_passes_every_check(sandbox: LocalSandbox, ledger: Ledger) -> None:
    """Env file, configuration, sheet, FHIR metadata/search, clock and database all ok: exit 0."""
    verdicts = await run_doctor(sandbox.settings)
    assert by_check(verdicts) == {
        "env file": OK,
        "configuration": OK,
        "sheet": OK,
        "fhir metadata": OK,
        "fhir search": OK,
        "clock": OK,
        "database": OK,
        "runs": OK,
    }
    assert exit_code(verdicts) == 0
    assert "service" in render(verdicts)  # the account the sheet must be shared with


@pytest.mark.parametrize("killed", [True, False])
async def test_a_run_whose_process_is_gone_is_a_warning(
    sandbox: LocalSandbox, ledger: Ledger, killed: bool
) -> None:
    """After `kill -9` the run stays `running` in the ledger until the next run takes over its
    lock (fresh-user test: doctor said all ok): doctor warns, naming the run; a live one is ok."""
    now = datetime.now(UTC)
    start_run(ledger, "r-night", business_date=date(2024, 3, 15), started_at=now)
    owner = locks.owner_here(dead_pid() if killed else os.getpid())
    ledger.acquire_lock(date(2024, 3, 15), "r-night", owner, stale_after_s=300, now=now)
    verdicts = {v.check: v for v in await run_doctor(sandbox.settings)}
    runs = verdicts["runs"]
    if killed:
        assert runs.result == WARN
        assert "r-night (2024-03-15)" in runs.detail
        assert "the process is gone" in runs.detail
    else:
        assert (runs.result, runs.detail) == (OK, "in progress: r-night")


async def test_a_broken_fhir_key_fails_and_is_never_shown(sandbox: LocalSandbox) -> None:
    """A wrong API key: the FHIR check fails with the server's refusal; exit 1; key not echoed."""
    settings = sandbox.settings.model_copy(update={"fhir_api_key": SecretStr("wrong-key-4711")})
    verdicts = await run_doctor(settings)
    assert by_check(verdicts)["fhir"] == FAIL
    assert exit_code(verdicts) == 1
    assert "wrong-key-4711" not in render(verdicts)


async def test_a_broken_service_account_key_fails_the_sheet_check(sandbox: LocalSandbox) -> None:
    """A service-account key the sandbox's token endpoint does not know: sheet FAIL."""
    assert sandbox.settings.service_account_key is not None
    known = json.loads(sandbox.settings.service_account_key.get_secret_value())
    other, _ = make_service_account(known["token_uri"])  # same endpoint, another key pair
    settings = sandbox.settings.model_copy(
        update={"service_account_key": SecretStr(json.dumps(other))}
    )
    verdicts = await run_doctor(settings)
    assert by_check(verdicts)["sheet"] == FAIL
    assert exit_code(verdicts) == 1


@pytest.mark.parametrize(("skew_s", "result"), [(0, OK), (90, WARN), (-900, FAIL)])
async def test_clock_skew_against_the_servers_date(
    sandbox: LocalSandbox, skew_s: int, result: str
) -> None:
    """Our clock vs the FHIR server's Date header: ok, warn beyond 30 s, fail beyond 5 min."""
    verdicts = await run_doctor(
        sandbox.settings, now=lambda: datetime.now(UTC) + timedelta(seconds=skew_s)
    )
    assert by_check(verdicts)["clock"] == result


async def test_an_empty_database_is_a_warning_not_a_failure(sandbox: LocalSandbox) -> None:
    """No ledger file before the sandbox's first run: the run creates it (doctor does not)."""
    verdicts = await run_doctor(sandbox.settings)
    assert by_check(verdicts)["database"] == WARN


async def test_a_hash_key_other_than_the_ledgers_fails_before_the_night(
    sandbox: LocalSandbox, ledger: Ledger
) -> None:
    """A ledger a sync has used: doctor compares PHONESYNC_HASH_KEY with the key it was written
    with (read only), as every run does at its start. The right key: ok, and said; another
    (a secret-store mishap, a half-done rotation): database FAIL, exit 1, no key shown."""
    assert sandbox.settings.hash_key is not None
    ledger.check_hash_key(sandbox.settings.hash_key.get_secret_value().encode())  # a first run
    right = {v.check: v for v in await run_doctor(sandbox.settings)}["database"]
    assert right.result == OK
    assert "PHONESYNC_HASH_KEY is the key it was written with" in right.detail
    other = "0123456789abcdef0123456789abcdef"
    settings = sandbox.settings.model_copy(update={"hash_key": SecretStr(other)})
    verdicts = await run_doctor(settings)
    wrong = {v.check: v for v in verdicts}["database"]
    assert wrong.result == FAIL
    assert "PHONESYNC_HASH_KEY differs from the key this ledger was written with" in wrong.detail
    assert exit_code(verdicts) == 1
    assert other not in render(verdicts)
    with Ledger.open(sandbox.settings.database_url) as again:  # nothing was recorded for it
        again.check_hash_key(sandbox.settings.hash_key.get_secret_value().encode())


def test_the_doctor_command_prints_verdicts_and_exits_1_on_a_failure(
    sandbox: LocalSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync --env-file … doctor`: exit 0 when healthy, 1 with a wrong API key."""
    import logging

    env = sandbox.write_env(tmp_path / "sandbox.env")
    root_handlers = list(logging.getLogger().handlers)
    try:
        assert main(["--env-file", str(env), "doctor"]) == 0
        healthy = capsys.readouterr().out
        broken = tmp_path / "broken.env"
        broken.write_text(env.read_text() + "PHONESYNC_FHIR_API_KEY=not-the-key-99\n")
        assert main(["--env-file", str(broken), "doctor"]) == 1
        failed = capsys.readouterr().out
    finally:
        for handler in logging.getLogger().handlers:
            if handler not in root_handlers:
                logging.getLogger().removeHandler(handler)
    assert "[ ok ] configuration" in healthy
    assert "[FAIL] fhir" in failed
    assert "not-the-key-99" not in failed
