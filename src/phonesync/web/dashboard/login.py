"""Signing in and out with a configured user's password (rate-limited), or through the proxy.

Signing in opens a session in the ledger and signing out revokes it (`Dashboard.start_session`,
`end_session`): the old cookie is refused afterwards, on every replica and after a restart.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from phonesync.web.dashboard.render import page
from phonesync.web.dashboard.security import rotate_csrf
from phonesync.web.dashboard.site import Dashboard


def safe_next(target: str | None) -> str:
    """Only a path on this site (no `//host`, no scheme) may follow a login."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


class Login:
    """`/login` (form and submit) and `/logout`."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        return page(
            self.dash.env,
            request,
            "login.html",
            status,
            who=None,
            error=error,
            next=safe_next(request.query_params.get("next")),
            proxy=bool(self.dash.settings.dashboard_trusted_header),
            has_users=bool(self.dash.passwords.users),
        )

    async def show(self, request: Request) -> Response:
        if self.dash.identify(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        return self.form(request)

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        name = str(form.get("username", "")).strip()[:255]
        password = str(form.get("password", ""))
        address = request.client.host if request.client else "?"
        dash = self.dash
        if dash.limiter.blocked(name, address):
            dash.audit(name or "?", "login", result="refused", detail="too many failed attempts")
            return self.form(
                request, "Too many failed attempts. Wait 15 minutes and try again.", 429
            )
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        user = await asyncio.to_thread(dash.passwords.verify, name, password)
        if user is None:
            dash.limiter.failed(name, address)
            dash.audit(name or "?", "login", result="failed")
            return self.form(request, "Wrong user name or password.", 401)
        dash.limiter.succeeded(name, address)
        dash.start_session(request, user.name)
        rotate_csrf(request)
        dash.audit(user.name, "login", result="ok")
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)

    async def logout(self, request: Request) -> Response:
        who = self.dash.identify(request)
        self.dash.end_session(request)  # revoked in the ledger: a copy of the cookie is dead too
        if who is not None:
            self.dash.audit(who, "logout", result="ok")
        return RedirectResponse("/login", status_code=303)

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.show, methods=["GET"], name="login"),
            Route("/login", self.submit, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"], name="logout"),
        ]
