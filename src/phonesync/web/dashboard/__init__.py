"""The operator dashboard (docs/dashboard.md): pages, login, actions, audit — for `create_app`.

    routes(ctx)      -> the dashboard's routes (every page needs a signed-in user)
    middleware(ctx)  -> security headers, signed session cookies, CSRF checks (in that order)

Imports are deferred so that `phonesync hash-password` and the other commands stay light.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute
    from starlette.types import Scope

    from phonesync.web.context import WebContext

SESSION_COOKIE = "phonesync_session"


def routes(ctx: WebContext) -> list[BaseRoute]:
    """Every dashboard route: pages, login/logout, actions, job progress, static files."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from phonesync.web.dashboard.actions import Actions
    from phonesync.web.dashboard.login import Login
    from phonesync.web.dashboard.pages import Pages
    from phonesync.web.dashboard.render import STATIC
    from phonesync.web.dashboard.site import Dashboard

    dash = Dashboard(ctx)
    return [
        *Login(dash).routes(),
        *Pages(dash).routes(),
        *Actions(dash).routes(),
        Mount("/static/dashboard", StaticFiles(directory=STATIC), name="dashboard-static"),
    ]


def middleware(ctx: WebContext) -> list[Middleware]:
    """Outermost first: security headers on every response, then the session, then CSRF (its
    refusals go to the audit log)."""
    import logging
    import secrets

    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    from phonesync.web.dashboard.security import CsrfMiddleware, SecurityHeadersMiddleware

    settings = ctx.settings
    if settings.dashboard_session_key is not None:
        key = settings.dashboard_session_key.get_secret_value()
    else:
        key = secrets.token_urlsafe(32)
        logging.getLogger("phonesync.web.dashboard").warning(
            "PHONESYNC_DASHBOARD_SESSION_KEY is not set: sessions end when the service restarts"
        )
    return [
        Middleware(SecurityHeadersMiddleware),
        Middleware(
            SessionMiddleware,
            secret_key=key,
            session_cookie=SESSION_COOKIE,
            max_age=settings.dashboard_session_max_age_s,
            same_site="strict",
            https_only=settings.dashboard_cookie_secure,
        ),
        Middleware(CsrfMiddleware, on_refused=functools.partial(audit_csrf_refusal, ctx)),
    ]


async def audit_csrf_refusal(ctx: WebContext, scope: Scope, why: str) -> None:
    """A POST refused for its CSRF token, in the audit log: the session's user (or `?`), the
    path and why. Nothing of the body is read or kept (it may hold a NIK typed for a look-up)."""
    import asyncio
    import logging
    from datetime import UTC, datetime

    from phonesync.ledger import audit
    from phonesync.web.dashboard.auth import SESSION_USER

    session = scope.get("session") or {}
    user = session.get(SESSION_USER)
    actor = user if isinstance(user, str) else "?"
    try:
        await asyncio.to_thread(
            functools.partial(
                audit.record,
                ctx.ledger.engine,
                at=datetime.now(UTC),
                actor=actor,
                role=None,
                action="csrf",
                result="refused",
                target=str(scope.get("path", "")),
                detail=why,
            )
        )
    except Exception:  # the 403 stands; the failure to record is logged
        logging.getLogger("phonesync.web.dashboard").exception(
            "could not write a refused request to the audit log"
        )
        return
    logging.getLogger("phonesync.web.dashboard").info(
        "dashboard audit", extra={"actor": actor, "action": "csrf", "result": "refused"}
    )
