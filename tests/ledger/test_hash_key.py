"""PHONESYNC_HASH_KEY: strong enough, and the one this ledger was written with (newer-wins)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.safety.nights import HEADER, D, mobiles, nik_for, patient

from phonesync import secrets
from phonesync.cli import main
from phonesync.crypto import new_key
from phonesync.errors import ConfigError
from phonesync.fhir.session import open_fhir
from phonesync.ledger import HashKeyMismatch, Ledger, service_state
from phonesync.ledger.hash_key import check_value
from phonesync.ledger.schema import service_state as service_state_table
from phonesync.sandbox.local import LocalSandbox
from phonesync.scaleout.coordinator import plan_night
from phonesync.scaleout.worker import run_worker
from phonesync.settings import Settings
from phonesync.source import open_source
from phonesync.sync import RunRequest

KEY_A = b"the-key-this-ledger-was-written-with"
KEY_B = b"another-key-of-the-same-length-xyz!"
MISMATCH = "PHONESYNC_HASH_KEY differs from the key this ledger was written with"


@pytest.mark.parametrize("key", ["", "   ", "abc", "x" * 15])
def test_empty_or_short_hash_keys_are_refused_without_quoting_them(key: str) -> None:
    """An empty, blank or shorter-than-16 key is a configuration error naming the setting."""
    with pytest.raises(ConfigError) as caught:
        Settings.load(env_file=None, hash_key=key)
    assert caught.value.exit_code == 2
    assert "PHONESYNC_HASH_KEY" in str(caught.value)
    if key.strip():
        assert key not in str(caught.value)


def test_a_short_key_behind_a_secret_reference_is_refused_once_resolved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`vault://…` is checked after it is resolved: a short secret there is refused too."""
    monkeypatch.setitem(secrets.RESOLVERS, "vault", lambda _reference, _settings: "tiny")
    with pytest.raises(ConfigError, match="PHONESYNC_HASH_KEY: is shorter than 16") as caught:
        Settings.load(env_file=None, hash_key="vault://secret/phonesync#hash_key")
    assert "tiny" not in str(caught.value)


def test_a_16_character_hash_key_is_accepted() -> None:
    """16 characters is the minimum."""
    settings = Settings.load(env_file=None, hash_key="k" * 16)
    assert settings.hash_key is not None


@pytest.mark.parametrize(
    "pasted", [" k3y-of-sixteen-chars", "k3y-of-sixteen-chars\n", "\tk3y-of-sixteen-chars "]
)
def test_white_space_around_the_key_is_trimmed(pasted: str) -> None:
    """A key pasted with a space or newline around it is the same key (as from a _FILE)."""
    settings = Settings.load(env_file=None, hash_key=pasted)
    assert settings.hash_key is not None
    assert settings.hash_key.get_secret_value() == "k3y-of-sixteen-chars"


