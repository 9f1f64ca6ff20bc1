"""The operator dashboard (docs/dashboard.md): pages, login, actions, audit — for `create_app`.

    routes(ctx)      -> the dashboard's routes (every page needs a signed-in user)
    middleware(ctx)  -> security headers, signed session cookies, CSRF checks (in that order)

Imports are deferred so that `phonesync hash-password` and the other commands stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute

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
    """Outermost first: security headers on every response, then the session, then CSRF."""
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
        Middleware(CsrfMiddleware),
    ]
