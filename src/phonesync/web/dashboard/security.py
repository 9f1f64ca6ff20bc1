"""Security headers and CSRF protection, as plain ASGI middleware.

CSRF uses the synchronizer-token pattern: a random token kept in the signed session, sent back by
every form (`csrf_token` field) or script (`X-CSRF-Token` header). Every state-changing request
(POST, PUT, PATCH, DELETE) without the session's token is refused with 403 before any endpoint
runs, and reported to `on_refused` (the dashboard writes it to the audit log: who, which path,
"no token" or "wrong token" — never what the form carried). The form body is read here and
replayed to the endpoint unchanged.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
_SESSION_KEY = "csrf"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_FORM = 64 * 1024  # our forms are tiny; a bigger body is not worth buffering

#: Called with the request's scope and why ("no token" / "wrong token") when a request is refused.
OnRefused = Callable[[Scope, str], Awaitable[None]]

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        b"form-action 'self'; object-src 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


def csrf_token(conn: HTTPConnection) -> str:
    """The session's CSRF token, created on first use."""
    session: MutableMapping[str, Any] = conn.session
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def rotate_csrf(conn: HTTPConnection) -> str:
    """A fresh token (after logging in, so a token planted before login is worthless)."""
    conn.session[_SESSION_KEY] = secrets.token_urlsafe(32)
    return str(conn.session[_SESSION_KEY])


class SecurityHeadersMiddleware:
    """Adds CSP, no-framing, no-sniffing and referrer headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CsrfMiddleware:
    """Refuses state-changing requests that do not carry the session's CSRF token (403)."""

    def __init__(self, app: ASGIApp, on_refused: OnRefused | None = None) -> None:
        self.app = app
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        expected = scope.get("session", {}).get(_SESSION_KEY)
        headers = dict(scope.get("headers", []))
        sent = headers.get(CSRF_HEADER, b"").decode("latin-1")
        body: list[Message] = []
        if not sent and headers.get(b"content-type", b"").startswith(
            b"application/x-www-form-urlencoded"
        ):
            body, raw = await _read_body(receive)
            sent = parse_qs(raw.decode("utf-8", "replace")).get(CSRF_FIELD, [""])[0]
        if not (isinstance(expected, str) and sent and hmac.compare_digest(expected, sent)):
            if self.on_refused is not None:
                await self.on_refused(scope, "wrong token" if sent else "no token")
            await _refuse(send)
            return
        await self.app(scope, _replay(body, receive) if body else receive, send)


async def _read_body(receive: Receive) -> tuple[list[Message], bytes]:
    messages: list[Message] = []
    raw = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        raw += message.get("body", b"")
        if len(raw) > _MAX_FORM or not message.get("more_body", False):
            break
    return messages, raw[:_MAX_FORM]


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _refuse(send: Send) -> None:
    body = b"403 Forbidden: this form has expired or did not come from this site. Reload the page."
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
