"""A source file that cannot be read names itself the way docs/sources.md says: every such error
begins `cannot read source file NAME:` (exit code 3), an unsupported extension included."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonesync.cli import main
from phonesync.errors import SourceUnavailable
from phonesync.sandbox.local import LocalSandbox
from phonesync.settings import Settings
from phonesync.source.files import FileSource

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sources.md"


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("rows.txt", b"NIK\n", "unsupported type '.txt'; use .csv or .xlsx"),
        ("rows", b"NIK\n", "unsupported type '(none)'; use .csv or .xlsx"),
        ("absent.csv", None, "No such file or directory"),
        ("rows.csv", b"NIK;No HP\n\xff\xfe\x00", "not UTF-8 text; export the sheet as CSV UTF-8"),
        ("rows.xlsx", b"not a zip at all", "not a readable XLSX workbook (BadZipFile)"),
    ],
)
def test_every_unreadable_file_says_cannot_read_source_file(
    tmp_path: Path, name: str, content: bytes | None, why: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    settings = Settings.load(env_file=None, source="file")
    with pytest.raises(SourceUnavailable) as raised:
        list(FileSource(path, settings).read())
    assert str(raised.value) == f"cannot read source file {name}: {why}"


def test_the_docs_promise_that_message() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "Any other extension" in text
    assert "`cannot read source file rows.txt: unsupported type '.txt'; use .csv or .xlsx`" in text


def test_a_run_on_a_txt_file_exits_3_with_that_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "export.txt"
    path.write_text("NIK,No HP,last_updated_date\n", encoding="utf-8")
    overrides = {"source": "file", "source_file": path}
    with LocalSandbox([], [["NIK"]], tmp_path / "sb", overrides=overrides) as sb:
        env = str(sb.write_env(tmp_path / "run.env"))
        code = main(["--env-file", env, "run", "--date", "2024-03-15"])
    assert code == 3
    said = capsys.readouterr().err.strip().splitlines()
    assert said[-1] == (
        "phonesync: cannot read source file export.txt: unsupported type '.txt'; use .csv or .xlsx"
    )
