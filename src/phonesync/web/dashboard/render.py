"""Jinja2 templates and the filters that make values readable: 1,234 · 12.5 % · 23:00 WIB."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from phonesync.web.dashboard.security import csrf_token

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def number(value: Any) -> str:
    """`1234` → `1,234`; missing values show as a dash."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None or isinstance(value, Undefined) or value == "" else str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def percent(part: Any, whole: Any) -> str:
    """Share as `12.5 %` (one decimal; `<0.1 %` for tiny non-zero shares)."""
    if not whole:
        return "—"
    share = 100 * float(part or 0) / float(whole)
    if 0 < share < 0.1:
        return "<0.1 %"
    return f"{share:.1f} %"


def ratio(value: Any) -> str:
    """A 0–1 ratio as a percentage."""
    return "—" if value is None else f"{100 * float(value):.2f} %"


def duration(seconds: Any) -> str:
    """`41 s`, `12 min 3 s`, `1 h 02 min`."""
    if not isinstance(seconds, int | float):
        return "—"
    if seconds < 10:
        return f"{float(seconds):.1f} s"
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def make_environment(zone: ZoneInfo) -> Environment:
    """Templates with autoescaping and the filters above; times shown in `zone`."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None:
            return "—"
        shown = value.astimezone(zone)
        return f"{shown.strftime(fmt)} {shown.tzname() or ''}".strip()

    env.globals["zone_name"] = f"{getattr(zone, 'key', zone)}"
    env.filters.update(
        number=number, percent=percent, ratio=ratio, duration=duration, local=local_time
    )
    return env


def page(
    env: Environment, request: Request, name: str, status_code: int = 200, **values: Any
) -> HTMLResponse:
    """Render a template with the request, its CSRF token and the signed-in user."""
    values.setdefault("who", request.scope.get("phonesync.identity"))
    html = env.get_template(name).render(request=request, csrf=csrf_token(request), **values)
    return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store"})
