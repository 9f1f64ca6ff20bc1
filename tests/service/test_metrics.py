"""Metrics: a CLI-style run pushes to the Pushgateway; labels stay bounded; projected finish."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from tests.service.conftest import DAY, NIGHT, Recorder

from phonesync.batch import run_observed
from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics, run_kind
from phonesync.outcomes import Outcome
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.source import open_source
from phonesync.sync import RunRequest

ALLOWED_LABELS = {"outcome", "method", "status", "le", "result"}


def _digits(cells: Iterator[object]) -> set[str]:
    return {re.sub(r"\D", "", str(c)) for c in cells if len(re.sub(r"\D", "", str(c))) >= 9}


async def test_a_cli_run_pushes_its_metrics_to_the_pushgateway(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder, night: SandboxData
) -> None:
    """With pushgateway_url set, the run's series arrive at /metrics/job/phonesync once."""
    settings = sandbox.settings.model_copy(update={"pushgateway_url": recorder.url})
    metrics = Metrics()
    outcome = await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), metrics=metrics, now=lambda: NIGHT
    )
    assert outcome.stats.status == "succeeded"
    pushes = [s for s in recorder.seen if s["path"] == "/metrics/job/phonesync"]
    assert len(pushes) == 1
    assert pushes[0]["method"] == "PUT"
    body = pushes[0]["body"].decode()
    updated = sum(1 for o in night.expected.values() if o == "updated")
    assert f'phonesync_rows_total{{outcome="updated"}} {float(updated)}' in body
    assert "phonesync_fhir_request_duration_seconds_bucket" in body


async def test_labels_are_bounded_and_carry_no_personal_data(
    sandbox: LocalSandbox, ledger: Ledger, night: SandboxData
) -> None:
    """Every label name is one of a fixed few; no NIK or phone digits appear in the exposition."""
    metrics = Metrics()
    settings = sandbox.settings
    await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), metrics=metrics, now=lambda: NIGHT
    )
    text = generate_latest(metrics.registry).decode()
    names = set(re.findall(r'[{,]([a-z_]+)="', text))
    assert names <= ALLOWED_LABELS
    personal = _digits(c for row in night.values[1:] for c in row[1:4])
    assert not [p for p in personal if p in re.sub(r"[^\d\n ]", " ", text).split()]


def test_projected_finish_follows_the_rate_of_applied_rows() -> None:
    """10 s into applying, 100 of 400 rows done: the run is projected at 5 + 40 s."""
    t = [0.0]
    metrics = Metrics(
        clock=lambda: t[0], wall=lambda: datetime(2024, 3, 15, tzinfo=UTC).timestamp()
    )
    metrics.run_started("r1")
    t[0] = 5.0
    metrics.planned(400)
    t[0] = 15.0
    for _ in range(100):
        metrics.row(Outcome.UPDATED)
    assert metrics.registry.get_sample_value("phonesync_run_projected_finish_seconds") == 45.0
    metrics.run_finished({"status": "succeeded", "duration_s": 45.0, "failure_ratio": 0.0})
    assert metrics.registry.get_sample_value("phonesync_run_status", {"status": "succeeded"}) == 1
    last = metrics.registry.get_sample_value("phonesync_last_success_timestamp_seconds")
    assert last == datetime(2024, 3, 15, tzinfo=UTC).timestamp()


def test_a_push_to_an_unreachable_gateway_is_logged_not_raised() -> None:
    """A Pushgateway outage never fails a run."""
    from phonesync.metrics import push

    assert push(Metrics(), "http://127.0.0.1:9", "phonesync") is False


def _failed_later_night(ledger: Ledger) -> str:
    """A failed night recorded for the day after DAY (exit 4: the FHIR server was down)."""
    later = DAY + timedelta(days=1)
    run_id = "20240316T160000Z-failed"
    started = datetime(2024, 3, 16, 16, 0, tzinfo=UTC)
    ledger.create_run(
        run_id=run_id,
        business_date=later,
        trigger="schedule",
        config={},
        dry_run=False,
        started_at=started,
    )
    ledger.finish_run(
        run_id,
        status="failed",
        summary={"status": "failed"},
        error="FHIR server unavailable",
        finished_at=started + timedelta(seconds=3),
    )
    return run_id


def test_run_kind_tells_a_night_from_a_replay_and_a_dry_run() -> None:
    """A date before the latest night's is a replay; that night or a newer one is the night."""
    assert run_kind(RunRequest(DAY), None) == "night"
    assert run_kind(RunRequest(DAY), DAY) == "night"
    assert run_kind(RunRequest(DAY + timedelta(days=1)), DAY) == "night"
    assert run_kind(RunRequest(DAY - timedelta(days=1)), DAY) == "replay"
    assert run_kind(RunRequest(DAY, trigger="retry", retry_of="r"), DAY + timedelta(1)) == "replay"
    assert run_kind(RunRequest(DAY, dry_run=True), None) == "dry_run"


async def test_a_good_replay_does_not_replace_the_failed_nights_pushed_series(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder
) -> None:
    """After a failed night, a replay of an older date pushes to a group of its own, and without
    a last-success time: the night's `failed` status and the missing success stay as they were."""
    _failed_later_night(ledger)
    settings = sandbox.settings.model_copy(update={"pushgateway_url": recorder.url})
    outcome = await run_observed(
        settings,
        ledger,
        open_source(settings),
        RunRequest(DAY),
        metrics=Metrics(),
        now=lambda: NIGHT,
    )
    assert outcome.stats.status == "succeeded"
    paths = [s["path"] for s in recorder.seen]
    assert "/metrics/job/phonesync" not in paths
    assert paths == ["/metrics/job/phonesync/run_kind/replay"]
    body = recorder.seen[0]["body"].decode()
    assert 'phonesync_run_status{status="succeeded"} 1.0' in body
    assert "phonesync_last_success_timestamp_seconds" not in body


async def test_a_dry_run_pushes_to_a_group_of_its_own(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder
) -> None:
    """A dry run of the night writes nothing: its push must not stand for the night either."""
    settings = sandbox.settings.model_copy(update={"pushgateway_url": recorder.url})
    await run_observed(
        settings,
        ledger,
        open_source(settings),
        RunRequest(DAY, dry_run=True),
        metrics=Metrics(),
        now=lambda: NIGHT,
    )
    assert [s["path"] for s in recorder.seen] == ["/metrics/job/phonesync/run_kind/dry_run"]
    assert "phonesync_last_success_timestamp_seconds" not in recorder.seen[0]["body"].decode()
