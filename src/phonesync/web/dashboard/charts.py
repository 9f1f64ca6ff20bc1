"""Inline SVG charts, drawn on the server: no script, no library, readable without colour.

Every chart has a `<title>`/`<desc>` for screen readers and `<title>` tooltips on its marks; the
pages print the same numbers in a table beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape

from markupsafe import Markup

#: Outcome groups drawn as one colour each, bottom to top.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("updated", "#2e7d32", ("updated",)),
    ("no change", "#90a4ae", ("unchanged", "superseded")),
    ("invalid in sheet", "#f9a825", ("invalid_nik", "invalid_phone", "invalid_date")),
    ("patient problem", "#6a1b9a", ("patient_not_found", "ambiguous_patient", "identity_mismatch")),
    ("failed", "#c62828", ("conflict", "failed")),
)


@dataclass(frozen=True, slots=True)
class Night:
    """One business date on the chart: its run's outcome counts and duration (None: no run)."""

    day: date
    run_id: str | None
    status: str | None
    outcomes: Mapping[str, int]
    duration_s: float | None


def group_counts(outcomes: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """`(group, colour, rows)` for each outcome group."""
    return [
        (name, colour, sum(outcomes.get(o, 0) for o in members)) for name, colour, members in GROUPS
    ]


def _svg(ident: str, size: tuple[int, int], title: str, desc: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {size[0]} {size[1]}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every value is escaped above


def nights_chart(nights: Sequence[Night], width: int = 720, height: int = 260) -> Markup:
    """Stacked outcome bars per night (left axis, rows) and duration dots (right axis, minutes)."""
    left, right, top, bottom = 56, 56, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max((sum(n.outcomes.values()) for n in nights), default=0) or 1
    longest_s = max((n.duration_s or 0 for n in nights), default=0) or 1.0
    unit, per = ("min", 60.0) if longest_s >= 120 else ("s", 1.0)
    longest = longest_s / per
    slot = plot_w / max(len(nights), 1)
    body = [_axes(left, top, plot_w, plot_h, most, (longest, unit))]
    dots: list[tuple[float, float, str]] = []
    for i, night in enumerate(nights):
        x = left + i * slot + slot * 0.15
        body += _bar(night, x, slot * 0.7, top + plot_h, plot_h / most)
        label = f"{night.day:%d/%m}"
        body.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 16}" class="tick" '
            f'text-anchor="middle">{label}</text>'
        )
        if night.duration_s is not None:
            y = top + plot_h - plot_h * (night.duration_s / per) / longest
            dots.append((x + slot * 0.35, y, f"{night.day}: {night.duration_s / per:.1f} {unit}"))
    if len(dots) > 1:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in dots)
        body.append(f'<polyline points="{points}" class="duration-line"/>')
    for x, y, tip in dots:
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" class="duration-dot">'
            f"<title>{escape(tip)}</title></circle>"
        )
    desc = f"Rows per outcome group for {len(nights)} nights, and each run's duration ({unit})."
    return _svg("nights", (width, height), "Last nights: outcomes and duration", desc, body)


def _axes(left: int, top: int, w: float, h: float, most: int, longest: tuple[float, str]) -> str:
    parts = [f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" class="axis"/>']
    for frac in (0.0, 0.5, 1.0):
        y = top + h - h * frac
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{round(most * frac):,}</text>"
            f'<text x="{left + w + 6}" y="{y + 4:.1f}" class="tick tick-duration">'
            f"{longest[0] * frac:.{0 if longest[0] >= 10 else 1}f} {longest[1]}</text>"
        )
    return "".join(parts)


def _bar(night: Night, x: float, w: float, base: float, scale: float) -> list[str]:
    if night.run_id is None:
        return [
            f'<text x="{x + w / 2:.1f}" y="{base - 6:.1f}" class="tick missing" '
            f'text-anchor="middle">no run<title>{night.day}: no run</title></text>'
        ]
    parts: list[str] = []
    y = base
    for name, colour, rows in group_counts(night.outcomes):
        if rows == 0:
            continue
        h = rows * scale
        y -= h
        tip = escape(f"{night.day} ({night.status}): {name} {rows:,}")
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(h, 0.5):.1f}" '
            f'fill="{colour}"><title>{tip}</title></rect>'
        )
    return parts


def throughput_chart(
    points: Sequence[tuple[datetime, int]], started: datetime, width: int = 720, height: int = 220
) -> Markup | None:
    """Rows recorded over the run's time (cumulative); None when there is too little to draw."""
    if len(points) < 2:
        return None
    left, right, top, bottom = 64, 16, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    series: list[tuple[float, int]] = []
    total = 0
    for at, rows in points:
        total += rows
        series.append((max((at - started).total_seconds(), 0.0), total))
    span = series[-1][0] or 1.0
    coords = [(left + plot_w * t / span, top + plot_h - plot_h * n / total) for t, n in series]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in [(left, top + plot_h), *coords])
    body = [
        _axes_simple(left, top, plot_w, plot_h, total, span),
        f'<polyline points="{line}" class="throughput-line"/>',
    ]
    rate = total / span
    desc = f"{total:,} rows recorded in {span:.0f} s, about {rate:,.0f} rows per second."
    return _svg("throughput", (width, height), "Rows recorded over the run", desc, body)


def _axes_simple(left: int, top: int, w: float, h: float, total: int, span: float) -> str:
    parts = [
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" class="axis"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + h - h * frac
        x = left + w * frac
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{round(total * frac):,}</text>"
            f'<text x="{x:.1f}" y="{top + h + 18}" class="tick" text-anchor="middle">'
            f"{span * frac:.0f} s</text>"
        )
    return "".join(parts)
