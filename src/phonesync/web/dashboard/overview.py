"""What the overview page says: last night, the last 14 nights, and the alerts firing now.

Pure functions of the runs the ledger lists, the clock and the schedule, so they are tested
without a server. A "night" is the business date's newest run that is neither a dry run nor a
retry (a retry covers only some rows; its parent stays the night's run). "Last night" is the
night of the **latest business date**, not the most recently started run: a replay of an older
date never stands for it, so a failed night stays failed until a later run of that date (or a
run of a newer date) replaces it.

The 14-night chart shows what each night achieved over all its runs (`achieved`): a re-run that
finds everything already applied does not turn 1,888 updated rows into 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from phonesync.ledger.records import RunRecord
from phonesync.web.dashboard.charts import Night

NIGHTS = 14
#: A scheduled run that has not started this long after its time counts as missed.
MISSED_GRACE = timedelta(minutes=15)

STATUS_LOOK: dict[str | None, tuple[str, str]] = {
    "succeeded": ("ok", "Succeeded"),
    "completed_with_failures": ("warn", "Completed with failures"),
    "failed": ("bad", "Failed"),
    "aborted": ("bad", "Aborted"),
    "running": ("info", "Running"),
    None: ("bad", "No run"),
}


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert firing now: which one, and a sentence an operator can act on."""

    name: str
    message: str


def expected_night(now: datetime, next_run: datetime | None, zone: ZoneInfo) -> date:
    """The business date whose nightly run should have started by now.

    The schedule's previous fire time is its next one minus a day (a daily cron); without a
    schedule, yesterday in the zone.
    """
    if next_run is not None:
        previous = next_run - timedelta(days=1)
        if previous + MISSED_GRACE <= now:
            return previous.astimezone(zone).date()
        return (previous - timedelta(days=1)).astimezone(zone).date()
    return now.astimezone(zone).date() - timedelta(days=1)


def night_runs(runs: Sequence[RunRecord]) -> dict[date, RunRecord]:
    """The newest night run per business date (runs come newest first)."""
    found: dict[date, RunRecord] = {}
    for run in runs:
        if run.dry_run or run.trigger == "retry":
            continue
        found.setdefault(run.business_date, run)
    return found


def last_night(by_date: dict[date, RunRecord]) -> RunRecord | None:
    """The night of the latest business date (whenever it ran), or None without any night."""
    return by_date[max(by_date)] if by_date else None


#: Where rows that an earlier run (or a retry) of the night updated show up in its latest run,
#: in the order they are taken from: found already applied, or failed and fixed by a retry.
_CREDITED_FROM = ("unchanged", "failed", "conflict")


def achieved(night: RunRecord, runs: Sequence[RunRecord]) -> dict[str, int]:
    """The night's outcome counts over all its runs.

    The night run's own counts, except `updated`: the sum of `updated` over every run of the
    date that is not a dry run (retries included). The rows updated by the other runs are taken
    out of the night run's `unchanged`, then `failed`, then `conflict` counts (never below 0), as
    that is where a re-run or the retried parent has them; the bar keeps the night's height.
    """
    outcomes = {k: int(v) for k, v in ((night.summary or {}).get("outcomes") or {}).items()}
    others = sum(
        int(((run.summary or {}).get("outcomes") or {}).get("updated") or 0)
        for run in runs
        if run.business_date == night.business_date
        and not run.dry_run
        and run.run_id != night.run_id
    )
    if not others:
        return outcomes
    outcomes["updated"] = outcomes.get("updated", 0) + others
    for name in _CREDITED_FROM:
        taken = min(others, outcomes.get(name, 0))
        if taken:
            outcomes[name] -= taken
            others -= taken
    return outcomes


def last_nights(
    by_date: dict[date, RunRecord],
    last: date,
    count: int = NIGHTS,
    *,
    runs: Sequence[RunRecord] = (),
) -> list[Night]:
    """`count` nights ending with `last` (newest right), gaps included; `runs` (all the runs
    listed) lets each night count what its other runs updated (`achieved`)."""
    nights: list[Night] = []
    for back in range(count - 1, -1, -1):
        day = last - timedelta(days=back)
        run = by_date.get(day)
        summary = (run.summary or {}) if run else {}
        nights.append(
            Night(
                day=day,
                run_id=run.run_id if run else None,
                status=run.status if run else None,
                outcomes=achieved(run, runs) if run else {},
                duration_s=summary.get("duration_s"),
            )
        )
    return nights


def alerts(
    last_run: RunRecord | None,
    expected: date,
    by_date: dict[date, RunRecord],
    *,
    now: datetime,
    failure_threshold: float,
    slow_run_s: float,
) -> list[Alert]:
    """The alerts firing: failure ratio over the threshold, a slow run, a missed night."""
    firing: list[Alert] = []
    if expected not in by_date and (last_run is None or last_run.business_date < expected):
        firing.append(Alert("missed night", f"No run was recorded for {expected:%Y-%m-%d}."))
    if last_run is None:
        return firing
    summary = last_run.summary or {}
    ratio = summary.get("failure_ratio")
    if ratio is not None and ratio > failure_threshold:
        firing.append(
            Alert(
                "failure ratio",
                f"{100 * ratio:.2f} % of the rows of {last_run.business_date:%Y-%m-%d} failed "
                f"(threshold {100 * failure_threshold:.2f} %). Retry the failed rows.",
            )
        )
    took = summary.get("duration_s")
    if last_run.status == "running":
        took = (now - last_run.started_at).total_seconds()
    if took is not None and took > slow_run_s:
        firing.append(
            Alert(
                "slow run",
                f"The run of {last_run.business_date:%Y-%m-%d} took {took / 60:.0f} min "
                f"(alert above {slow_run_s / 60:.0f} min).",
            )
        )
    if last_run.status == "failed":
        firing.append(Alert("run failed", last_run.error or "The run could not do its job."))
    return firing
