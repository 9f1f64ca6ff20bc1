"""`phonesync sandbox --patients-file/--sheet-file`: a bad file is one clear line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from phonesync.errors import ConfigError
from phonesync.sandbox.runner import SandboxOptions, seed

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
PATIENT = {
    "resourceType": "Patient",
    "id": "P00000000001",
    "identifier": [{"system": NIK_SYSTEM, "value": "3174014203950001"}],
    "gender": "female",
    "birthDate": "1995-03-02",
}
NUMERIC_NIK = {**PATIENT, "identifier": [{"system": NIK_SYSTEM, "value": 3174014203950001}]}
SHEET = {"values": [["NIK", "No HP", "last_updated_date"], ["3174014203950001", "0812", "x"]]}


def _lines(*resources: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


# (option, file name, content or None for a missing file, what the message must say after the path)
BAD_FILES = [
    pytest.param("--sheet-file", "s.json", '{"foo": 1}', r': expected \{"values"', id="no-values"),
    pytest.param("--sheet-file", "s.json", "not json", r": not JSON \(", id="not-json"),
    pytest.param("--sheet-file", "s.txt", "NIK\n", r": use \.csv or \.json, not '\.txt'", id="txt"),
    pytest.param("--sheet-file", "s.json", None, r": cannot read it \(No such file", id="missing"),
    pytest.param(
        "--patients-file",
        "p.ndjson",
        _lines(PATIENT) + "{broken\n",
        r":2: not valid JSON \(",
        id="broken-line",
    ),
    pytest.param(
        "--patients-file",
        "p.ndjson",
        _lines({"resourceType": "Observation", "id": "O1"}),
        r":1: expected a FHIR Patient object \(resourceType Observation\)",
        id="not-a-patient",
    ),
    pytest.param(
        "--patients-file",
        "p.ndjson",
        _lines(PATIENT, {**NUMERIC_NIK, "id": "P2"}),
        r":2: identifier\[0\]\.value is a JSON number, not a string",
        id="numeric-nik",
    ),
    pytest.param(
        "--patients-file",
        "p.ndjson",
        _lines({**PATIENT, "identifier": [{"system": NIK_SYSTEM, "value": True}]}),
        r":1: identifier\[0\]\.value is a JSON true/false, not a string",
        id="boolean-nik",
    ),
    pytest.param("--patients-file", "p.ndjson", None, r": cannot read it \(No such", id="missing"),
]


def _write(tmp_path: Path, option: str, name: str, content: str | None) -> dict[str, Path]:
    """The bad file for `option` (left missing when `content` is None), a good one for the other."""
    files = {"--patients-file": tmp_path / "good.ndjson", "--sheet-file": tmp_path / "good.json"}
    files["--patients-file"].write_text(_lines(PATIENT))
    files["--sheet-file"].write_text(json.dumps(SHEET))
    files[option] = tmp_path / name
    if content is not None:
        files[option].write_text(content)
    return files


@pytest.mark.parametrize(("option", "name", "content", "message"), BAD_FILES)
def test_a_bad_file_is_a_config_error_naming_file_and_problem(
    tmp_path: Path, option: str, name: str, content: str | None, message: str
) -> None:
    """A bad input file is one ConfigError: the option, the path (and line), the problem."""
    files = _write(tmp_path, option, name, content)
    options = SandboxOptions(
        business_date=date(2024, 3, 15),
        patients_file=files["--patients-file"],
        sheet_file=files["--sheet-file"],
    )
    with pytest.raises(ConfigError, match=rf"^{option} {files[option]}{message}") as caught:
        seed(options)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_good_files_seed_the_sandbox(tmp_path: Path) -> None:
    """The good files the bad cases are paired with load: the failures are the bad file's."""
    files = _write(tmp_path, "--sheet-file", "good.json", json.dumps(SHEET))
    store, values, data = seed(
        SandboxOptions(
            business_date=date(2024, 3, 15),
            patients_file=files["--patients-file"],
            sheet_file=files["--sheet-file"],
        )
    )
    assert (len(store), values, data) == (1, SHEET["values"], None)


@pytest.mark.parametrize(
    ("option", "name", "content", "message"),
    [BAD_FILES[0], BAD_FILES[3], BAD_FILES[4], BAD_FILES[6]],
)
def test_the_command_prints_one_line_and_exits_2(
    tmp_path: Path, option: str, name: str, content: str | None, message: str
) -> None:
    """`phonesync sandbox` with a bad file: no traceback, one `phonesync: …` line, exit 2."""
    files = _write(tmp_path, option, name, content)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phonesync",
            "sandbox",
            "--patients-file",
            str(files["--patients-file"]),
            "--sheet-file",
            str(files["--sheet-file"]),
            "--fhir-port",
            "0",
            "--sheets-port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"phonesync: {option} {files[option]}")
    assert done.stdout == ""
