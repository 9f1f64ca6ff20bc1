"""A sweep of fixed concurrencies for phonesync: is adaptive pacing close to the best fixed N?

`--sweep E6=16,32,64,128` adds, for scenario E6, one contender per N named `phonesync_fixed_N`:
phonesync itself with `PHONESYNC_PACING=fixed PHONESYNC_CONCURRENCY=N` (on top of the phonesync
contender's settings), each on its own fresh sandbox like every other contender; its latency bound
uses N. The scenario then reports the best fixed N (lowest end-to-end wall time among the runs
that were correct and did not time out), its wall time, and adaptive phonesync's ratio to it
(`adaptive_vs_best_fixed`, the issue's target: ≤ 1.10), and the same on phonesync's own run
duration (`adaptive_vs_best_fixed_run`: without process start-up, which every run pays alike).
"""

from __future__ import annotations

import re
from typing import Any

PREFIX = "phonesync_fixed_"
DEFAULT = {"E6": [16, 32, 64, 128]}  # `make bench` (no --sweep given)
TARGET = 1.10
_NAME = re.compile(re.escape(PREFIX) + r"([1-9][0-9]*)")


def parse(specs: list[str]) -> dict[str, list[int]]:
    """["E6=16,32", "E4=8"] → {"E6": [16, 32], "E4": [8]}; repeated names add up, sorted."""
    out: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--sweep {spec!r}: expected SCENARIO=N,N,… (e.g. E6=16,32,64)")
        try:
            numbers = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: concurrencies must be whole numbers") from None
        if not numbers or min(numbers) < 1:
            raise ValueError(f"--sweep {spec!r}: give one or more concurrencies ≥ 1")
        merged = set(out.get(name.strip(), [])) | set(numbers)
        out[name.strip()] = sorted(merged)
    return out


def name(concurrency: int) -> str:
    return f"{PREFIX}{concurrency}"


def fixed_concurrency(contender: str) -> int | None:
    """N for `phonesync_fixed_N`, None for any other contender."""
    match = _NAME.fullmatch(contender)
    return int(match.group(1)) if match else None


def env(concurrency: int) -> dict[str, str]:
    return {"PHONESYNC_PACING": "fixed", "PHONESYNC_CONCURRENCY": str(concurrency)}


def _usable(result: dict[str, Any]) -> str | None:
    """Why a run cannot stand for its concurrency (None: it can)."""
    if "error" in result:
        return "error"
    if result.get("timed_out"):
        return "timed out"
    if not result.get("correctness", {}).get("correct"):
        return "not correct"
    return None


def summarise(contenders: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The sweep's verdict from a scenario's contender results; None if it had no fixed runs."""
    runs: dict[str, dict[str, Any]] = {}
    for contender, result in contenders.items():
        n = fixed_concurrency(contender)
        if n is None:
            continue
        why = _usable(result)
        runs[str(n)] = {
            "wall_s": result.get("wall_s"),
            "run_duration_s": result.get("client", {}).get("run_duration_s"),
            "usable": why is None,
            **({"excluded": why} if why else {}),
        }
    if not runs:
        return None
    out: dict[str, Any] = {
        "concurrencies": sorted(int(n) for n in runs),
        "runs": runs,
        "best_fixed": None,
        "best_fixed_wall_s": None,
        "adaptive_wall_s": None,
        "adaptive_vs_best_fixed": None,
        "best_fixed_by_run": None,
        "adaptive_vs_best_fixed_run": None,
        "target": TARGET,
        "within_target": None,
    }
    usable = {n: r for n, r in runs.items() if r["usable"]}
    if not usable:
        return out
    best = min(usable, key=lambda n: usable[n]["wall_s"])
    out["best_fixed"], out["best_fixed_wall_s"] = int(best), usable[best]["wall_s"]
    timed = {n: r for n, r in usable.items() if r["run_duration_s"]}
    best_run = min(timed, key=lambda n: timed[n]["run_duration_s"]) if timed else None
    out["best_fixed_by_run"] = int(best_run) if best_run else None
    adaptive = contenders.get("phonesync")
    if adaptive is None or _usable(adaptive) is not None:
        out["adaptive"] = "not run" if adaptive is None else _usable(adaptive)
        return out
    out["adaptive_wall_s"] = adaptive["wall_s"]
    out["adaptive_vs_best_fixed"] = adaptive["wall_s"] / usable[best]["wall_s"]
    out["within_target"] = out["adaptive_vs_best_fixed"] <= TARGET
    adaptive_run = adaptive.get("client", {}).get("run_duration_s")
    if best_run and adaptive_run:
        out["adaptive_vs_best_fixed_run"] = adaptive_run / timed[best_run]["run_duration_s"]
    return out
