"""Render `var/bench/results.json` as the markdown tables pasted into docs/benchmarks.md.

The column "time to 90 % s" (`time_to_90_s`, bench/harness/ramp.py) appears only when some row ran
against a rate limit: the seconds from the contender's first FHIR request until its accepted rate
over 5 s reached 90 % of the limit; "never (peak P %)" when it did not, "–" in a scenario without
a limit. A scenario with a fixed-concurrency sweep gets a second table (bench/harness/sweep.py).
A baseline that was run again on the rows it dropped (bench/harness/passes.py) shows its total wall
time and each run's: "65.2 (2 runs: 51.7 + 13.5)".
"""

from __future__ import annotations

from typing import Any

COLUMNS = (
    "scenario", "contender", "wall s", "updates/s", "bound s (kind)", "efficiency",
    "requests", "429 share", "max 429 run", "retries", "CPU ms/update", "peak RSS MB",
    "correct", "phonesync speed-up",
)  # fmt: skip
RAMP_COLUMN = "time to 90 % s"
SWEEP_COLUMNS = (
    "scenario", "fixed concurrencies", "best fixed N", "best fixed wall s", "adaptive wall s",
    "adaptive ÷ best fixed", "run s: adaptive ÷ best fixed", "excluded",
)  # fmt: skip


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def ramp_cell(r: dict[str, Any]) -> str:
    climb = r.get("ramp")
    if not climb:
        return "–"
    if climb["time_to_90_s"] is None:
        return f"never (peak {climb['peak_share']:.0%})"
    return f"{climb['time_to_90_s']:.0f}"


def row_cells(name: str, contender: str, r: dict[str, Any]) -> list[str]:
    c = r["correctness"]
    correct = "yes" if c["correct"] else (
        f"NO: {c['ok']}/{c['expected_updates']} ok, {c['missing']} missing, "
        f"{c['wrong_number']} wrong, {c['duplicate_writes']} dup, "
        f"{c['writes_outside_plan']} outside plan"
    )  # fmt: skip
    wall = _num(r["wall_s"])
    if r.get("scaled_from_rows"):
        wall = f"{_num(r['wall_scaled_s'])} (×{r['scale']:.1f} of {r['wall_s']:.1f})"
    if r.get("timed_out"):
        wall += " TIMED OUT"
    if r.get("killed_at_s") is not None:
        wall += f" (kill -9 at {r['killed_at_s']:.0f} s)"
    if len(r.get("passes") or ()) > 1:
        runs = r["passes"]
        wall += f" ({len(runs)} runs: " + " + ".join(_num(p["wall_s"]) for p in runs) + ")"
    ratio = r.get("phonesync_speedup")
    return [
        name,
        contender,
        wall,
        _num(r["updates_per_s"]),
        f"{_num(r['bound']['seconds'])} ({r['bound']['kind']})",
        f"{r['efficiency']:.0%}",
        f"{r['server']['total']:,}",
        f"{r['server']['share_429']:.2%}",
        str(r["server"]["longest_429_run"]),
        str(r["client"].get("retries", "–")),
        _num(r["cpu_ms_per_update"], 2),
        _num(r["peak_rss_mb"], 0),
        correct,
        "–" if ratio is None else f"{ratio:.2f}×",
    ]


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def sweep_cells(name: str, s: dict[str, Any]) -> list[str]:
    excluded = ", ".join(f"{n}: {r['excluded']}" for n, r in s["runs"].items() if "excluded" in r)
    if s.get("adaptive"):
        excluded = ", ".join(x for x in (excluded, f"adaptive: {s['adaptive']}") if x)
    return [
        name,
        ", ".join(str(n) for n in s["concurrencies"]),
        "–" if s["best_fixed"] is None else str(s["best_fixed"]),
        _num(s["best_fixed_wall_s"]),
        _num(s["adaptive_wall_s"]),
        _ratio(s["adaptive_vs_best_fixed"]),
        _ratio(s["adaptive_vs_best_fixed_run"]),
        excluded or "–",
    ]


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    head = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return head + ["| " + " | ".join(cells) + " |" for cells in rows]


def markdown(results: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    sweeps: list[list[str]] = []
    notes = []
    with_ramp = False
    for name, scenario in results["scenarios"].items():
        if scenario.get("status") != "ran":
            notes.append(f"- **{name}** ({scenario.get('title', '')}): {scenario['status']}")
            continue
        for contender, r in scenario["contenders"].items():
            if "error" in r:
                notes.append(f"- **{name} / {contender}**: {r['error']}")
                continue
            with_ramp = with_ramp or bool(r.get("ramp"))
            rows.append([*row_cells(name, contender, r), ramp_cell(r)])
        if scenario.get("sweep"):
            sweeps.append(sweep_cells(name, scenario["sweep"]))
    columns = (*COLUMNS, RAMP_COLUMN) if with_ramp else COLUMNS
    lines = _table(columns, [cells[: len(columns)] for cells in rows])
    if sweeps:
        lines += ["", *_table(SWEEP_COLUMNS, sweeps)]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
