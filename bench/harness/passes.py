"""A baseline run the way its operator would finish the night: again on the rows it dropped.

The baselines give up on a row after their retries (fixed_async: 3 attempts; naive: none) and list
those rows in their stats (`retry_rows`). Comparing phonesync's wall time with a run that left a
sixth of the rows undone would flatter the baseline, so the harness starts the same script again
on just those rows, on the same sandbox, until a pass drops nothing, a pass saves no row (the
rest will not land by retrying), or `max_passes` ran. Wall time, CPU and the server's requests
count every pass; `passes` records each one (rows given, wall s, rows dropped).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import contenders

DEFAULT_MAX_PASSES = 5

#: (work file, stats file, row limit) → the command of one pass
CommandFor = Callable[[Path, Path, int | None], list[str]]


def retry_rows(stats_file: Path) -> list[int] | None:
    """The rows a pass dropped, or None when its stats are missing (it crashed or was killed)."""
    if not stats_file.exists():
        return None
    return [int(r) for r in json.loads(stats_file.read_text()).get("retry_rows", [])]


def write_work(source: Path, rows: list[int], target: Path) -> None:
    """The lines of `source` (row,nik,phone) for `rows`, in the source's order."""
    wanted = set(rows)
    with source.open(newline="") as f, target.open("w", newline="") as out:
        reader = csv.reader(f)
        writer = csv.writer(out)
        writer.writerow(next(reader))
        writer.writerows(line for line in reader if int(line[0]) in wanted)


def run(
    command_for: CommandFor,
    work: Path,
    limit: int | None,
    rows: int,
    state: Path,
    env: dict[str, str],
    *,
    timeout_s: float,
    kill_when: Callable[[], bool] | None,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> tuple[contenders.Measured, list[dict[str, Any]]]:
    """Pass 1 on `work` (its first `limit` rows: `rows` of them), then on what each pass dropped."""
    total = contenders.Measured()
    passes: list[dict[str, Any]] = []
    remaining = timeout_s
    given = rows
    pass_work, stats = work, state / "stats.json"
    for n in range(1, max_passes + 1):
        measured = contenders.run(
            command_for(pass_work, stats, limit if n == 1 else None), state / "client.log", env,
            timeout_s=remaining, kill_when=kill_when if n == 1 else None,
        )  # fmt: skip
        _add(total, measured)
        remaining -= measured.wall_s
        dropped = retry_rows(stats)
        passes.append({
            "rows": given, "wall_s": measured.wall_s, "exit_codes": measured.exit_codes,
            "dropped": None if dropped is None else len(dropped),
        })  # fmt: skip
        if measured.timed_out or not dropped or remaining <= 0 or n == max_passes:
            break
        if len(dropped) >= given:
            break  # this pass saved no row: another would not either
        given = len(dropped)
        pass_work, stats = state / f"work-pass{n + 1}.csv", state / f"stats-pass{n + 1}.json"
        write_work(work, dropped, pass_work)
    return total, passes


def merged_stats(state: Path, passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The first pass's stats (its `outcomes` renamed `first_pass_outcomes`), with requests and
    retries summed over every pass; the server's state says how the rows ended."""
    files = [
        state / "stats.json",
        *(state / f"stats-pass{n}.json" for n in range(2, 1 + len(passes))),
    ]
    found = [json.loads(f.read_text()) for f in files if f.exists()]
    if not found:
        return {}
    first = dict(found[0])
    first.pop("retry_rows", None)
    first["first_pass_outcomes"] = first.pop("outcomes", None)
    for key in ("requests", "retries"):
        first[key] = sum(int(s.get(key) or 0) for s in found)
    first["passes"] = passes
    return first


def _add(total: contenders.Measured, one: contenders.Measured) -> None:
    total.wall_s += one.wall_s
    total.cpu_s += one.cpu_s
    total.peak_rss_mb = max(total.peak_rss_mb, one.peak_rss_mb)
    total.exit_codes += one.exit_codes
    total.timed_out = total.timed_out or one.timed_out
    if total.killed_at_s is None and one.killed_at_s is not None:
        total.killed_at_s = one.killed_at_s
