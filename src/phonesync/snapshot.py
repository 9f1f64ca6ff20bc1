"""Frozen inputs: each run keeps the exact rows it read, so a replay of its date reads the same.

What is kept: the sheet row number and the three cells we map (NIK, phone, date) of every data
row the run read, with their types (a NIK that arrived as a number must still be refused on a
replay), as JSON, zlib-compressed, encrypted with Fernet (`crypto.Sealer`,
`PHONESYNC_SNAPSHOT_KEY`) and stored in the ledger table `snapshots`. Nothing else of the sheet,
except the marker of a CSV row longer than its header (`SheetRow.shifted`: cell counts and the
delimiter), so that a replay gives such a row the same reason. The markers sit under their own
optional key `shifted` (`[[index in rows, cells, header cells, delimiter], …]`), still format 1:
a snapshot stored before the key existed loads with no markers, and a version that does not know
the key ignores it.

- A non-dry run that reads the source saves a snapshot of what it read.
- A run for a date that has a snapshot replays the newest one by default; `--from-source`
  re-reads the sheet instead (and saves a new snapshot). A retry replays what its parent read.
- Snapshots older than `snapshot_retention_days` are deleted when a run starts.
- Without `PHONESYNC_SNAPSHOT_KEY` snapshots are off: nothing is stored or replayed, and every
  run says so in a warning. A key that cannot open a stored snapshot is a configuration error
  (exit 2) — never a silent fall-back to today's sheet.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from phonesync.crypto import Sealer
from phonesync.errors import ConfigError
from phonesync.ledger import snapshots
from phonesync.ledger.snapshots import SnapshotRecord
from phonesync.ledger.store import Ledger
from phonesync.settings import Settings
from phonesync.source.rows import (
    UNSAVED_FORMULA,
    Cell,
    RowSource,
    SheetRow,
    ShiftedCells,
    UnsavedFormula,
)

log = logging.getLogger("phonesync.snapshot")

FORMAT = 1
_CELL_TYPES: dict[str, Any] = {
    "i": int,
    "f": float.fromhex,
    "b": bool,
    "dt": datetime.fromisoformat,
    "d": date.fromisoformat,
    "fx": lambda _raw: UNSAVED_FORMULA,
}


def _encode_cell(cell: Cell) -> Any:
    """Strings and None as they are; other types tagged so they come back as the same type."""
    if cell is None or isinstance(cell, str):
        return cell
    if isinstance(cell, bool):
        return ["b", cell]
    if isinstance(cell, int):
        return ["i", cell]
    if isinstance(cell, float):
        return ["f", cell.hex()]  # exact, NaN and infinities included
    if isinstance(cell, datetime):
        return ["dt", cell.isoformat()]
    if isinstance(cell, UnsavedFormula):
        return ["fx", None]
    return ["d", cell.isoformat()]


def _decode_cell(value: Any) -> Cell:
    if value is None or isinstance(value, str):
        return value
    tag, raw = value
    decoded: Cell = _CELL_TYPES[tag](raw)
    return decoded


def encode_rows(rows: Sequence[SheetRow]) -> bytes:
    """Rows → compressed JSON (not yet encrypted)."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "rows": [[r.row, *(_encode_cell(c) for c in (r.nik, r.phone, r.updated))] for r in rows],
    }
    shifted = [
        [i, r.shifted.cells, r.shifted.header, r.shifted.delimiter]
        for i, r in enumerate(rows)
        if r.shifted is not None
    ]
    if shifted:  # optional: see the module docstring
        body["shifted"] = shifted
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def decode_rows(data: bytes) -> list[SheetRow]:
    """The inverse of `encode_rows`; a snapshot without `shifted` (older ones) has no markers."""
    body = json.loads(zlib.decompress(data))
    if body.get("format") != FORMAT:
        raise ConfigError(f"stored input has format {body.get('format')!r}, expected {FORMAT}")
    rows = [
        SheetRow(row=n, nik=_decode_cell(a), phone=_decode_cell(b), updated=_decode_cell(c))
        for n, a, b, c in body["rows"]
    ]
    for index, cells, header, delimiter in body.get("shifted", ()):
        marker = ShiftedCells(cells=cells, header=header, delimiter=delimiter)
        rows[index] = replace(rows[index], shifted=marker)
    return rows


class FrozenSource:
    """A `RowSource` serving the rows of a snapshot (no Sheets request)."""

    def __init__(self, rows: list[SheetRow]) -> None:
        self._rows = rows
        self.requests = 0
        self.rows_read = 0

    def read(self) -> Iterator[SheetRow]:
        self.rows_read = len(self._rows)
        return iter(self._rows)


@dataclass
class Input:
    """Where a run's rows come from: the live source (recorded when kept) or a snapshot."""

    source: RowSource
    read_at: datetime
    replay_of: SnapshotRecord | None = None
    record: bool = False
    rows: list[SheetRow] = field(default_factory=list, repr=False)

    def read(self) -> Iterator[SheetRow]:
        """The source's rows; kept in memory for the snapshot when `record` is set."""
        self.rows = []
        for row in self.source.read():
            if self.record:
                self.rows.append(row)
            yield row

    def describe(self) -> dict[str, Any]:
        """For the run summary: `{"kind": "live"|"snapshot", ...}` (no personal data)."""
        if self.replay_of is None:
            return {"kind": "live", "snapshot_saved": self.record}
        return {
            "kind": "snapshot",
            "snapshot_of_run": self.replay_of.run_id,
            "read_at": self.replay_of.created_at.isoformat(),
            "rows": self.replay_of.rows,
        }


