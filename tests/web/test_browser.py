"""The dashboard in a real headless Chromium (Debian's), against the real `phonesync serve` app.

One module-wide set-up: local FHIR + Sheets sandboxes, a night already run in which the FHIR
server refused four writes (FaultScript), and the service's real app (scheduler, background jobs,
dashboard) served by uvicorn on a loopback port. The service's runs reach FHIR through a `Gate`
(open unless a test closes it), so a test can hold a preview's dry run for as long as it needs.
Screenshots go to a temporary folder, or to docs/screenshots/ with PHONESYNC_UPDATE_SCREENSHOTS=1
(`make screenshots`).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.web.conftest import FAST, NIK, PASSWORD, Gate

from phonesync.batch import run_factory
from phonesync.errors import FhirUnavailable
from phonesync.fhir.session import open_fhir
from phonesync.ledger import Ledger
from phonesync.masking import mask_nik
from phonesync.metrics import Metrics
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import generate
from phonesync.service import Service
from phonesync.source import open_source
from phonesync.sync import RunRequest, run_sync

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAILED_WRITES = 4
WAIT_MS = 60_000
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

expect.set_options(timeout=WAIT_MS)  # waits for the page, never a fixed sleep


@dataclass
class Served:
    url: str
    night_id: str
    day: date
    service: Service
    gate: Gate
    shots: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_night(sandbox: LocalSandbox, ledger: Ledger, day: date) -> str:
    """Last night, as the scheduler would have run it; the first four PUTs are refused."""
    refusal = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "refused"}],
    }
    sandbox.store.faults.push(method="PUT", status=422, body=refusal, times=FAILED_WRITES)
    request = RunRequest(day, trigger="schedule")
    settings = sandbox.settings
    outcome = asyncio.run(run_sync(settings, ledger, open_source(settings), request, open_fhir))
    assert outcome.summary["outcomes"]["failed"] == FAILED_WRITES
    return outcome.stats.run_id


def _serve(service: Service) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    config = uvicorn.Config(
        service.app(),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(300):  # the server sets `started` once it listens
        if server.started or not thread.is_alive():
            break
        ready.wait(0.05)
    assert server.started, "uvicorn did not start"
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real app over a sandbox night with failed rows, served on a loopback port."""
    if not CHROMIUM.exists():
        if os.environ.get("PHONESYNC_TEST_SKIP_BROWSER") == "1":
            pytest.skip("browser tests opted out with PHONESYNC_TEST_SKIP_BROWSER=1")
        pytest.fail("Debian's chromium is needed at /usr/bin/chromium (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("browser")
    day = datetime.now(UTC).astimezone(ZoneInfo("Asia/Jakarta")).date() - timedelta(days=1)
    data = generate(seed=11, patients=80, rows=40, business_date=day)
    users = f"olga:operator:{FAST.hash(PASSWORD)};victor:viewer:{FAST.hash(PASSWORD)}"
    overrides = {
        "dashboard_users": users,
        "dashboard_cookie_secure": False,
        "dashboard_session_key": "browser-test-session-key",
        "catch_up_missed": False,
    }
    with LocalSandbox(data.patients, data.values, tmp / "state", overrides=overrides) as sandbox:
        ledger = Ledger.open(sandbox.settings.database_url)
        try:
            night_id = _run_night(sandbox, ledger, day)
            metrics = Metrics()
            gate = Gate(run_factory(sandbox.settings, metrics))
            service = Service(sandbox.settings, ledger, metrics=metrics, fhir_factory=gate.fhir)
            server, thread, url = _serve(service)
            shots = SHOTS if os.environ.get("PHONESYNC_UPDATE_SCREENSHOTS") == "1" else tmp
            shots.mkdir(parents=True, exist_ok=True)
            try:
                yield Served(url, night_id, day, service, gate, shots)
            finally:
                server.should_exit = True
                thread.join(timeout=30)
        finally:
            ledger.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no downloaded browser build)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Browser, width: int = 1280, height: int = 900) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


