"""Run progress: a rich progress bar (rate, ETA) on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from phonesync.outcomes import Outcome

log = logging.getLogger("phonesync.progress")


class BarProgress:
    """A terminal progress bar with rows/s and ETA."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("[bold]applying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task: TaskID | None = None
        self._started = 0.0
        self._done = 0

    def start(self, total: int) -> None:
        self._started = time.monotonic()
        self._bar.start()
        self._task = self._bar.add_task("apply", total=total, rate=0.0)

    def advance(self, outcome: Outcome) -> None:
        if self._task is None:
            return
        self._done += 1
        rate = self._done / max(time.monotonic() - self._started, 1e-6)
        self._bar.update(self._task, advance=1, rate=rate)

    def stop(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


class LogProgress:
    """A structured log line every `every_s` seconds with counts, rate and ETA."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._total = 0
        self._done = 0
        self._counts: Counter[str] = Counter()
        self._started = 0.0
        self._last = 0.0

    def start(self, total: int) -> None:
        self._total = total
        self._started = self._last = time.monotonic()

    def advance(self, outcome: Outcome) -> None:
        self._done += 1
        self._counts[outcome.value] += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit(now)

    def _emit(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        eta = (self._total - self._done) / rate if rate else None
        log.info(
            "progress",
            extra={
                "done": self._done,
                "total": self._total,
                "rows_per_s": round(rate, 1),
                "eta_s": round(eta, 1) if eta is not None else None,
                "outcomes": dict(self._counts),
            },
        )

    def stop(self) -> None:
        if self._total:
            self._emit(time.monotonic())


def make_progress(mode: str) -> BarProgress | LogProgress:
    """`auto`: a bar when stderr is a terminal, log lines otherwise."""
    if mode == "on" or (mode == "auto" and sys.stderr.isatty()):
        return BarProgress()
    return LogProgress()
