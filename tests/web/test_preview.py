"""The retry/replay preview as a background dry run: the page answers at once, shows progress,
then the preview (or its failure); a second ask joins the dry run; ended previews are forgotten.

The first tests drive the real app with `FakeJobs` (a preview the test ends when it wants); the
others drive the real `BackgroundJobs` against the sandboxes, with the dry run held at a `Gate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from tests.web.conftest import RUN_ID, Gate, Site

from phonesync.batch import run_factory
from phonesync.ledger import Ledger, audit
from phonesync.masking import mask_nik
from phonesync.metrics import Metrics
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData, generate
from phonesync.sync import RunRequest
from phonesync.web import jobs as jobs_module
from phonesync.web.context import PreviewJob
from phonesync.web.jobs import BackgroundJobs, PreviewRefused, RunDeps

DAY = date(2024, 3, 15)
OTHER_NIK = "3275014203950002"


def _audit(site: Site) -> list[tuple[str, str, str, str | None]]:
    entries, _ = audit.entries(site.ctx.ledger.engine)
    return [(e.actor, e.action, e.result, e.job_id) for e in reversed(entries)]


def _ask(site: Site, **form: str) -> str:
    """POST the preview form; the answer is a redirect to the preview's page."""
    data = {"kind": "retry", "run_id": RUN_ID} | form | {"csrf_token": site.token()}
    answer = site.client.post("/actions/preview", data=data, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


# --- the pages, with a preview the test ends ---------------------------------------------------


def test_the_answer_comes_at_once_with_a_progress_page_then_the_preview(site: Site) -> None:
    """While the dry run runs, its page shows progress, refreshes itself (polling, or a meta
    refresh without the script) and has no Confirm; once it has ended, the same page is the
    preview with Confirm. The audit log says who started it, then the result."""
    site.jobs.hold_previews = True
    site.login("olga")
    where = _ask(site)
    assert where == "/previews/pv1"
    waiting = site.client.get(where)
    assert waiting.status_code == 200
    assert "in progress" in waiting.text
    assert 'data-status-url="/previews/pv1/status"' in waiting.text
    assert "data-reload-when-final" in waiting.text
    assert '<noscript><meta http-equiv="refresh"' in waiting.text
    assert "Confirm:" not in waiting.text
    assert "Would update" not in waiting.text
    status = site.client.get("/previews/pv1/status").json()
    assert (status["state"], status["final"], status["percent"]) == ("running", False, 25)
    assert [a[1:3] for a in _audit(site) if a[1].startswith("preview")] == [
        ("preview_retry", "started")
    ]

    site.jobs.end_preview("pv1")
    assert site.client.get("/previews/pv1/status").json()["final"] is True
    ready = site.client.get(where).text
    assert "Would update" in ready
    assert 'id="would-update">2<' in ready
    assert "Confirm: retry these rows" in ready
    assert f'name="run_id" value="{RUN_ID}"' in ready
    assert "http-equiv" not in ready
    assert "317401******0000" in ready  # the rows it would change, masked
    assert [a for a in _audit(site) if a[1].startswith("preview")] == [
        ("olga", "preview_retry", "started", "pv1"),
        ("olga", "preview_retry", "ok", "pv1"),
    ]
    assert site.jobs.started == []  # a preview never starts the real run


def test_a_second_ask_joins_the_running_preview(site: Site) -> None:
    """The same preview asked twice while it runs is one dry run; both asks are audited, and
    each gets the result. Another date is another preview."""
    site.jobs.hold_previews = True
    site.login("olga")
    assert _ask(site) == _ask(site) == "/previews/pv1"
    assert len(site.jobs.previews) == 1
    other = _ask(site, kind="replay", date="2024-03-10")
    assert other == "/previews/pv2"
    site.jobs.end_preview("pv1")
    assert [a[1:] for a in _audit(site) if a[3] == "pv1"] == [
        ("preview_retry", "started", "pv1"),
        ("preview_retry", "joined", "pv1"),
        ("preview_retry", "ok", "pv1"),
        ("preview_retry", "ok", "pv1"),
    ]


def test_a_failed_preview_is_shown_masked_without_confirm(site: Site) -> None:
    """A dry run that could not run: the page says so (masked), with no Confirm."""
    site.jobs.hold_previews = True
    site.login("olga")
    where = _ask(site, kind="replay", date="2024-03-15")
    site.jobs.end_preview("pv1", error=f"the sheet is unavailable (row of {OTHER_NIK})")
    page = site.client.get(where).text
    assert "The preview failed: the sheet is unavailable" in page
    assert mask_nik(OTHER_NIK) in page
    assert OTHER_NIK not in page
    assert "Confirm:" not in page
    assert "Would update" not in page
    failed = [e for e in audit.entries(site.ctx.ledger.engine)[0] if e.result == "failed"]
    assert [(e.actor, e.action, e.job_id) for e in failed] == [("olga", "preview_replay", "pv1")]
    assert failed[0].detail is not None
    assert OTHER_NIK not in failed[0].detail


def test_previews_need_an_operator_and_an_unknown_one_is_404(site: Site) -> None:
    """A viewer cannot open a preview's page; an unknown (or forgotten) preview is a 404."""
    site.login("olga")
    _ask(site)
    assert site.client.get("/previews/nope").status_code == 404
    assert site.client.get("/previews/nope/status").status_code == 404
    site.client.post("/logout", data={"csrf_token": site.token()})
    site.login("victor")
    assert site.client.get("/previews/pv1").status_code == 403
    assert site.client.get("/previews/pv1/status").status_code == 403


# --- the real background jobs, dry runs held at a gate ----------------------------------------


@pytest.fixture(scope="module")
def data() -> SandboxData:
    return generate(seed=5, patients=40, rows=20, business_date=DAY)


@pytest.fixture
def sandbox(tmp_path: Path, data: SandboxData) -> Iterator[LocalSandbox]:
    with LocalSandbox(
        data.patients, data.values, tmp_path, overrides={"catch_up_missed": False}
    ) as sb:
        yield sb


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _jobs(sandbox: LocalSandbox, ledger: Ledger, clock: Clock) -> tuple[BackgroundJobs, Gate]:
    metrics = Metrics()
    gate = Gate(run_factory(sandbox.settings, metrics))
    deps = RunDeps(sandbox.settings, ledger, metrics, fhir_factory=gate.fhir)
    return BackgroundJobs(deps, clock=clock), gate


async def _arrived(gate: Gate, runs: int) -> None:
    """Until `runs` runs have reached the gate (each turn of the loop lets them go on)."""
    for _ in range(5000):
        if gate.arrived >= runs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {gate.arrived} of {runs} runs reached the gate")


async def test_background_previews_join_are_capped_and_are_forgotten(
    sandbox: LocalSandbox, data: SandboxData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held at the gate, a preview is running: the same one asked again is joined, a third
    distinct one is refused; once open, each caller's hook runs once with the result; ended
    previews are kept for PREVIEW_KEEP_S and at most PREVIEW_KEEP of them."""
    monkeypatch.setattr(jobs_module, "MAX_ACTIVE_PREVIEWS", 2)
    monkeypatch.setattr(jobs_module, "PREVIEW_KEEP", 2)
    clock = Clock()
    ended: list[tuple[str, PreviewJob]] = []
    with Ledger.open(sandbox.settings.database_url) as ledger:
        jobs, gate = _jobs(sandbox, ledger, clock)
        with gate.closed():
            first, joined = jobs.start_preview(
                RunRequest(DAY, trigger="replay"),
                actor="a",
                on_done=lambda p: ended.append(("a", p)),
            )
            assert not joined
            again, joined = jobs.start_preview(
                RunRequest(DAY, trigger="replay"),
                actor="b",
                on_done=lambda p: ended.append(("b", p)),
            )
            assert (again, joined) == (first, True)
            other, joined = jobs.start_preview(
                RunRequest(date(2024, 3, 14), trigger="replay"), actor="c"
            )
            assert other != first
            assert not joined
            with pytest.raises(PreviewRefused):
                jobs.start_preview(RunRequest(date(2024, 3, 13), trigger="replay"), actor="d")
            assert len(jobs.previews_active()) == 2
            assert jobs.active() == []  # previews are not runs of a date
            await _arrived(gate, 2)  # both dry runs have come as far as the gate, no further
            held = jobs.preview_job(first)
            assert held is not None
            assert held.status.state == "running"
            assert ended == []
        await jobs.wait(first)
        await jobs.wait(other)
        assert [who for who, _ in ended] == ["a", "b"]
        result = ended[0][1]
        assert result.status.state == "finished"
        assert result.request.dry_run
        assert result.summary["dry_run"] is True
        assert result.status.run_id is not None
        recorded = {r.row: str(r.outcome) for r in ledger.results(result.status.run_id)}
        assert recorded == data.expected
        assert sandbox.store.writes == 0
        assert gate.arrived == 2  # one dry run for the two asks, one for the other date
        registry = jobs._deps.metrics.registry
        for outcome in ("updated", "unchanged", "invalid_nik"):  # a preview's rows are not outcomes
            assert registry.get_sample_value("phonesync_rows_total", {"outcome": outcome}) == 0

        # kept a while, then forgotten; and never more than PREVIEW_KEEP
        clock.now += jobs_module.PREVIEW_KEEP_S - 1
        assert jobs.preview_job(first) is not None
        third, _ = jobs.start_preview(RunRequest(DAY, trigger="retry"), actor="e")
        await jobs.wait(third)
        assert jobs.preview_job(third) is not None
        kept = [j for j in (first, other) if jobs.preview_job(j) is not None]
        assert len(kept) == 1  # one of the two older ones (they ended at the same time) is gone
        clock.now += jobs_module.PREVIEW_KEEP_S
        assert jobs.preview_job(third) is None
        assert jobs.preview_job(kept[0]) is None


async def test_a_failing_dry_run_ends_the_preview_failed(sandbox: LocalSandbox) -> None:
    """The FHIR server refuses: the preview ends with the run's error (masked), the hook gets
    it, and the awaitable `preview()` says so too."""
    from phonesync.errors import FhirUnavailable

    ended: list[PreviewJob] = []
    with Ledger.open(sandbox.settings.database_url) as ledger:
        jobs, gate = _jobs(sandbox, ledger, Clock())
        with gate.closed(fail=FhirUnavailable(f"refused for {OTHER_NIK}")):
            job_id, _ = jobs.start_preview(RunRequest(DAY), actor="a", on_done=ended.append)
        await jobs.wait(job_id)
        assert len(ended) == 1
        preview = ended[0]
        assert preview.status.state == "finished"
        assert preview.status.status == "failed"
        assert preview.summary["error"] == f"refused for {mask_nik(OTHER_NIK)}"

        result = await jobs.preview(RunRequest(DAY))  # the gate is open again: all goes well
        assert result["error"] is None
        assert result["summary"]["dry_run"] is True
        assert len(result["changes"]) == result["summary"]["rows"]["in_scope"]
