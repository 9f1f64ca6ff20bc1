"""The docs stay true to the code: links resolve, every setting and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from phonesync.cli import build_parser
from phonesync.fhir import updater
from phonesync.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    """Every relative link in the README and docs/ points at a file that exists."""
    missing = [
        target
        for target in LINK.findall(doc.read_text(encoding="utf-8"))
        if not target.startswith(("http://", "https://", "mailto:"))
        and not (doc.parent / target).exists()
    ]
    assert missing == []


def test_every_setting_is_in_the_configuration_reference() -> None:
    """docs/configuration.md names every PHONESYNC_* setting the code reads."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    undocumented = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"{ENV_PREFIX}{name.upper()}" not in text
    ]
    assert undocumented == []


def test_every_command_is_in_the_readme() -> None:
    """The README's command table lists every `phonesync` subcommand."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    commands = sorted(subparsers.choices)  # type: ignore[union-attr]
    assert [c for c in commands if f"phonesync {c}" not in readme] == []


def test_every_unchanged_reason_is_in_the_outcomes_doc() -> None:
    """docs/outcomes.md quotes every reason the updater gives an `unchanged` row, and the one it
    gives an `updated` row whose write's answer was lost."""
    text = (ROOT / "docs" / "outcomes.md").read_text(encoding="utf-8")
    names = [n for n in dir(updater) if n.startswith(("UNCHANGED_", "UPDATED_"))]
    reasons = [getattr(updater, n) for n in names]
    assert len(reasons) == 3
    assert [r for r in reasons if f'"{r}"' not in text] == []
