"""A setting phonesync would not read is a configuration error, never a silent default.

A misspelled `PHONESYNC_*` name (`PHONESYNC_CONCURENCY=4`, `PHONESYNC_OLD_NUMBRE=drop`), in
the environment or in the .env file read, used to be ignored: the night ran with the default,
and `doctor` said all ok. A line of the .env file python-dotenv cannot parse was skipped with a
warning on stderr. Both now stop every command with exit 2 (doctor: a FAIL), one line naming the
variable (with the closest known name) or the file and line number, never a value or a line's
content (either may be a secret). What the sandbox and the demo write still loads. Real
subprocesses of `python -m phonesync`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.cli.isolated import isolated_phonesync
from tests.safety.nights import HEADER, D, nik_for, patient

from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox

KEY = "test-hash-key-of-the-setting-name-tests"
SECRET = "s3cr3t-value-never-shown"


def phonesync(cwd: Path, *words: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m phonesync WORDS` in `cwd`, with no PHONESYNC_* from outside but `env`."""
    cwd.mkdir(parents=True, exist_ok=True)
    return isolated_phonesync(
        cwd, words, home=cwd.parent / "home", state=cwd.parent / "state", env=env
    )


def good_env(tmp_path: Path, *extra: str) -> Path:
    """A .env file naming an existing (empty) ledger, then the `extra` lines."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    Ledger.open(url).close()
    path = tmp_path / "phonesync.env"
    path.write_text(
        "\n".join([f"PHONESYNC_DATABASE_URL={url}", f"PHONESYNC_HASH_KEY={KEY}", *extra]) + "\n"
    )
    return path


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "words",
    [["run", "--date", "2024-03-15"], ["runs"], ["serve"]],
    ids=["run", "runs", "serve"],
)
def test_a_misspelled_setting_in_the_env_file_is_exit_2_with_the_known_name(
    tmp_path: Path, words: list[str]
) -> None:
    """The name, the suggestion, the file and its line; not the value."""
    env = good_env(tmp_path, "PHONESYNC_CONCURENCY=4", f"PHONESYNC_FHIR_APIKEY={SECRET}")
    done = phonesync(tmp_path / "cwd", "--env-file", str(env), *words)
    assert done.returncode == 2, done.stderr
    err = one_line(done)
    assert err.startswith("phonesync: invalid configuration: ")
    assert "unknown setting PHONESYNC_CONCURENCY (did you mean PHONESYNC_CONCURRENCY?)" in err
    assert f"in {env} line 3" in err
    assert "unknown setting PHONESYNC_FHIR_APIKEY (did you mean PHONESYNC_FHIR_API_KEY?)" in err
    assert SECRET not in done.stderr + done.stdout
    assert "=4" not in err


def test_a_misspelled_setting_in_the_environment_is_exit_2(tmp_path: Path) -> None:
    """A write-mode/old-number typo in the environment (a unit file, a ConfigMap) changes what
    is written to patient records: refused, never the default. Names without a close known
    one get no suggestion."""
    env = good_env(tmp_path)
    done = phonesync(
        tmp_path / "cwd",
        "--env-file",
        str(env),
        "run",
        "--date",
        "2024-03-15",
        PHONESYNC_OLD_NUMBRE=SECRET,
        PHONESYNC_WRITEMODE="patch",
        PHONESYNC_NOTHING_LIKE_IT="1",
    )
    assert done.returncode == 2, done.stderr
    err = one_line(done)
    old = "unknown setting PHONESYNC_OLD_NUMBRE (did you mean PHONESYNC_OLD_NUMBER?)"
    assert f"{old} in the environment" in err
    assert "unknown setting PHONESYNC_WRITEMODE (did you mean PHONESYNC_WRITE_MODE?)" in err
    assert "unknown setting PHONESYNC_NOTHING_LIKE_IT in the environment" in err
    assert SECRET not in done.stderr + done.stdout


def test_known_names_from_outside_settings_are_accepted_and_a_typo_is_not(tmp_path: Path) -> None:
    """The `_FILE` variant of a secret, PHONESYNC_ENV_FILE and the test suite's own switches
    (tests/conftest.py, the Makefile) are no typos; a `_FILE` on a setting that is no secret
    is one (it would be ignored)."""
    env = good_env(tmp_path)
    cron = tmp_path / "schedule"
    cron.write_text("0 23 * * *")
    accepted = {
        "PHONESYNC_ENV_FILE": str(env),
        "PHONESYNC_TEST_SKIP_POSTGRES": "1",
        "PHONESYNC_TEST_POSTGRES_ADMIN_URL": "postgresql+psycopg://x@127.0.0.1/test",
        "PHONESYNC_TEST_SKIP_BROWSER": "1",
        "PHONESYNC_UPDATE_SCREENSHOTS": "0",
        "PHONESYNC_SNAPSHOT_KEY_FILE": "",  # empty: unset, as before
    }
    done = phonesync(tmp_path / "cwd", "runs", "--format", "json", **accepted)
    assert done.returncode == 0, done.stderr
    done = phonesync(tmp_path / "cwd", "runs", PHONESYNC_SCHEDULE_FILE=str(cron), **accepted)
    assert done.returncode == 2, done.stderr
    assert "unknown setting PHONESYNC_SCHEDULE_FILE" in one_line(done)


def test_an_unparsable_env_file_line_is_exit_2_naming_file_and_line_only(tmp_path: Path) -> None:
    """Comments, blank lines, `export`, quoted values (one over two lines) parse; the lines
    python-dotenv cannot parse are named by number, their content is not shown."""
    env = good_env(
        tmp_path,
        "",  # 3
        "# a comment",  # 4
        "export PHONESYNC_LOG_LEVEL=INFO",  # 5
        'PHONESYNC_SHEET_RANGE="Sheet 1 # not a comment"',  # 6
        "PHONESYNC_COLUMNS_NIK='NIK,No KTP'",  # 7
        'PHONESYNC_DASHBOARD_TRUSTED_HEADER="X-User',  # 8
        'X-Forwarded-User"',  # 9 (the end of line 8's value)
        "",  # 10
        f"this is not a setting {SECRET}",  # 11
        f'PHONESYNC_DRY="unterminated {SECRET}',  # 12
    )
    done = phonesync(tmp_path / "cwd", "--env-file", str(env), "run", "--date", "2024-03-15")
    assert done.returncode == 2, done.stderr
    err = one_line(done)
    assert f"{env} line 11: cannot be parsed" in err
    assert f"{env} line 12: cannot be parsed" in err
    assert "line 3:" not in err
    assert "line 9:" not in err
    assert SECRET not in done.stderr + done.stdout
    assert "not a setting" not in err
    assert "unterminated" not in err
    assert "could not parse" not in done.stderr  # python-dotenv's own warning is not reached


def test_a_setting_name_without_a_value_is_exit_2(tmp_path: Path) -> None:
    """`PHONESYNC_CONCURRENCY` alone on a line: python-dotenv reads it as unset, so the run
    would take the default."""
    env = good_env(tmp_path, "PHONESYNC_CONCURRENCY")
    done = phonesync(tmp_path / "cwd", "--env-file", str(env), "runs")
    assert done.returncode == 2, done.stderr
    assert f"{env} line 3: PHONESYNC_CONCURRENCY has no value" in one_line(done)


def test_doctor_reports_a_misspelled_setting_and_a_bad_line_as_a_fail(tmp_path: Path) -> None:
    """Doctor is where an operator checks a configuration: a FAIL line and exit 1."""
    env = good_env(tmp_path, "PHONESYNC_OLD_NUMBRE=drop", f"bad line {SECRET}")
    done = phonesync(tmp_path / "cwd", "--env-file", str(env), "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    fail = [line for line in done.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(fail) == 1, done.stdout
    assert "configuration" in fail[0]
    assert "unknown setting PHONESYNC_OLD_NUMBRE (did you mean PHONESYNC_OLD_NUMBER?)" in fail[0]
    assert f"{env} line 4: cannot be parsed" in fail[0]
    assert SECRET not in done.stdout + done.stderr


def test_the_env_file_of_a_local_sandbox_loads_and_one_typo_in_it_is_refused(
    tmp_path: Path,
) -> None:
    """`LocalSandbox.write_env` writes every setting (lists, cron, paths): a dry run with it
    works; the same file with one misspelled name does not."""
    nik = nik_for(D.replace(year=1995, month=3, day=2), "female", 1)
    patients = [
        patient("P1", nik, D.replace(year=1995, month=3, day=2), "female", "+6281111111111")
    ]
    sheet = [list(HEADER), [nik, "0822-2222-2222", "15/03/2024"]]
    with LocalSandbox(patients, sheet, tmp_path / "sb") as sb:
        env = sb.write_env(tmp_path / "sandbox.env")
        words = ("--env-file", str(env), "run", "--date", "2024-03-15", "--dry-run")
        done = phonesync(tmp_path / "cwd", *words)
        assert done.returncode == 0, done.stderr
        env.write_text(env.read_text().replace("PHONESYNC_OLD_NUMBER=", "PHONESYNC_OLDNUMBER="))
        done = phonesync(tmp_path / "cwd", *words)
        assert sb.store.version_count("P1") == 1
    assert done.returncode == 2, done.stderr
    assert "unknown setting PHONESYNC_OLDNUMBER (did you mean PHONESYNC_OLD_NUMBER?)" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_env_file_phonesync_sandbox_writes_loads(tmp_path: Path) -> None:
    """`phonesync sandbox` writes sandbox.env (a comment, `_FILE`, keys): a dry run with it
    succeeds; a misspelled setting beside it in the environment is refused."""
    state = tmp_path / "sandbox"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONESYNC_")}
    env |= {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "state")}
    command = [sys.executable, "-m", "phonesync", "sandbox", "--rows", "40", "--patients", "80",
               "--date", "2024-03-15", "--fhir-port", str(_free_port()),
               "--sheets-port", str(_free_port()), "--state-dir", str(state)]  # fmt: skip
    log = tmp_path / "sandbox.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        written = state / "sandbox.env"
        deadline = time.monotonic() + 60
        while not written.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)
        words = ("--env-file", str(written), "run", "--date", "2024-03-15", "--dry-run")
        done = phonesync(tmp_path / "cwd", *words)
        assert done.returncode == 0, done.stderr
        done = phonesync(tmp_path / "cwd", *words, PHONESYNC_DRY_RUN="1")
        assert done.returncode == 2, done.stderr
        assert "unknown setting PHONESYNC_DRY_RUN in the environment" in one_line(done)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_demo_still_runs_and_stops_on_a_misspelled_setting(tmp_path: Path) -> None:
    """`phonesync demo` (its sandbox's env file, loaded in the demo's own process) at a tiny
    size: exit 0; with a typo in the environment, exit 2 naming it."""
    state = str(tmp_path / "demo")
    words = ("demo", "--rows", "60", "--patients", "120", "--latency-ms", "0",
             "--date", "2024-03-15", "--no-extra-nights", "--state-dir", state)  # fmt: skip
    done = phonesync(tmp_path / "cwd", *words)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    done = phonesync(tmp_path / "cwd", *words, PHONESYNC_CONCURENCY="4")
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        "unknown setting PHONESYNC_CONCURENCY (did you mean PHONESYNC_CONCURRENCY?)" in done.stderr
    )


@pytest.mark.parametrize(
    "system",
    [
        "",
        "a|b",
        "https://x.example/nik,https://y.example/nik",
        "urn:x y",
        "https://x.example/ni\u200bk",
    ],
)
def test_a_nik_system_that_splits_the_search_token_is_exit_2(tmp_path: Path, system: str) -> None:
    """`identifier=<system>|<NIK>`: a '|' or ',' in the system changes what the search means and
    a space is no URI. It found nobody, and a small night passed as `succeeded` with every row
    `patient_not_found` (fresh-user test): refused before any request, naming the setting."""
    env = good_env(tmp_path)
    done = phonesync(
        tmp_path / "cwd",
        "--env-file",
        str(env),
        "run",
        "--date",
        "2024-03-15",
        PHONESYNC_NIK_SYSTEM=system,
    )
    assert done.returncode == 2, done.stderr
    err = one_line(done)
    assert err.startswith("phonesync: invalid configuration: ")
    assert "nik_system" in err.lower()
    assert "must be an absolute URI" in err
