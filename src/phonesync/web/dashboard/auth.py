"""Who is asking: a session from the login form, or an authenticating proxy's headers.

Proxy headers (`PHONESYNC_DASHBOARD_TRUSTED_HEADER` / `_ROLE_HEADER`) are honoured only when
configured; the proxy must then strip any copy a client sends (docs/dashboard.md). Session users
are re-checked against the configuration on every request, so removing a user or changing a role
takes effect at once; `Dashboard.identify` also checks that the cookie's session is still open
in the ledger (`ledger.sessions`), so signing out ends it for every copy of the cookie.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from phonesync.settings import Settings
from phonesync.web.dashboard.users import Role, User

SESSION_USER = "user"
#: The id of the server-side session (`ledger.sessions`) the cookie stands for.
SESSION_ID = "sid"
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1}


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in person as the pages see them."""

    name: str
    role: Role
    via: str  # "password" | "proxy"

    def may(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def identify(conn: HTTPConnection, settings: Settings, users: dict[str, User]) -> Identity | None:
    """The identity of this request, or None when nobody is signed in."""
    header = settings.dashboard_trusted_header
    if header:
        name = conn.headers.get(header, "").strip()
        if name:
            return Identity(name=name[:255], role=_proxy_role(conn, settings), via="proxy")
    signed_in = conn.session.get(SESSION_USER)
    if not isinstance(signed_in, str):
        return None
    user = users.get(signed_in.lower())
    return Identity(name=user.name, role=user.role, via="password") if user else None


def _proxy_role(conn: HTTPConnection, settings: Settings) -> Role:
    header = settings.dashboard_role_header
    if not header:
        return "viewer"
    values = {v.strip() for v in conn.headers.get(header, "").split(",")}
    return "operator" if values & set(settings.dashboard_operator_groups) else "viewer"


class LoginLimiter:
    """At most `max_failures` failed logins per (user, client address) in `window_s` seconds."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        horizon = self._clock() - self.window_s
        while times and times[0] < horizon:
            times.popleft()
        return times

    def blocked(self, user: str, address: str) -> bool:
        return len(self._recent((user.lower(), address))) >= self.max_failures

    def failed(self, user: str, address: str) -> None:
        self._recent((user.lower(), address)).append(self._clock())
        if len(self._failures) > 10_000:  # bound memory under a spray of made-up names
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k)}

    def succeeded(self, user: str, address: str) -> None:
        self._failures.pop((user.lower(), address), None)