def sealer_for(settings: Settings) -> Sealer | None:
    """The Sealer of `PHONESYNC_SNAPSHOT_KEY`, or None when snapshots are off."""
    key = settings.snapshot_key
    return Sealer(key.get_secret_value()) if key is not None else None


def new_key() -> str:
    """A fresh Fernet key (what `phonesync keygen` prints)."""
    from phonesync.crypto import new_key as fernet_key

    return fernet_key()


def _stored_for(ledger: Ledger, day: date, retry_of: str | None) -> SnapshotRecord | None:
    """What to replay: the parent's input for a retry, else the date's newest snapshot."""
    if retry_of is None:
        return snapshots.newest_for(ledger.engine, day)
    own = snapshots.for_run(ledger.engine, retry_of)
    if own is not None:
        return own
    parent = ledger.get_run(retry_of)
    cutoff = parent.started_at if parent is not None else None
    return None if cutoff is None else snapshots.newest_for(ledger.engine, day, not_after=cutoff)


def choose_input(
    settings: Settings,
    ledger: Ledger,
    source: RowSource,
    *,
    business_date: date,
    retry_of: str | None,
    from_source: bool,
    dry_run: bool,
    now: datetime,
) -> Input:
    """Replay the stored rows of a past date (or a retry's parent), else read the live source."""
    sealer = sealer_for(settings)
    if sealer is None:
        log.warning(
            "PHONESYNC_SNAPSHOT_KEY is not set: frozen inputs are off (this run's rows are not "
            "kept, and re-runs of past dates read the sheet as it is now)"
        )
        return Input(source, read_at=now)
    stored = stored_replay(
        settings, ledger, business_date=business_date, retry_of=retry_of,
        from_source=from_source, now=now,
    )  # fmt: skip
    if stored is not None:
        rows = decode_rows(sealer.unseal(stored.payload))
        log.info(
            "replaying the rows run %s read at %s (use --from-source to re-read the sheet)",
            stored.run_id,
            stored.created_at.isoformat(),
        )
        return Input(FrozenSource(rows), read_at=stored.created_at, replay_of=stored)
    return Input(source, read_at=now, record=not dry_run)


def stored_replay(
    settings: Settings,
    ledger: Ledger,
    *,
    business_date: date,
    retry_of: str | None,
    from_source: bool,
    now: datetime,
) -> SnapshotRecord | None:
    """The stored input a run will replay instead of reading the source, or None.

    Tonight's own date is read live (a second run the same night must see later edits); a past
    date, or a retry, replays what was read then — when snapshots are on, `--from-source` was
    not given and something was stored. `choose_input` and the CLI's replay notice both ask here.
    """
    if from_source or sealer_for(settings) is None:
        return None
    past = business_date < now.astimezone(settings.zone).date()
    if retry_of is None and not past:
        return None
    return _stored_for(ledger, business_date, retry_of)


def keep(settings: Settings, ledger: Ledger, chosen: Input, run_id: str, day: date) -> None:
    """Store what a live, recorded run read (encrypted); a no-op otherwise."""
    sealer = sealer_for(settings)
    if not chosen.record or sealer is None:
        return
    rows = chosen.rows
    snapshots.save(
        ledger.engine,
        run_id=run_id,
        business_date=day,
        created_at=chosen.read_at,
        rows=len(rows),
        payload=sealer.seal(encode_rows(rows)),
    )


class RunAsked(Protocol):
    """The parts of a `sync.RunRequest` that decide a run's input."""

    @property
    def business_date(self) -> date: ...
    @property
    def retry_of(self) -> str | None: ...
    @property
    def from_source(self) -> bool: ...
    @property
    def dry_run(self) -> bool: ...


def open_input(
    settings: Settings, ledger: Ledger, source: RowSource, request: RunAsked, now: datetime
) -> Input:
    """At the start of a run: prune old snapshots (not in dry runs), then choose the input."""
    if not request.dry_run:
        prune(settings, ledger, now)
    return choose_input(
        settings,
        ledger,
        source,
        business_date=request.business_date,
        retry_of=request.retry_of,
        from_source=request.from_source,
        dry_run=request.dry_run,
        now=now,
    )


def prune(settings: Settings, ledger: Ledger, now: datetime) -> int:
    """Delete snapshots past the retention period (runs even with snapshots off)."""
    cutoff = now - timedelta(days=settings.snapshot_retention_days)
    removed = snapshots.prune(ledger.engine, older_than=cutoff)
    if removed:
        log.info("pruned %d stored inputs older than %s", removed, cutoff.date().isoformat())
    return removed


__all__ = [
    "FrozenSource",
    "Input",
    "choose_input",
    "decode_rows",
    "encode_rows",
    "keep",
    "new_key",
    "open_input",
    "prune",
    "sealer_for",
]
