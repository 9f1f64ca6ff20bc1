"""Will the run finish inside its window? The projection judges by the pace once rows flow.

Hundreds of rows start together, so the first one ends only after a whole round of requests: a
pace counted from the start of applying would project a fast night from its first rows at hours
(a user saw "projected to take 174859 s" from one row). The pace since the first finished row is
what the rest of the night will look like.
"""

from __future__ import annotations

import logging

import pytest

from phonesync.metrics import Metrics
from phonesync.outcomes import Outcome
from phonesync.projection import MIN_ELAPSED_S, RunProjection, project


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "phonesync.projection"]


def test_a_fast_night_is_not_judged_by_the_wait_for_its_first_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """20,000 rows; the first ends 5 s in, then 500 a second: about 45 s, inside a 100 s window."""
    clock = Clock()
    projection = RunProjection(100.0, clock=clock)
    projection.planned(20_000)
    clock.t = 5.0
    for i in range(500):
        clock.t = 5.0 + i / 500
        projection.advance()
    assert projection.projected_s == pytest.approx(5.998 + 19_500 * (0.998 / 499), rel=1e-6)
    assert projection.projected_s < 50
    assert not projection.overruns
    assert _warnings(caplog) == []


def test_one_slow_first_row_is_no_projection(caplog: pytest.LogCaptureFixture) -> None:
    """A minute of applying and a single row done (a round of retries): too little to judge."""
    clock = Clock()
    projection = RunProjection(1800.0, clock=clock)
    projection.planned(3000)
    clock.t = MIN_ELAPSED_S + 1
    projection.advance()
    assert not projection.overruns
    assert _warnings(caplog) == []


def test_a_night_that_will_overrun_is_warned_once_early(caplog: pytest.LogCaptureFixture) -> None:
    """20,000 rows at 3 a second: ~6,700 s against 1,800 s, said once, a minute into applying."""
    caplog.set_level(logging.WARNING, logger="phonesync.projection")
    clock = Clock()
    projection = RunProjection(1800.0, clock=clock)
    projection.planned(20_000)
    for i in range(400):
        clock.t = 1.0 + i / 3
        projection.advance()
    assert projection.overruns
    assert projection.projected_s == pytest.approx(6_667, rel=0.01)
    warned = _warnings(caplog)
    assert len(warned) == 1
    assert "beyond its window of 1800 s (178 of 20000 rows in 60 s)" in warned[0]


def test_all_rows_done_at_once_use_the_pace_since_applying_started() -> None:
    """No time has passed since the first row (a batch of answers): the pace since the start."""
    assert project(15.0, started=0.0, apply_started=5.0, first_done_at=15.0, done=100, total=400)
    assert project(
        15.0, started=0.0, apply_started=5.0, first_done_at=15.0, done=100, total=400
    ) == pytest.approx(45.0)
    assert project(1.0, started=0.0, apply_started=0.0, first_done_at=None, done=0, total=9) is None


def test_the_projected_finish_gauge_uses_the_same_pace() -> None:
    """The metric an alert watches (> 1800 s) must not cry wolf while the first rows are out."""
    clock = Clock()
    metrics = Metrics(clock=clock, wall=lambda: 0.0)
    metrics.run_started("r1")
    metrics.planned(20_000)
    for i in range(500):
        clock.t = 5.0 + i / 500
        metrics.row(Outcome.UPDATED)
    gauge = metrics.registry.get_sample_value("phonesync_run_projected_finish_seconds")
    assert gauge is not None
    assert gauge < 50