def test_a_short_key_in_the_environment_stops_run_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phonesync run` with a 3-character key: exit 2 before anything is opened or created."""
    ledger_file = tmp_path / "ledger.sqlite3"
    env = tmp_path / "x.env"
    env.write_text(f"PHONESYNC_HASH_KEY=k3y\nPHONESYNC_DATABASE_URL=sqlite:///{ledger_file}\n")
    assert main(["--env-file", str(env), "run", "--date", "2024-03-15"]) == 2
    err = capsys.readouterr().err
    assert "PHONESYNC_HASH_KEY" in err
    assert "k3y" not in err
    assert not ledger_file.exists()


def test_first_use_records_a_check_value_never_the_key(ledger: Ledger) -> None:
    """The first check stores HMAC(key, label) in service_state; the same key passes again."""
    ledger.check_hash_key(KEY_A)
    ledger.check_hash_key(KEY_A)
    stored = service_state.get(ledger.engine, service_state.HASH_KEY_CHECK)
    assert stored == check_value(KEY_A)
    assert stored is not None
    assert KEY_A.decode() not in stored
    with ledger.engine.connect() as conn:
        values = conn.execute(sa.select(service_state_table.c.value)).scalars().all()
    assert all(KEY_A.decode() not in value for value in values)


def test_another_key_is_refused_as_a_configuration_error(ledger: Ledger) -> None:
    """A ledger written with key A refuses key B (exit 2), and keeps remembering key A."""
    ledger.check_hash_key(KEY_A)
    with pytest.raises(HashKeyMismatch) as caught:
        ledger.check_hash_key(KEY_B)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(MISMATCH)
    assert KEY_A.decode() not in str(caught.value)
    assert KEY_B.decode() not in str(caught.value)
    assert service_state.get(ledger.engine, service_state.HASH_KEY_CHECK) == check_value(KEY_A)
    ledger.check_hash_key(KEY_A)


def test_two_first_uses_racing_with_different_keys_one_wins(ledger_url: str) -> None:
    """Two processes' first checks at the same moment: one key is recorded, the other refused."""
    Ledger.open(ledger_url).close()  # migrated; no key recorded yet
    ledgers = [Ledger.open(ledger_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: dict[bytes, str] = {}

    def first_use(ledger: Ledger, key: bytes) -> None:
        barrier.wait(timeout=30)
        try:
            ledger.check_hash_key(key)
        except HashKeyMismatch:
            results[key] = "refused"
        else:
            results[key] = "recorded"

    threads = [
        threading.Thread(target=first_use, args=(ledger, key))
        for ledger, key in zip(ledgers, (KEY_A, KEY_B), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert sorted(results.values()) == ["recorded", "refused"]
        [winner] = [key for key, result in results.items() if result == "recorded"]
        stored = service_state.get(ledgers[0].engine, service_state.HASH_KEY_CHECK)
        assert stored == check_value(winner)
    finally:
        for ledger in ledgers:
            ledger.close()


# --- the fault as the user test found it: a replay of an older date under another key -----------
BIRTH, SEX = D.replace(year=1995, day=2), "female"
NIK = nik_for(BIRTH, SEX, 1)
NEWER, OLDER = "+6281211110001", "+6281399990001"


def _sheet() -> list[list[Any]]:
    return [
        list(HEADER),
        [NIK, "0812-1111-0001", "15/03/2024"],  # r2: D, the newer number
        [NIK, "0813-9999-0001", "12/03/2024"],  # r3: D-3, older
    ]


def _env_with(path: Path, **values: str) -> str:
    lines = [line for line in path.read_text().splitlines() if line.split("=")[0] not in values]
    lines += [f"{name}={value}" for name, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_replaying_an_older_date_under_another_key_writes_nothing(
    tmp_path: Path, ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Night D, then `PHONESYNC_SYNC_MODE=daily run --date D-3 --from-source` with a new key:
    exit 2 naming the setting, no FHIR write, the newer number stays; `retry` is refused too."""
    patients = [patient("P1", NIK, BIRTH, SEX, "+6281100000001")]
    with LocalSandbox(patients, _sheet(), tmp_path, database_url=ledger_url) as sb:
        env = tmp_path / "sb.env"
        sb.write_env(env)
        first_env = _env_with(env, PHONESYNC_HASH_KEY=KEY_A.decode())
        assert main(["--env-file", first_env, "run", "--date", D.isoformat()]) == 0
        assert mobiles(sb, "P1") == [NEWER]
        versions = sb.store.version_count("P1")
        capsys.readouterr()
        with Ledger.open(ledger_url) as ledger:
            first_run = ledger.list_runs()[0].run_id

        older = (D - timedelta(days=3)).isoformat()
        replay_env = _env_with(env, PHONESYNC_HASH_KEY=KEY_B.decode(), PHONESYNC_SYNC_MODE="daily")
        code = main(["--env-file", replay_env, "run", "--date", older, "--from-source"])
        err = capsys.readouterr().err
        assert code == 2
        assert MISMATCH in err
        assert KEY_A.decode() not in err
        assert KEY_B.decode() not in err
        assert main(["--env-file", replay_env, "retry", first_run]) == 2
        assert main(["--env-file", replay_env, "run", "--date", older, "--dry-run"]) == 2
        assert sb.store.version_count("P1") == versions
        assert mobiles(sb, "P1") == [NEWER]
        with Ledger.open(ledger_url) as ledger:
            assert [run.run_id for run in ledger.list_runs()] == [first_run]

        # with the ledger's own key the same replay is safe: the newer number wins
        same_key_env = _env_with(env, PHONESYNC_HASH_KEY=KEY_A.decode())
        assert main(["--env-file", same_key_env, "run", "--date", older, "--from-source"]) == 0
        assert mobiles(sb, "P1") == [NEWER]
        assert OLDER not in str(sb.store.get("P1"))


@pytest.mark.postgres
def test_scale_out_plan_and_worker_refuse_another_key(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    """`plan` and `worker` check the key before they touch the ledger or the queue."""
    patients = [patient("P1", NIK, BIRTH, SEX, "+6281100000001")]
    overrides = {"snapshot_key": new_key(), "sync_mode": "daily"}
    with (
        LocalSandbox(
            patients, _sheet(), tmp_path, database_url=empty_postgres_url, overrides=overrides
        ) as sb,
        Ledger.open(empty_postgres_url) as ledger,
    ):
        ledger.check_hash_key(KEY_A)  # the sandbox's settings carry a key of their own
        source = open_source(sb.settings)
        with pytest.raises(HashKeyMismatch):
            asyncio.run(plan_night(sb.settings, ledger, source, RunRequest(business_date=D), 2))
        with pytest.raises(HashKeyMismatch):
            asyncio.run(run_worker(sb.settings, ledger, D, "w1", open_fhir, wait_s=0))
        assert ledger.list_runs() == []
        assert ledger.lock_for(D) is None
