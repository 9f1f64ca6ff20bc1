"""A command line argparse refuses (exit 2) removes the file at `--summary-json`, as every other
command that stops before its run does: an earlier night's "succeeded" must not survive it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phonesync.cli import main

STALE = {"status": "succeeded"}


def _stale(path: Path) -> Path:
    path.write_text(json.dumps(STALE), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "words",
    [
        ["run", "--date", "15/03/2024", "--summary-json", "{path}"],
        ["run", "--summary-json", "{path}", "--date", "15/03/2024"],
        ["run", "--summary-json={path}", "--format", "xml"],
        ["retry", "latest", "--summary-json", "{path}", "--bogus"],
        ["--env-file", "x.env", "run", "--summ", "{path}", "--bogus"],  # an abbreviation
        ["retry", "--summary-json", "{path}"],  # the run id is missing
        ["plan", "--date", "2024-03-15", "--workers", "two", "--summary-json", "{path}"],
        ["worker", "--date", "2024-13-01", "--summary-json", "{path}"],
    ],
    ids=lambda words: "-".join(w for w in words if "{path}" not in w),
)
def test_an_argument_error_removes_the_stale_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    path = _stale(tmp_path / "rr.json")
    with pytest.raises(SystemExit) as stopped:
        main([word.replace("{path}", str(path)) for word in words])
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err  # argparse's own message, unchanged
    assert not path.exists()


def test_the_console_command_removes_it_too(tmp_path: Path) -> None:
    """`python -m phonesync …` (argv from sys.argv), the field case: exit 2, no stale file."""
    path = _stale(tmp_path / "rr.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONESYNC_")}
    command = ["run", "--date", "15/03/2024", "--summary-json", "rr.json"]
    done = subprocess.run(
        [sys.executable, "-m", "phonesync", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "not a date" in done.stderr
    assert not path.exists()


@pytest.mark.parametrize(
    "words",
    [
        ["run", "--summary-json", "{path}", "--help"],  # exit 0: nothing went wrong
        ["report", "latest", "--summary-json", "{path}"],  # not an option of report
        ["run", "--summary-json", "--bogus", "{path}"],  # no value given: a stray word
        ["run", "--bogus", "--", "--summary-json", "{path}"],
    ],
    ids=lambda words: "-".join(w for w in words if "{path}" not in w),
)
def test_a_file_the_command_line_does_not_name_as_its_summary_stays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    path = _stale(tmp_path / "rr.json")
    with pytest.raises(SystemExit):
        main([word.replace("{path}", str(path)) for word in words])
    capsys.readouterr()
    assert json.loads(path.read_text(encoding="utf-8")) == STALE


def test_a_directory_at_the_path_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--date", "15/03/2024", "--summary-json", str(folder)])
    assert stopped.value.code == 2
    capsys.readouterr()
    assert (folder / "keep.txt").exists()
