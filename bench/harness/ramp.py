"""How fast a contender climbs to a rate limit: `time_to_90_s`, from the per-second series.

The sandbox stamps every answer with its clock (`GET /_sandbox/requests` → `requests.per_second`:
answers per whole second since the first one, `accepted` = any status but 429). For a scenario
with a limit (`rate_limit_rps`, `hidden_limit_rps`; the lower one if both), `time_to_90_s` is the
first time t — whole seconds since the contender's first FHIR request — at which the accepted
rate over the 5 s window ending at t, (accepted in [t - 5, t)) ÷ 5, is ≥ 90 % of the limit; None
if it never is. The window is always 5 s wide (seconds before the first request count as 0), and
t comes in whole seconds: the series' resolution.
"""

from __future__ import annotations

from typing import Any

WINDOW_S = 5
SHARE = 0.9


def limit_rps(knobs: dict[str, Any]) -> float | None:
    """The scenario's request-rate limit (published or hidden), None if it has none."""
    limits = [knobs[k] for k in ("rate_limit_rps", "hidden_limit_rps") if knobs.get(k)]
    return float(min(limits)) if limits else None


def window_rates(accepted: list[int], window_s: int = WINDOW_S) -> list[float]:
    """rates[i]: accepted per second over the `window_s` seconds ending at t = i + 1."""
    rates, total = [], 0
    for i, count in enumerate(accepted):
        total += count
        if i >= window_s:
            total -= accepted[i - window_s]
        rates.append(total / window_s)
    return rates


def time_to_share(
    accepted: list[int], limit: float, share: float = SHARE, window_s: int = WINDOW_S
) -> float | None:
    """The first t (s since the first request) whose trailing window reaches `share` × limit."""
    for i, rate in enumerate(window_rates(accepted, window_s)):
        if rate >= share * limit - 1e-9:
            return float(i + 1)
    return None


def ramp(
    per_second: dict[str, Any] | None, knobs: dict[str, Any], started_at: float | None = None
) -> dict[str, Any] | None:
    """The ramp figures of one contender's run, or None when the scenario has no limit.

    `started_at`: the harness's `time.monotonic()` when it started the contender; the sandbox's
    clock is the same system-wide CLOCK_MONOTONIC, so `first_request_after_s` is the contender's
    start-up before its first FHIR answer.
    """
    limit = limit_rps(knobs)
    if limit is None:
        return None
    series = per_second or {}
    accepted = list(series.get("accepted") or [])
    rates = window_rates(accepted)
    peak = max(rates, default=0.0)
    first_at = series.get("first_at")
    return {
        "limit_rps": limit,
        "window_s": WINDOW_S,
        "share": SHARE,
        "time_to_90_s": time_to_share(accepted, limit),
        "peak_window_rps": peak,
        "peak_share": peak / limit,
        "first_request_after_s": (
            None if first_at is None or started_at is None else first_at - started_at
        ),
    }
