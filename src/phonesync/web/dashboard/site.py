"""The dashboard's shared state: who is signed in, templates, the audit log, the guard.

One `Dashboard` per app, built by `routes(ctx)`. Every page goes through `guard`, which signs the
request in (or sends it to the login page) and checks the role before the page runs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from phonesync.ledger import audit, sessions
from phonesync.web.context import WebContext
from phonesync.web.dashboard.auth import SESSION_ID, SESSION_USER, Identity, LoginLimiter, identify
from phonesync.web.dashboard.render import make_environment, page
from phonesync.web.dashboard.users import PasswordCheck, Role, parse_users

log = logging.getLogger("phonesync.web.dashboard")

Handler = Callable[[Request, Identity], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Dashboard:
    """State shared by the dashboard's endpoints."""

    def __init__(
        self,
        ctx: WebContext,
        *,
        now: Callable[[], datetime] = _utc_now,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        secret = ctx.settings.dashboard_users
        self.passwords = PasswordCheck(parse_users(secret.get_secret_value() if secret else None))
        self.limiter = limiter or LoginLimiter()
        self.env = make_environment(ctx.settings.zone)
        self.now = now
        self.linked_jobs: set[str] = set()

    def identify(self, request: Request) -> Identity | None:
        """The proxy's user, or the cookie's user while its session is open in the ledger."""
        who = identify(request, self.settings, dict(self.passwords.users))
        if who is None or who.via != "password":
            return who
        session_id = request.session.get(SESSION_ID)
        engine = self.ctx.ledger.engine
        if isinstance(session_id, str) and sessions.is_active(engine, session_id, now=self.now()):
            return who
        # signed out, past its lifetime, or never stored: the cookie names nobody any more
        request.session.pop(SESSION_USER, None)
        request.session.pop(SESSION_ID, None)
        return None

    def start_session(self, request: Request, user: str) -> None:
        """Sign `user` in: a new session in the ledger (the previous one, if any, ends)."""
        self.end_session(request)
        session_id = secrets.token_urlsafe(32)
        sessions.open_session(
            self.ctx.ledger.engine,
            session_id,
            actor=user,
            now=self.now(),
            lifetime=timedelta(seconds=self.settings.dashboard_session_max_age_s),
        )
        request.session[SESSION_USER] = user
        request.session[SESSION_ID] = session_id

    def end_session(self, request: Request) -> None:
        """Revoke the cookie's session in the ledger (every copy of the cookie) and clear it."""
        session_id = request.session.get(SESSION_ID)
        if isinstance(session_id, str):
            sessions.revoke(self.ctx.ledger.engine, session_id, now=self.now())
        request.session.clear()

    def audit(
        self,
        who: Identity | str,
        action: str,
        *,
        result: str,
        target: str | None = None,
        detail: str | None = None,
        job_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record an action; a failure to record is logged, never hidden from the operator."""
        actor, role = (who.name, who.role) if isinstance(who, Identity) else (who, None)
        audit.record(
            self.ctx.ledger.engine,
            at=self.now(),
            actor=actor,
            role=role,
            action=action,
            result=result,
            target=target,
            detail=detail,
            job_id=job_id,
            run_id=run_id,
        )
        log.info("dashboard audit", extra={"actor": actor, "action": action, "result": result})

    def guard(self, handler: Handler, role: Role = "viewer") -> Endpoint:
        """Sign in, check `role`, then run the page."""

        async def endpoint(request: Request) -> Response:
            who = self.identify(request)
            if who is None:
                if request.method in ("GET", "HEAD"):
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                return PlainTextResponse("403 Forbidden: sign in first", status_code=403)
            request.scope["phonesync.identity"] = who
            if not who.may(role):
                self.audit(who, "forbidden", result="refused", target=request.url.path)
                return page(
                    self.env,
                    request,
                    "message.html",
                    403,
                    title="Not allowed",
                    message=f"This needs the {role} role; you are signed in as a {who.role}.",
                )
            return await handler(request, who)

        return endpoint
