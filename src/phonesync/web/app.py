"""`create_app(ctx)`: the one ASGI app of `phonesync serve`.

    /healthz   liveness: the process answers (no dependency is checked: a restart cannot fix one)
    /readyz    readiness: the ledger answers a query and the scheduler is running
    /metrics   Prometheus text exposition of the service's own registry
    …          the operator dashboard, when `phonesync.web.dashboard` is installed

Mount point of the dashboard (a package of its own): `create_app` imports
`phonesync.web.dashboard` if it exists and adds `routes(ctx) -> list[BaseRoute]` after the
endpoints above, and `middleware(ctx) -> list[Middleware]` if the module defines it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from phonesync.ledger.engine import read_transaction
from phonesync.web.context import WebContext

log = logging.getLogger(__name__)

DASHBOARD_MODULE = "phonesync.web.dashboard"
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def dashboard_module() -> ModuleType | None:
    """The dashboard package if it is installed (a missing *dependency* inside it still raises)."""
    try:
        return importlib.import_module(DASHBOARD_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name in (DASHBOARD_MODULE, "phonesync.web.dashboard"):
            return None
        raise


def ledger_ok(ctx: WebContext) -> tuple[bool, str]:
    try:
        with read_transaction(ctx.ledger.engine) as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the URL is not shown
        return False, f"unreachable ({type(exc).__name__})"
    return True, "ok"


def scheduler_ok(ctx: WebContext) -> tuple[bool, str]:
    running = getattr(ctx.schedule, "running", True)
    if not running:
        return False, "not running"
    return True, "paused" if ctx.schedule.paused else "running"


def health_routes(ctx: WebContext) -> list[BaseRoute]:
    """/healthz, /readyz and /metrics."""
    registry: CollectorRegistry = (
        ctx.metrics.registry if ctx.metrics is not None else CollectorRegistry()
    )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(request: Request) -> Response:  # sync: Starlette runs it in a thread (DB query)
        checks = {"ledger": ledger_ok(ctx), "scheduler": scheduler_ok(ctx)}
        ready = all(ok for ok, _ in checks.values())
        body = {"ready": ready, "checks": {name: why for name, (_, why) in checks.items()}}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def create_app(ctx: WebContext, *, lifespan: Lifespan | None = None) -> Starlette:
    """The service's ASGI app: health, metrics, and the dashboard when it is installed."""
    routes = health_routes(ctx)
    middleware: list[Middleware] = []
    dashboard = dashboard_module()
    if dashboard is not None:
        routes += list(dashboard.routes(ctx))
        make_middleware: Any = getattr(dashboard, "middleware", None)
        if make_middleware is not None:
            middleware += list(make_middleware(ctx))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
