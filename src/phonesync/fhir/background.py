"""Faults the server gives at any load, told apart from faults that come from our load.

Adaptive pacing reads connection resets, timeouts and 503/504 as overload and cuts concurrency.
A server that fails a steady share of requests whatever the load (a flaky gateway, a backend that
resets 5 % of connections) would then hold a run at its floor all night: every few dozen answers
bring three faults, every three faults cut again, and a cut never helps.

`BackgroundFaults` tests each cut: it compares the share of load faults among the answers before
the cut (`HISTORY`, a longer window than the one that triggered it, so the few faults that tripped
the cut do not inflate it) with the share among the first `PROBE_ANSWERS` answers to requests
started after it; while that test runs, the limit does not grow back (`testing`), so the answers
are those of the lower concurrency (further cuts of the same spell still happen). Fewer than half
as many faults (`HELPED`) → they came from our load: the cut stands. Not so → they are the
server's background: the limit goes back to where it was before the cut, the share is learned,
and from then on a cut needs that many more faults than the background would bring by chance
(`drops_needed`: the background's mean in a window + 3 standard deviations).

Politeness first: a share above `MOST` is never taken as background. A server failing that many
requests is in trouble whatever the cause, and the cuts stand.

Rate refusals (429) are not judged here: a rate cut is tested by the pacing's own growth.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Probe:
    """One cut under test: when it was made, from which limit, and the answers since."""

    at: float
    share_before: float
    limit_before: float
    seen: int = 0
    faults: int = 0


class BackgroundFaults:
    """Learns the share of load faults that cutting concurrency does not remove."""

    HISTORY = 200
    PROBE_ANSWERS = 100
    HELPED = 0.5
    MOST = 0.2

    def __init__(self, window: int, least_drops: int) -> None:
        self._window, self._least = window, least_drops
        self._history: deque[bool] = deque(maxlen=self.HISTORY)  # True = a load fault
        self._probe: _Probe | None = None
        self.share = 0.0  # the background share of load faults learned so far

    @property
    def testing(self) -> bool:
        """A cut is under test: the limit must not grow back before it is judged."""
        return self._probe is not None

    def drops_needed(self) -> int:
        """Load faults among the last `window` answers that mean overload: `least_drops`, or more
        than the background brings by chance (its mean + 3 standard deviations, and one)."""
        mean = self.share * self._window
        if mean <= 0:
            return self._least
        return max(self._least, math.ceil(mean + 3.0 * math.sqrt(mean)) + 1)

    def cut(self, now: float, limit_before: float) -> None:
        """A load cut was made now from `limit_before`: test it (unless one is under test)."""
        if self._probe is not None:
            return  # a further cut of the same spell: judged with the first one
        faults = sum(self._history)
        share = faults / len(self._history) if self._history else 0.0
        self._probe = _Probe(at=now, share_before=share, limit_before=limit_before)

    def answer(self, started: float, fault: bool) -> float | None:
        """One answer (not a rate refusal). Returns the limit to go back to when it completes a
        test whose cut did not help; None otherwise."""
        self._history.append(fault)
        probe = self._probe
        if probe is None or started < probe.at:
            return None  # no test running, or sent at the old concurrency
        probe.seen += 1
        probe.faults += fault
        if probe.seen < self.PROBE_ANSWERS:
            return None
        self._probe = None
        after = probe.faults / probe.seen
        helped = probe.share_before > 0 and after < self.HELPED * probe.share_before
        if helped or after > self.MOST:
            self.share = min(self.share, after)  # load faults: the background is at most this
            return None
        self.share = after
        log.info(
            "load faults stayed at %.1f %% of answers after a concurrency cut (%.1f %% before): "
            "treated as the server's background, not overload; back to %d in flight",
            100 * after,
            100 * probe.share_before,
            int(probe.limit_before),
        )
        return probe.limit_before
