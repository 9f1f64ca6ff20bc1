"""Will this run finish inside its window? A projection from the pace so far, and an early warning.

    projection = RunProjection(window_s=settings.run_window_s)   # when the run starts
    projection.planned(len(plan.work))                          # when applying starts
    projection.advance()                                        # after every applied row

`projected_s` is the projected duration of the whole run: the time before applying plus the rows
left at the pace of the rows done so far. Once enough rows are done to judge (`MIN_ROWS`, or
`MIN_ELAPSED_S` of applying), a projection beyond `window_s` logs one warning — long before the
window is over, so an operator can act (raise the server's allowance, split the night).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("phonesync.projection")

MIN_ROWS = 200
MIN_ELAPSED_S = 60.0


class RunProjection:
    """The projected duration of a run, and whether it overruns `window_s`."""

    def __init__(self, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._started = clock()
        self._apply_started: float | None = None
        self.total = 0
        self.done = 0
        self.warned = False

    def planned(self, total: int) -> None:
        self.total, self.done = total, 0
        self._apply_started = self._clock()

    def advance(self, rows: int = 1) -> None:
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
        if self._apply_started is None or self.done <= 0:
            return None
        now = self._clock()
        per_row = (now - self._apply_started) / self.done
        return now - self._started + max(self.total - self.done, 0) * per_row

    @property
    def overruns(self) -> bool:
        """True once enough is known and the projection exceeds the window."""
        if self._apply_started is None:
            return False
        judged = self.done >= MIN_ROWS or self._clock() - self._apply_started >= MIN_ELAPSED_S
        projected = self.projected_s
        return judged and projected is not None and projected > self.window_s
