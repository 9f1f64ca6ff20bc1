"""Dry-run preview: per row, what a run would change — masked old → masked new, or what stops it.

`phonesync run --dry-run` and `phonesync retry RUN_ID --dry-run` print it after the summary
(`--format table`, the default) or as one JSON document on stdout (`--format json`:
`{"summary": {...}, "rows": [...]}`). Only masked values ever appear.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from phonesync.ledger.store import LedgerRow
from phonesync.masking import mask_phone
from phonesync.outcomes import Outcome


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One row of the preview; `old_phone`/`new_phone` are masked."""

    row: int
    nik: str
    old_phone: str
    new_phone: str
    outcome: str
    would_write: bool
    reason: str | None
    patient_id: str | None
    catch_up: bool
    hidden_change: bool = False  # old and new differ only in digits the masks hide


def preview_row(
    row: LedgerRow, old_phone: str | None, catch_up: bool, *, old_hash: str | None = None
) -> PreviewRow:
    """The preview of a recorded row; `old_phone` is the E.164 number on the record (or None).

    `old_hash` is the keyed hash of `old_phone`: when both masks read the same but the hashes
    differ, the preview says so instead of showing what looks like a no-op.
    """
    masked_old = mask_phone(old_phone)
    hidden = bool(old_hash and row.phone_hash and old_hash != row.phone_hash)
    return PreviewRow(
        row=row.row,
        nik=row.nik_masked or "",
        old_phone=masked_old,
        new_phone=row.phone_masked or "",
        outcome=row.outcome.value,
        would_write=row.outcome is Outcome.UPDATED,
        reason=row.reason,
        patient_id=row.patient_id,
        catch_up=catch_up,
        hidden_change=hidden and masked_old == (row.phone_masked or ""),
    )


def _change(p: PreviewRow) -> str:
    if p.would_write:
        change = f"{p.old_phone or '(none)'} → {p.new_phone}"
        return change + (" (differs in masked digits)" if p.hidden_change else "")
    if p.outcome == Outcome.UNCHANGED.value:
        return f"{p.new_phone} (already on the record)"
    return p.reason or p.outcome


def render(rows: Sequence[PreviewRow], summary: Mapping[str, Any], fmt: str) -> str:
    """`json`: one document with the summary and the rows; `table`: a terminal table."""
    ordered = sorted(rows, key=lambda p: p.row)
    if fmt == "json":
        doc = {"summary": dict(summary), "rows": [asdict(p) for p in ordered]}
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    table = Table(title="dry run: what would change", show_lines=False)
    for col in ("row", "nik", "outcome", "change", "patient"):
        table.add_column(col, justify="right" if col == "row" else "left")
    for p in ordered:
        row = f"{p.row}{' (catch-up)' if p.catch_up else ''}"
        table.add_row(row, p.nik, p.outcome, _change(p), p.patient_id or "")
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table)
    out = console.file
    assert isinstance(out, io.StringIO)  # noqa: S101 - we created it above
    return out.getvalue()
