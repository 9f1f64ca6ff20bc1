"""Metrics: a CLI-style run pushes to the Pushgateway; labels stay bounded; projected finish."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import generate_latest
from tests.service.conftest import DAY, NIGHT, Recorder

from phonesync.batch import run_observed
from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics
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