def _login(page: Page, served: Served, name: str) -> None:
    page.goto(f"{served.url}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def _token(page: Page) -> str:
    return page.locator('input[name="csrf_token"]').first.get_attribute("value") or ""


def test_operator_retries_failed_rows_and_sees_the_audit_entry(
    served: Served, browser: Browser
) -> None:
    """Operator: last night → failed rows → retry preview → confirm → finished → audit entry."""
    page = _page(browser)
    _login(page, served, "olga")
    expect(page.locator(".status .big")).to_have_text("Completed with failures")
    page.screenshot(path=str(served.shots / "overview.png"), full_page=True)

    page.get_by_role("link", name="Open last night's run").click()
    expect(page.get_by_role("heading", name=f"Run {served.night_id}")).to_be_visible()
    page.screenshot(path=str(served.shots / "run-detail.png"), full_page=True)

    page.get_by_role("link", name="All rows of this run").click()
    page.get_by_label("Outcome").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#rows-summary")).to_contain_text(f"of {FAILED_WRITES}")
    badges = page.locator("tbody .badge")
    expect(badges).to_have_count(FAILED_WRITES)
    expect(badges.filter(has_text=re.compile(r"^failed$"))).to_have_count(FAILED_WRITES)

    page.get_by_role("link", name=f"Run {served.night_id}").click()
    page.get_by_role("button", name=f"Retry failed rows ({FAILED_WRITES})").click()
    expect(page.locator("#would-update")).to_have_text(str(FAILED_WRITES))
    page.screenshot(path=str(served.shots / "retry-preview.png"), full_page=True)

    page.get_by_role("button", name="Confirm: retry these rows").click()
    expect(page.locator("[data-job]")).to_have_attribute("data-state", "finished")
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded")
    page.get_by_role("link", name="Open the run").click()
    expect(page.get_by_text("olga (operator)")).to_be_visible()
    expect(page.get_by_role("link", name=served.night_id)).to_be_visible()  # "Retry of"

    page.get_by_role("link", name="Audit log").click()
    started = page.locator("tbody tr").filter(has_text="started").filter(has_text="retry")
    expect(started.first).to_contain_text("olga")
    page.context.close()


IN_PROGRESS = "Preview (a dry run: nothing is written) — in progress"


def _ask_replay_preview(page: Page, served: Served) -> None:
    """From the overview: pick the night's date, *Preview the replay*."""
    page.goto(f"{served.url}/")
    page.get_by_label("Replay a date").fill(served.day.isoformat())
    page.get_by_role("button", name="Preview the replay").click()


def test_a_preview_answers_at_once_and_a_second_click_joins_it(
    served: Served, browser: Browser
) -> None:
    """The dry run is held at the FHIR door (the gate), so it cannot end: the click still gets
    its answer, a page with the preview's progress. A second click (another tab) lands on the
    same preview, with no second dry run. Once the gate opens, both pages show the preview."""
    first, second = _page(browser), _page(browser)
    _login(first, served, "olga")
    _login(second, served, "olga")
    arrived = served.gate.arrived
    with served.gate.closed():
        _ask_replay_preview(first, served)
        expect(first.get_by_role("heading", name=IN_PROGRESS)).to_be_visible()
        expect(first).to_have_url(re.compile(r"/previews/[0-9a-f]+$"))
        expect(first.locator("#would-update")).to_have_count(0)
        expect(first.get_by_role("button", name=re.compile("^Confirm"))).to_have_count(0)
        first.screenshot(path=str(served.shots / "preview-progress.png"), full_page=True)
        _ask_replay_preview(second, served)
        expect(second.get_by_role("heading", name=IN_PROGRESS)).to_be_visible()
        assert second.url == first.url
        previews = served.service.jobs.previews_active()
        assert len(previews) == 1
        assert previews[0].request.dry_run
        assert previews[0].request.business_date == served.day
    for each in (first, second):  # the pages refresh themselves into the preview
        expect(each.locator("#would-update")).to_be_visible()
        expect(each.get_by_role("button", name=f"Confirm: replay {served.day}")).to_be_visible()
    assert served.gate.arrived == arrived + 1  # one dry run for the two clicks
    assert served.service.jobs.previews_active() == []

    first.get_by_role("link", name="Audit log").click()
    rows = first.locator("tbody tr").filter(has_text="preview_replay")
    for result in ("started", "joined", "ok"):
        badge = first.locator(".badge", has_text=re.compile(f"^{result}$"))
        expect(rows.filter(has=badge).first).to_contain_text("olga")
    for each in (first, second):
        each.context.close()


def test_a_failed_preview_shows_the_failure(served: Served, browser: Browser) -> None:
    """The dry run fails (the FHIR server refuses): the page that showed its progress then
    says so, with the error masked, and offers no Confirm; the audit log has the failure."""
    page = _page(browser)
    _login(page, served, "olga")
    nik = "3275014203950002"  # not the look-up tests' NIK: they check /audit never shows it
    refusal = FhirUnavailable(f"FHIR server refused our credentials (patient {nik})")
    with served.gate.closed(fail=refusal):
        _ask_replay_preview(page, served)
        expect(page.get_by_role("heading", name=IN_PROGRESS)).to_be_visible()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The preview failed")
    expect(alert).to_contain_text("FHIR server refused our credentials")
    expect(alert).to_contain_text(mask_nik(nik))
    expect(page.locator("main")).not_to_contain_text(nik)
    expect(page.get_by_role("button", name=re.compile("^Confirm"))).to_have_count(0)
    page.screenshot(path=str(served.shots / "preview-failed.png"), full_page=True)

    page.get_by_role("link", name="Audit log").click()
    badge = page.locator(".badge", has_text=re.compile("^failed$"))
    failed = page.locator("tbody tr").filter(has_text="preview_replay").filter(has=badge)
    expect(failed.first).to_contain_text("olga")
    expect(failed.first).to_contain_text("FHIR server refused")
    expect(page.locator("main")).not_to_contain_text(nik)
    page.context.close()


def test_without_the_script_the_preview_page_refreshes_itself(
    served: Served, browser: Browser
) -> None:
    """JavaScript off: the progress page reloads itself (meta refresh) into the preview."""
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    _login(page, served, "olga")
    with served.gate.closed():
        _ask_replay_preview(page, served)
        expect(page.get_by_role("heading", name=IN_PROGRESS)).to_be_visible()
    expect(page.locator("#would-update")).to_be_visible()
    expect(page.get_by_role("button", name=f"Confirm: replay {served.day}")).to_be_visible()
    context.close()


def test_viewer_cannot_trigger_actions(served: Served, browser: Browser) -> None:
    """Viewer: no action buttons anywhere, and a forged POST with a valid token is refused."""
    page = _page(browser)
    _login(page, served, "victor")
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("schedule"))).to_have_count(0)
    page.goto(f"{served.url}/runs/{served.night_id}")
    expect(page.get_by_role("button", name=re.compile("Retry"))).to_have_count(0)
    form = {"kind": "run_now", "csrf_token": _token(page)}
    response = page.request.post(f"{served.url}/actions/start", form=form)
    assert response.status == 403
    assert served.service.jobs.active() == []
    page.context.close()


