"""The harness's figures from the sandbox's series and from a sweep: time_to_90_s and the best
fixed concurrency (pure functions over recorded numbers; no timing)."""

from __future__ import annotations

from typing import Any

import pytest
from harness import ramp, report, sweep


def test_limit_is_the_published_or_hidden_one_and_the_lower_of_both() -> None:
    assert ramp.limit_rps({"hidden_limit_rps": 25}) == 25
    assert ramp.limit_rps({"rate_limit_rps": 50, "rate_limit_burst": 50}) == 50
    assert ramp.limit_rps({"rate_limit_rps": 50, "hidden_limit_rps": 25}) == 25
    assert ramp.limit_rps({"latency_ms": 120}) is None


def test_window_rate_is_the_trailing_five_seconds_over_five() -> None:
    """Seconds before the first request count as 0: the window is always 5 s wide."""
    assert ramp.window_rates([5, 5, 5, 5, 5, 10, 0]) == [1, 2, 3, 4, 5, 6, 5]


@pytest.mark.parametrize(
    ("accepted", "expected"),
    [
        ([], None),
        ([25] * 10, 5.0),  # flat at the limit from the first second: the window is full at 5 s
        ([10, 10, 10, 10, 10, 25, 25, 25, 25, 25], 10.0),  # at 9 s: 10 + 4·25 = 110 < 112.5
        ([5, 10, 15, 20, 22, 23, 24, 23, 22, 22], 9.0),  # at 8 s: 20+22+23+24+23 = 112; 9 s: 114
        ([22, 22, 22, 22, 22, 22], None),  # 88 % forever
        ([25, 25, 25, 25, 13, 0, 0], 5.0),  # exactly 113 ≥ 112.5 at 5 s
        ([25, 25, 25, 25, 12], None),  # 112 < 112.5: never
    ],
)
def test_time_to_90_is_the_end_of_the_first_window_at_90_percent(
    accepted: list[int], expected: float | None
) -> None:
    assert ramp.time_to_share(accepted, 25) == expected


def test_ramp_figures_of_a_run_with_a_hidden_limit() -> None:
    series = {"first_at": 1003.5, "accepted": [0, 25, 25, 25, 25, 25, 10], "refused_429": []}
    climb = ramp.ramp(series, {"hidden_limit_rps": 25}, started_at=1000.0)
    assert climb is not None
    assert climb["time_to_90_s"] == 6.0
    assert climb["peak_window_rps"] == 25.0
    assert climb["peak_share"] == 1.0
    assert climb["first_request_after_s"] == 3.5
    assert ramp.ramp(series, {"latency_ms": 60}) is None  # no limit: no ramp figures


def test_ramp_of_an_empty_log_never_gets_there() -> None:
    climb = ramp.ramp({"first_at": None, "accepted": [], "refused_429": []}, {"rate_limit_rps": 5})
    assert climb is not None
    assert climb["time_to_90_s"] is None
    assert climb["first_request_after_s"] is None


def test_sweep_spec_parses_merges_and_rejects_nonsense() -> None:
    assert sweep.parse(["E6=64,16,32", "E6=8", "E4=4"]) == {"E6": [8, 16, 32, 64], "E4": [4]}
    assert sweep.parse([]) == {}
    for bad in ("E6", "E6=", "E6=a,b", "E6=0", "=16"):
        with pytest.raises(ValueError, match="--sweep"):
            sweep.parse([bad])


def test_sweep_contender_names_round_trip() -> None:
    assert sweep.fixed_concurrency(sweep.name(16)) == 16
    for other in ("phonesync", "fixed_async", "naive", "phonesync_fixed_", "phonesync_fixed_0"):
        assert sweep.fixed_concurrency(other) is None
    assert sweep.env(64) == {"PHONESYNC_PACING": "fixed", "PHONESYNC_CONCURRENCY": "64"}


def result(wall: float, run: float | None = None, *, correct: bool = True) -> dict[str, Any]:
    return {
        "wall_s": wall,
        "timed_out": False,
        "client": {"run_duration_s": run if run is not None else wall - 2},
        "correctness": {"correct": correct},
    }


