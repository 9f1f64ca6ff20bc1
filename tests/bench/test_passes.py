"""A baseline is run again on the rows it dropped, as its operator would (bench/harness/passes.py).

The "baseline" here is a small real script: it reads its work file and writes the stats file a
baseline writes, dropping rows by a rule the test picks.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from harness import passes, report

# Drops every row whose number is in DROP (a JSON list in the environment) the first time it sees
# it; with STUBBORN=1 it drops them every time. Counts one request per row it was given.
SCRIPT = """
import csv, json, os, sys
work, out = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
seen_file = os.environ["SEEN"]
seen = set(json.load(open(seen_file))) if os.path.exists(seen_file) else set()
drop = set(json.loads(os.environ["DROP"]))
rows = [int(r["row"]) for r in csv.DictReader(open(work))][:limit]
dropped = [r for r in rows if r in drop and (r not in seen or os.environ.get("STUBBORN"))]
json.dump(sorted(seen | set(rows)), open(seen_file, "w"))
json.dump({"rows": len(rows), "outcomes": {"written": len(rows) - len(dropped),
           "failed": len(dropped)}, "requests": len(rows), "retries": 1,
           "retry_rows": dropped}, open(out, "w"))
"""


def _setup(tmp_path: Path, rows: int) -> tuple[Path, Path, passes.CommandFor]:
    script = tmp_path / "baseline.py"
    script.write_text(SCRIPT)
    work = tmp_path / "work.csv"
    with work.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["row", "nik", "phone"])
        out.writerows([n, f"nik{n}", f"+62{n}"] for n in range(2, 2 + rows))
    state = tmp_path / "state"
    state.mkdir()

    def command_for(work_file: Path, stats: Path, limit: int | None) -> list[str]:
        return [sys.executable, str(script), str(work_file), str(stats)] + (
            [str(limit)] if limit else []
        )

    return work, state, command_for


def _env(tmp_path: Path, drop: list[int], *, stubborn: bool = False) -> dict[str, str]:
    env = {"SEEN": str(tmp_path / "seen.json"), "DROP": json.dumps(drop)}
    return env | ({"STUBBORN": "1"} if stubborn else {})


def test_the_dropped_rows_are_run_again_until_none_is_dropped(tmp_path: Path) -> None:
    work, state, command_for = _setup(tmp_path, rows=10)
    measured, runs = passes.run(
        command_for, work, None, 10, state, _env(tmp_path, [3, 7, 8]), timeout_s=60,
        kill_when=None,
    )  # fmt: skip
    assert [(p["rows"], p["dropped"]) for p in runs] == [(10, 3), (3, 0)]
    assert [line.split(",")[0] for line in (state / "work-pass2.csv").read_text().split()] == [
        "row", "3", "7", "8",
    ]  # fmt: skip
    assert measured.exit_codes == [0, 0]
    assert measured.wall_s == sum(p["wall_s"] for p in runs)
    merged = passes.merged_stats(state, runs)
    assert merged["requests"] == 13  # 10 + the 3 again
    assert merged["retries"] == 2
    assert merged["first_pass_outcomes"] == {"written": 7, "failed": 3}
    assert merged["passes"] == runs
    assert "retry_rows" not in merged


def test_a_pass_that_saves_no_row_is_the_last(tmp_path: Path) -> None:
    work, state, command_for = _setup(tmp_path, rows=6)
    _, runs = passes.run(
        command_for, work, None, 6, state, _env(tmp_path, [4, 5], stubborn=True), timeout_s=60,
        kill_when=None, max_passes=5,
    )  # fmt: skip
    assert [(p["rows"], p["dropped"]) for p in runs] == [(6, 2), (2, 2)]


def test_the_first_pass_keeps_the_subset_limit_and_max_passes_caps_the_runs(
    tmp_path: Path,
) -> None:
    work, state, command_for = _setup(tmp_path, rows=10)
    _, runs = passes.run(
        command_for, work, 4, 4, state, _env(tmp_path, [2, 3, 9]), timeout_s=60,
        kill_when=None, max_passes=1,
    )  # fmt: skip
    assert [(p["rows"], p["dropped"]) for p in runs] == [(4, 2)]  # row 9 is outside the subset
    assert not (state / "work-pass2.csv").exists()


def test_a_pass_without_stats_ends_the_passes(tmp_path: Path) -> None:
    work, state, _ = _setup(tmp_path, rows=3)
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    measured, runs = passes.run(
        lambda *_: crash, work, None, 3, state, {}, timeout_s=60, kill_when=None
    )
    assert measured.exit_codes == [3]
    assert runs[0]["dropped"] is None
    assert passes.merged_stats(state, runs) == {}


def test_the_table_shows_each_run_of_a_baseline() -> None:
    result = {
        "wall_s": 65.2, "updates_per_s": 14.4, "efficiency": 0.87, "cpu_ms_per_update": 2.0,
        "peak_rss_mb": 36, "client": {"retries": 9},
        "bound": {"seconds": 56.9, "kind": "rate"},
        "server": {"total": 3000, "share_429": 0.3, "longest_429_run": 8},
        "correctness": {"correct": True},
        "passes": [{"wall_s": 51.7}, {"wall_s": 13.5}],
    }  # fmt: skip
    cells = report.row_cells("E2", "fixed_async", result)
    assert cells[2] == "65.2 (2 runs: 51.7 + 13.5)"
    one_run = report.row_cells("E2", "fixed_async", result | {"passes": [{"wall_s": 65.2}]})
    assert one_run[2] == "65.2"
