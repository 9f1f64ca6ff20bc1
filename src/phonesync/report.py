"""Run summaries (the contract's summary file), the end-of-run table and per-row reports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from phonesync.outcomes import FAILURE_OUTCOMES, Outcome

REPORT_COLUMNS = (
    "row",
    "nik",
    "phone",
    "outcome",
    "reason",
    "patient_id",
    "version_before",
    "version_after",
    "attempts",
)


@dataclass
class RunStats:
    """Everything the summary file reports about one run, filled in as the run goes."""

    run_id: str
    business_date: date
    trigger: str
    started_at: datetime
    dry_run: bool = False
    status: str = "running"
    finished_at: datetime | None = None
    rows_read: int = 0
    in_scope: int = 0
    from_catch_up: int = 0
    searched: int = 0  # rows whose patient look-up the FHIR server answered (search or cached id)
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    requests_total: int = 0
    retries: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    batches: int = 0  # FHIR batch Bundles sent (one HTTP request each)
    batched: int = 0  # requests sent inside them (each also counted in requests_total)
    sheet_requests: int = 0
    input: dict[str, Any] = field(default_factory=dict)  # live sheet or frozen input (snapshot.py)
    cpu_s: float = 0.0  # this process's CPU time during the run (client cost)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # why a completed run is not a success

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome.value] += 1

    @property
    def failure_ratio(self) -> float:
        failures = sum(self.outcomes[o.value] for o in FAILURE_OUTCOMES)
        return failures / self.in_scope if self.in_scope else 0.0

    @property
    def duration_s(self) -> float:
        end = self.finished_at or self.started_at
        return round((end - self.started_at).total_seconds(), 3)

    def as_summary(self) -> dict[str, Any]:
        """The summary file's JSON object (contract.md, "Summary file")."""
        updated = self.outcomes[Outcome.UPDATED.value]
        return {
            "run_id": self.run_id,
            "business_date": self.business_date.isoformat(),
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": self.duration_s,
            "rows": {
                "read": self.rows_read,
                "in_scope": self.in_scope,
                "from_catch_up": self.from_catch_up,
                "searched": self.searched,
            },
            "outcomes": dict(self.outcomes),
            "requests": {
                "total": self.requests_total,
                "retries": self.retries,
                "by_status": dict(sorted(self.by_status.items())),
                "sheets": self.sheet_requests,
                "batches": self.batches,
                "batched": self.batched,
                "per_updated_row": round(self.requests_total / updated, 3) if updated else None,
            },
            "failure_ratio": round(self.failure_ratio, 6),
            "input": dict(self.input),
            "client_cpu_s": round(self.cpu_s, 3),
            "error": self.error,
            "warnings": list(self.warnings),
        }


def write_summary(path: str, summary: Mapping[str, Any]) -> None:
    """Write the summary file atomically enough for a scheduler to read it afterwards."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The end-of-run table printed on a terminal."""
    title = (
        f"phonesync run {summary['run_id']} · {summary['business_date']} · "
        f"{summary['status']}{' (dry run)' if summary.get('dry_run') else ''}"
    )
    table = Table(title=title, show_lines=False)
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    in_scope = summary["rows"]["in_scope"] or 1
    for name, count in summary["outcomes"].items():
        table.add_row(name, f"{count:,}", f"{100 * count / in_scope:.1f} %")
    table.add_section()
    table.add_row("in scope", f"{summary['rows']['in_scope']:,}", "")
    table.add_row("rows read", f"{summary['rows']['read']:,}", "")
    req = summary["requests"]
    table.add_row("FHIR requests", f"{req['total']:,}", f"{req['retries']:,} retries")
    if req.get("batches"):
        table.add_row("… in batch Bundles", f"{req['batched']:,}", f"{req['batches']:,} bundles")
    table.add_row("duration", f"{summary['duration_s']:.1f} s", "")
    return table


def print_summary(summary: Mapping[str, Any], console: Console | None = None) -> None:
    (console or Console(stderr=False)).print(summary_table(summary))


def report_row(record: Any) -> dict[str, Any]:
    """One ledger result as a report line (`REPORT_COLUMNS`); values are already masked."""
    return {
        "row": record.row,
        "nik": record.nik_masked,
        "phone": record.phone_masked,
        "outcome": str(record.outcome),
        "reason": record.reason,
        "patient_id": record.patient_id,
        "version_before": record.version_before,
        "version_after": record.version_after,
        "attempts": record.attempts,
    }


def render_rows(rows: Iterable[Mapping[str, Any]], fmt: str) -> str:
    """Per-row report as csv, json (one array) or a plain-text table. Values are already masked."""
    rows = list(rows)
    renderers = {"csv": _csv, "json": _json, "table": _table}
    return renderers[fmt](rows)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=REPORT_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in REPORT_COLUMNS})
    return out.getvalue()


_FORMULA_START = ("=", "@", "\t", "\r")
_MAX_CELL = 300


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula, and not absurdly long.

    Masked cells keep their first characters, so a sheet cell like `=HYPERLINK(…)` would reach the
    report: such text gets a leading `'` (OWASP's advice for CSV injection). `+62812****7890` is
    left alone: a sign followed by digits and stars is not a formula that can do anything.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    text = value if len(value) <= _MAX_CELL else value[: _MAX_CELL - 1] + "…"
    risky = text.startswith(_FORMULA_START) or (
        text[:1] in "+-" and any(ch.isalpha() or ch == "(" for ch in text)
    )
    return "'" + text if risky else text


def _json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([{k: row.get(k) for k in REPORT_COLUMNS} for row in rows], indent=1) + "\n"


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    table = Table(show_lines=False)
    for col in REPORT_COLUMNS[:6]:
        table.add_column(col, justify="right" if col == "row" else "left")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in REPORT_COLUMNS[:6]))
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table)
    out = console.file
    assert isinstance(out, io.StringIO)  # noqa: S101 - we created it above
    return out.getvalue()
