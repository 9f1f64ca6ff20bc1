"""Login, roles, CSRF, sessions and headers of the dashboard, through the real app."""

from __future__ import annotations

import dataclasses
import json
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from tests.web.conftest import NIK, RUN_ID, Site, TestClient, build_site

from phonesync.ledger import audit
from phonesync.ledger.schema import dashboard_sessions
from phonesync.web.app import create_app
from phonesync.web.dashboard import SESSION_COOKIE
from phonesync.web.dashboard.auth import LoginLimiter
from phonesync.web.dashboard.login import safe_next


def _audit_actions(site: Site) -> list[tuple[str, str, str]]:
    entries, _ = audit.entries(site.ctx.ledger.engine)
    return [(e.actor, e.action, e.result) for e in entries]


def test_anonymous_page_redirects_to_login(site: Site) -> None:
    """An anonymous request for a page is sent to the login, remembering where it was going."""
    response = site.client.get(f"/runs/{RUN_ID}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/runs/{RUN_ID}"


def test_health_needs_no_login(site: Site) -> None:
    """/healthz answers without a session."""
    assert site.client.get("/healthz").status_code == 200


def test_operator_logs_in_and_sees_the_overview(site: Site) -> None:
    """A configured operator signs in and lands on the overview with their name and role."""
    response = site.login("olga")
    assert response.status_code == 303
    page = site.client.get("/")
    assert page.status_code == 200
    assert "olga" in page.text
    assert "Completed with failures" in page.text
    assert ("olga", "login", "ok") in _audit_actions(site)


def test_wrong_password_is_refused_and_audited(site: Site) -> None:
    """A wrong password gets 401 and an audit entry; no session is made."""
    assert site.login("olga", "wrong password").status_code == 401
    assert site.client.get("/", follow_redirects=False).status_code == 303
    assert ("olga", "login", "failed") in _audit_actions(site)


def test_login_is_rate_limited_per_user_and_address(site: Site) -> None:
    """After 5 failures the right password is refused too (429) for that user."""
    for _ in range(5):
        assert site.login("olga", "nope").status_code == 401
    assert site.login("olga").status_code == 429
    assert site.login("victor").status_code == 303


def test_limiter_forgets_failures_after_the_window() -> None:
    """Failures older than the window no longer count."""
    now = [0.0]
    limiter = LoginLimiter(max_failures=2, window_s=900, clock=lambda: now[0])
    limiter.failed("u", "1.2.3.4")
    limiter.failed("U", "1.2.3.4")
    assert limiter.blocked("u", "1.2.3.4")
    assert not limiter.blocked("u", "5.6.7.8")
    now[0] = 901.0
    assert not limiter.blocked("u", "1.2.3.4")


def test_session_cookie_is_httponly_strict_and_secure_by_default(tmp_path: Path) -> None:
    """Default settings make the session cookie Secure, HttpOnly and SameSite=Strict."""
    for site in build_site(tmp_path, dashboard_cookie_secure=True):
        response = site.client.get("/login")
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "secure" in cookie


def test_security_headers_on_every_response(site: Site) -> None:
    """CSP, no framing, no sniffing and a referrer policy on pages and on health alike."""
    for path in ("/login", "/healthz"):
        headers = site.client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_post_without_csrf_token_is_refused(site: Site) -> None:
    """A signed-in operator's POST without the token (or with a wrong one) is refused: 403."""
    site.login("olga")
    assert site.client.post("/actions/start", data={"kind": "run_now"}).status_code == 403
    bad = {"kind": "run_now", "csrf_token": "forged"}
    assert site.client.post("/actions/start", data=bad).status_code == 403
    assert site.jobs.started == []


def test_login_without_csrf_token_is_refused(site: Site) -> None:
    """Even the login form needs the token (no login CSRF)."""
    response = site.client.post("/login", data={"username": "olga", "password": "x"})
    assert response.status_code == 403


def test_csrf_token_in_header_is_accepted(site: Site) -> None:
    """Scripts may send the token in X-CSRF-Token instead of the form."""
    site.login("olga")
    token = site.token()
    response = site.client.post(
        "/actions/schedule",
        data={"op": "pause"},
        headers={"X-CSRF-Token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert site.schedule.paused


def test_viewer_sees_no_buttons_and_a_forged_post_is_refused(site: Site) -> None:
    """A viewer gets no action buttons, and a POST with a valid token is still 403."""
    site.login("victor")
    page = site.client.get("/").text
    assert "Run now" not in page
    assert "Pause the schedule" not in page
    assert "Retry failed rows" not in site.client.get(f"/runs/{RUN_ID}").text
    token = site.token()
    for path, form in [
        ("/actions/start", {"kind": "run_now"}),
        ("/actions/preview", {"kind": "retry", "run_id": RUN_ID}),
        ("/actions/schedule", {"op": "pause"}),
    ]:
        assert site.client.post(path, data=form | {"csrf_token": token}).status_code == 403
    assert site.jobs.started == []
    assert site.jobs.previews == []
    assert not site.schedule.paused
    assert ("victor", "forbidden", "refused") in _audit_actions(site)


def test_operator_starts_a_run_and_it_is_audited(site: Site) -> None:
    """Run now starts a background job as the operator and records it in the audit log."""
    site.login("olga")
    response = site.client.post(
        "/actions/start",
        data={"kind": "run_now", "csrf_token": site.token()},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs/job1"
    request, actor = site.jobs.started[0]
    assert (request.trigger, actor) == ("manual", "olga")
    assert ("olga", "run_now", "started") in _audit_actions(site)
    job = site.client.get("/jobs/job1/status").json()
    assert job["run_id"] == RUN_ID
    assert job["percent"] == 50
    assert audit.started_by(site.ctx.ledger.engine, RUN_ID) is not None


def test_retry_preview_then_confirm(site: Site) -> None:
    """Retry shows the dry-run preview first, then starts a retry of exactly that run."""
    site.login("olga")
    form = {"kind": "retry", "run_id": RUN_ID, "csrf_token": site.token()}
    answer = site.client.post("/actions/preview", data=form, follow_redirects=False)
    assert answer.status_code == 303
    preview = site.client.get(answer.headers["location"])
    assert preview.status_code == 200
    assert "Would update" in preview.text
    assert "Confirm: retry these rows" in preview.text
    assert site.jobs.previews[0].dry_run
    assert site.jobs.previews[0].retry_of == RUN_ID
    assert site.jobs.started == []
    site.client.post("/actions/start", data=form, follow_redirects=False)
    request, _ = site.jobs.started[0]
    assert (request.retry_of, request.trigger, request.dry_run) == (RUN_ID, "retry", False)


def test_replay_of_a_future_date_is_refused(site: Site) -> None:
    """Replaying a date after today is refused before any preview runs."""
    site.login("olga")
    form = {"kind": "replay", "date": "2999-01-01", "csrf_token": site.token()}
    assert site.client.post("/actions/preview", data=form).status_code == 400
    assert site.jobs.previews == []


def test_replay_of_a_date_before_the_earliest_date_is_refused(site: Site) -> None:
    """`1900-01-01` is a typo, not a night: refused before any preview runs, naming the floor."""
    site.login("olga")
    form = {"kind": "replay", "date": "1900-01-01", "csrf_token": site.token()}
    answer = site.client.post("/actions/preview", data=form)
    assert answer.status_code == 400
    assert "before the earliest business date 2022-01-01" in answer.text
    assert "PHONESYNC_EARLIEST_DATE" in answer.text
    assert site.jobs.previews == []


def test_logout_ends_the_session(site: Site) -> None:
    """After signing out, pages redirect to the login again."""
    site.login("olga")
    site.client.post("/logout", data={"csrf_token": site.token()})
    assert site.client.get("/", follow_redirects=False).status_code == 303


def _replayed(site: Site, cookie: str, app: Starlette | None = None) -> int:
    """The status of GET / with a captured session cookie, from a client of its own."""
    with TestClient(app or site.client.app, base_url="http://127.0.0.1") as other:
        other.cookies.set(SESSION_COOKIE, cookie)
        return other.get("/", follow_redirects=False).status_code


def test_logout_revokes_the_old_cookie(site: Site) -> None:
    """A copy of the cookie taken before signing out is refused afterwards (on this app and on
    a restarted one, i.e. a new app over the same ledger), and the sign-out is audited."""
    site.login("olga")
    cookie = site.client.cookies[SESSION_COOKIE]
    assert _replayed(site, cookie) == 200
    assert _replayed(site, cookie, create_app(site.ctx)) == 200  # another replica or a restart
    site.client.post("/logout", data={"csrf_token": site.token()})
    assert _replayed(site, cookie) == 303
    assert _replayed(site, cookie, create_app(site.ctx)) == 303
    assert ("olga", "logout", "ok") in _audit_actions(site)


def test_a_signed_cookie_without_a_server_side_session_is_refused(site: Site) -> None:
    """A cookie signed with the right key but naming no session the ledger knows (one made
    before sign-outs were revoked, or one forged with a leaked key) signs nobody in."""
    payload = b64encode(json.dumps({"user": "olga", "csrf": "x"}).encode())
    key = site.ctx.settings.dashboard_session_key
    assert key is not None
    cookie = TimestampSigner(key.get_secret_value()).sign(payload).decode()
    assert _replayed(site, cookie) == 303
    payload = b64encode(json.dumps({"user": "olga", "csrf": "x", "sid": "made-up"}).encode())
    cookie = TimestampSigner(key.get_secret_value()).sign(payload).decode()
    assert _replayed(site, cookie) == 303


def test_a_session_ends_at_its_lifetime_even_when_used(tmp_path: Path) -> None:
    """The ledger's session ends `dashboard_session_max_age_s` after sign-in."""
    for site in build_site(tmp_path, dashboard_session_max_age_s=60):
        site.login("olga")
        assert site.client.get("/", follow_redirects=False).status_code == 200
        engine = site.ctx.ledger.engine
        with engine.begin() as conn:
            conn.execute(
                sa.update(dashboard_sessions).values(
                    expires_at=datetime.now(UTC) - timedelta(seconds=1)
                )
            )
        assert site.client.get("/", follow_redirects=False).status_code == 303


def test_posts_refused_for_csrf_are_audited_without_personal_data(site: Site) -> None:
    """A POST without the token, or with a wrong one, is refused and written to the audit log
    (who, which path, why) — never what the form carried."""
    site.login("olga")
    assert site.client.post("/lookup", data={"nik": NIK}).status_code == 403
    forged = {"kind": "run_now", "csrf_token": "forged"}
    assert site.client.post("/actions/start", data=forged).status_code == 403
    site.client.cookies.clear()
    assert site.client.post("/login", data={"username": "olga", "password": "x"}).status_code == 403
    entries, _ = audit.entries(site.ctx.ledger.engine)
    refused = [e for e in entries if e.action == "csrf"]
    assert [(e.actor, e.result, e.target) for e in refused] == [
        ("?", "refused", "/login"),
        ("olga", "refused", "/actions/start"),
        ("olga", "refused", "/lookup"),
    ]
    assert [e.detail for e in refused] == ["no token", "wrong token", "no token"]
    stored = " ".join(str(v) for e in entries for v in dataclasses.astuple(e))
    assert NIK not in stored
    assert NIK[:6] + "******" not in stored
    assert "forged" not in stored


def test_trusted_header_is_ignored_unless_configured(site: Site) -> None:
    """Without the setting, a client-sent identity header signs nobody in."""
    response = site.client.get("/", headers={"X-Forwarded-User": "mallory"}, follow_redirects=False)
    assert response.status_code == 303


def test_trusted_header_and_role_groups_from_the_proxy(tmp_path: Path) -> None:
    """With the proxy settings, its headers name the user and grant operator by group."""
    proxy = {
        "dashboard_trusted_header": "X-Forwarded-User",
        "dashboard_role_header": "X-Forwarded-Groups",
        "dashboard_operator_groups": "phonesync-operators",
    }
    for site in build_site(tmp_path, **proxy):
        viewer = site.client.get("/", headers={"X-Forwarded-User": "ann"})
        assert viewer.status_code == 200
        assert "Run now" not in viewer.text
        groups = {"X-Forwarded-User": "ann", "X-Forwarded-Groups": "staff, phonesync-operators"}
        assert "Run now" in site.client.get("/", headers=groups).text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs/x?y=1", "/runs/x?y=1"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
    ],
)
def test_login_only_returns_to_this_site(target: str | None, expected: str) -> None:
    """The `next` of a login is a local path or nothing (no open redirect)."""
    assert safe_next(target) == expected
