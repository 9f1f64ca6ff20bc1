"""Render `var/bench/results.json` as the markdown tables pasted into docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    "scenario", "contender", "wall s", "updates/s", "bound s (kind)", "efficiency",
    "requests", "429 share", "max 429 run", "retries", "CPU ms/update", "peak RSS MB",
    "correct", "phonesync speed-up",
)  # fmt: skip


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


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


def markdown(results: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    notes = []
    for name, scenario in results["scenarios"].items():
        if scenario.get("status") != "ran":
            notes.append(f"- **{name}** ({scenario.get('title', '')}): {scenario['status']}")
            continue
        for contender, r in scenario["contenders"].items():
            if "error" in r:
                notes.append(f"- **{name} / {contender}**: {r['error']}")
                continue
            lines.append("| " + " | ".join(row_cells(name, contender, r)) + " |")
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