def test_sweep_picks_the_fastest_correct_fixed_run_and_compares_adaptive_to_it() -> None:
    contenders = {
        "phonesync": result(22.0, 19.0),
        "fixed_async": result(10.0),  # not phonesync: not part of the sweep
        "phonesync_fixed_16": result(30.0, 28.0),
        "phonesync_fixed_32": result(20.0, 18.5),
        "phonesync_fixed_64": result(21.0, 17.5),
        "phonesync_fixed_128": result(5.0, correct=False),  # finished early by losing rows
    }
    s = sweep.summarise(contenders)
    assert s is not None
    assert s["concurrencies"] == [16, 32, 64, 128]
    assert (s["best_fixed"], s["best_fixed_wall_s"]) == (32, 20.0)
    assert s["adaptive_wall_s"] == 22.0
    assert s["adaptive_vs_best_fixed"] == pytest.approx(1.1)
    assert s["within_target"] is True  # 1.1 ≤ 1.10
    assert s["best_fixed_by_run"] == 64
    assert s["adaptive_vs_best_fixed_run"] == pytest.approx(19.0 / 17.5)
    assert s["runs"]["128"] == {
        "wall_s": 5.0,
        "run_duration_s": 3.0,
        "usable": False,
        "excluded": "not correct",
    }


def test_sweep_without_a_usable_adaptive_run_has_no_ratio() -> None:
    s = sweep.summarise({"phonesync_fixed_8": result(9.0), "phonesync": {"error": "boom"}})
    assert s is not None
    assert s["best_fixed"] == 8
    assert s["adaptive_vs_best_fixed"] is None
    assert s["adaptive"] == "error"
    assert sweep.summarise({"phonesync": result(9.0)}) is None  # no sweep ran


def row(**extra: Any) -> dict[str, Any]:
    base = {
        "wall_s": 10.0,
        "updates_per_s": 5.0,
        "bound": {"seconds": 8.0, "kind": "rate"},
        "efficiency": 0.8,
        "server": {"total": 100, "share_429": 0.01, "longest_429_run": 1},
        "client": {"retries": 2},
        "cpu_ms_per_update": 1.0,
        "peak_rss_mb": 50.0,
        "correctness": {"correct": True},
        "ramp": None,
    }
    return base | extra


def test_report_shows_the_ramp_column_only_when_a_row_has_a_limit() -> None:
    plain = {"scenarios": {"E1": {"status": "ran", "contenders": {"phonesync": row()}}}}
    assert report.RAMP_COLUMN not in report.markdown(plain)
    reached = row(ramp={"time_to_90_s": 12.0, "peak_share": 1.0})
    never = row(ramp={"time_to_90_s": None, "peak_share": 0.874})
    limited = {
        "scenarios": {
            "E1": {"status": "ran", "contenders": {"phonesync": row()}},
            "E4": {"status": "ran", "contenders": {"phonesync": reached, "naive": never}},
        }
    }
    table = report.markdown(limited)
    assert report.RAMP_COLUMN in table.splitlines()[0]
    lines = {tuple(line.split(" | ")[:2]): line for line in table.splitlines()[2:]}
    assert lines[("| E1", "phonesync")].endswith("| – |")
    assert lines[("| E4", "phonesync")].endswith("| 12 |")
    assert lines[("| E4", "naive")].endswith("| never (peak 87%) |")


def test_report_adds_a_sweep_table() -> None:
    contenders = {"phonesync": result(22.0, 19.0), "phonesync_fixed_32": result(20.0, 18.0)}
    contenders = {name: row() | r for name, r in contenders.items()}
    s = sweep.summarise(contenders)
    results = {"scenarios": {"E6": {"status": "ran", "contenders": contenders, "sweep": s}}}
    table = report.markdown(results)
    assert "| phonesync_fixed_32 |" in table
    assert "| E6 | 32 | 32 | 20.0 | 22.0 | 1.10× | 1.06× | – |" in table