def test_post_without_csrf_token_is_refused(served: Served, browser: Browser) -> None:
    """A signed-in operator's POST that lacks the CSRF token is refused and changes nothing."""
    page = _page(browser)
    _login(page, served, "olga")
    response = page.request.post(f"{served.url}/actions/schedule", form={"op": "pause"})
    assert response.status == 403
    assert not served.service.schedule.paused
    page.context.close()


def test_a_csrf_refusal_is_in_the_audit_log(served: Served, browser: Browser) -> None:
    """The refused POST is written to the audit log (user, path, why), shown on /audit."""
    page = _page(browser)
    _login(page, served, "olga")
    response = page.request.post(f"{served.url}/lookup", form={"nik": NIK})
    assert response.status == 403
    page.goto(f"{served.url}/audit")
    refused = page.locator("tbody tr").filter(has_text="csrf").filter(has_text="/lookup")
    expect(refused.first).to_contain_text("olga")
    expect(refused.first).to_contain_text("no token")
    expect(page.locator("main")).not_to_contain_text(NIK[:6])
    page.context.close()


def test_sign_out_ends_the_session_for_a_copy_of_the_cookie(
    served: Served, browser: Browser
) -> None:
    """A copy of the session cookie taken before *Sign out* leads to the login afterwards."""
    page = _page(browser)
    _login(page, served, "olga")
    cookies = page.context.cookies()
    assert any(c["name"] == "phonesync_session" for c in cookies)
    other = _page(browser)
    other.context.add_cookies(cookies)  # type: ignore[arg-type]
    other.goto(f"{served.url}/")
    expect(other.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    stolen = _page(browser)
    stolen.context.add_cookies(cookies)  # type: ignore[arg-type]
    stolen.goto(f"{served.url}/")
    expect(stolen).to_have_url(re.compile(r"/login\?next="))
    for each in (page, other, stolen):
        each.context.close()


def test_anonymous_user_is_sent_to_the_login(served: Served, browser: Browser) -> None:
    """Without a session, any page leads to the login form."""
    page = _page(browser)
    page.goto(f"{served.url}/runs/{served.night_id}/rows")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.context.close()


def test_phone_width_and_keyboard(served: Served, browser: Browser) -> None:
    """At 390 px nothing overflows the page sideways, and Tab reaches the skip link first."""
    page = _page(browser, width=390, height=844)
    _login(page, served, "olga")
    for path in ("/", f"/runs/{served.night_id}", f"/runs/{served.night_id}/rows"):
        page.goto(served.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.context.close()
