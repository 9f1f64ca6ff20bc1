"""Will this run finish inside its window? A projection from the pace so far, and an early warning.

    projection = RunProjection(window_s=settings.run_window_s)   # when the run starts
    projection.planned(len(plan.work))                          # when applying starts
    projection.advance()                                        # after every applied row

`projected_s` is the projected duration of the whole run (`project`): the time so far plus the
rows left at the pace since the first row was done. Not the pace since applying started: hundreds
of rows start together, so the first one ends only after a full round of searches, reads and
writes, and a pace counted from the start would project a 20,000-row night from its first row at
hours. Once enough rows are done to judge (`MIN_ROWS`, or `MIN_JUDGED_ROWS` after
`MIN_ELAPSED_S` of applying), a projection beyond `window_s` logs one warning — long before the
window is over, so an operator can act (raise the server's allowance, split the night). The
`phonesync_run_projected_finish_seconds` gauge (metrics.py) reads a `RunProjection` of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("phonesync.projection")

MIN_ROWS = 200
MIN_ELAPSED_S = 60.0
MIN_JUDGED_ROWS = 20


def project(
    now: float,
    *,
    started: float,
    apply_started: float,
    first_done_at: float | None,
    done: int,
    total: int,
) -> float | None:
    """Projected duration of a run: elapsed since `started` + the rows left at the pace since
    the first row was done (None before any); all rows done at once so far: the pace since
    applying started."""
    if done <= 0:
        return None
    if first_done_at is not None and done >= 2 and now > first_done_at:
        per_row = (now - first_done_at) / (done - 1)
    else:
        per_row = (now - apply_started) / done
    return now - started + max(total - done, 0) * per_row


class RunProjection:
    """The projected duration of a run, and whether it overruns `window_s`."""

    def __init__(self, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._started = clock()
        self._apply_started: float | None = None
        self._first_done_at: float | None = None
        self.total = 0
        self.done = 0
        self.warned = False

    def planned(self, total: int) -> None:
        self.total, self.done = total, 0
        self._apply_started = self._clock()
        self._first_done_at = None

    def advance(self, rows: int = 1) -> None:
        if self._first_done_at is None:
            self._first_done_at = self._clock()
        self.done += rows
        if not self.warned and self.overruns:
            self.warned = True
            log.warning(
                "run projected to take %.0f s, beyond its window of %.0f s "
                "(%d of %d rows in %.0f s)",
                self.projected_s or 0.0,
                self.window_s,
                self.done,
                self.total,
                self._clock() - self._started,
            )

    @property
    def projected_s(self) -> float | None:
        """Projected duration of the whole run (None before the first applied row)."""
        if self._apply_started is None:
            return None
        return project(
            self._clock(),
            started=self._started,
            apply_started=self._apply_started,
            first_done_at=self._first_done_at,
            done=self.done,
            total=self.total,
        )

    @property
    def overruns(self) -> bool:
        """True once enough is known and the projection exceeds the window."""
        if self._apply_started is None:
            return False
        applying = self._clock() - self._apply_started
        judged = self.done >= MIN_ROWS or (
            applying >= MIN_ELAPSED_S and self.done >= MIN_JUDGED_ROWS
        )
        projected = self.projected_s
        return judged and projected is not None and projected > self.window_s
