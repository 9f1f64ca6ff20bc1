"""docs/operations.md: the commands it gives and the links into it."""

from __future__ import annotations

import re

import yaml

from .support import ROOT, validate

RUNBOOK = ROOT / "docs" / "operations.md"


def slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", markdown, re.M)
    }


def test_runbook_schedules_23_00_jakarta_and_shares_the_sheet() -> None:
    """The runbook's gcloud commands: scheduler at 23:00 Asia/Jakarta, read-only Sheets access."""
    text = RUNBOOK.read_text("utf-8")
    scheduler = re.search(r"gcloud scheduler jobs create http.*?(?=\n\n|```)", text, re.S)
    assert scheduler is not None
    command = scheduler.group(0)
    assert '--schedule="0 23 * * *"' in command
    assert "--time-zone=Asia/Jakarta" in command
    assert "jobs/phonesync-nightly:run" in command
    assert "spreadsheets.readonly" in text
    assert "roles/secretmanager.secretAccessor" in text


def test_alert_runbook_links_point_at_runbook_headings() -> None:
    """Every alert's runbook_url anchor is a heading of docs/operations.md."""
    headings = slugs(RUNBOOK.read_text("utf-8"))
    rules = yaml.safe_load(validate.ALERTS.read_text("utf-8"))["groups"][0]["rules"]
    anchors = {r["annotations"]["runbook_url"].split("#")[1] for r in rules}
    assert anchors - headings == set()


def test_runbook_internal_links_resolve() -> None:
    """Every `(#anchor)` link of the runbook names one of its headings."""
    text = RUNBOOK.read_text("utf-8")
    anchors = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert len(anchors) > 10
    assert anchors - slugs(text) == set()
    assert slugs("## The hash key: never rotate it") == {"the-hash-key-never-rotate-it"}


def test_readme_links_to_the_runbook() -> None:
    """The README's link to docs/operations.md resolves."""
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "](docs/operations.md)" in readme
    assert RUNBOOK.is_file()
