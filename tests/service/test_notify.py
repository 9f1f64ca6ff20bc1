"""Webhook: sent at the end of a breaching run, counts only, signed; failures never fail a run."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from tests.service.conftest import DAY, NIGHT, Recorder, fail_searches

from phonesync.batch import run_observed
from phonesync.ledger.store import Ledger
from phonesync.notify import SIGNATURE_HEADER, breaches, notify_run
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.source import open_source
from phonesync.sync import RunRequest


async def test_a_run_above_the_failure_threshold_posts_counts_only(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder, night: SandboxData
) -> None:
    """Two searches fail for good: the webhook gets status, reasons and counts, signed."""
    settings = sandbox.settings.model_copy(
        update={
            "webhook_url": _secret(f"{recorder.url}/hook/T0KEN"),
            "webhook_secret": _secret("s3cret-signing"),
            "failure_threshold": 0.0,
            "max_attempts": 1,
        }
    )
    fail_searches(sandbox, night, 2)
    outcome = await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), now=lambda: NIGHT
    )
    assert outcome.stats.status == "completed_with_failures"
    assert len(recorder.seen) == 1
    seen = recorder.seen[0]
    assert seen["path"] == "/hook/T0KEN"
    expected_sig = "sha256=" + hmac.new(b"s3cret-signing", seen["body"], hashlib.sha256).hexdigest()
    assert seen["headers"][SIGNATURE_HEADER] == expected_sig
    body = json.loads(seen["body"])
    assert body["status"] == "completed_with_failures"
    assert body["outcomes"]["failed"] == 2
    assert any("failure ratio" in r for r in body["reasons"])
    assert not re.search(r"\d{9,}", seen["body"].decode())  # no NIK, no phone


async def test_a_good_run_sends_nothing(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder
) -> None:
    """A succeeded run inside the window does not notify."""
    settings = sandbox.settings.model_copy(update={"webhook_url": _secret(recorder.url)})
    outcome = await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), now=lambda: NIGHT
    )
    assert outcome.stats.status == "succeeded"
    assert recorder.seen == []


async def test_a_failing_webhook_is_logged_and_never_raises(
    sandbox: LocalSandbox, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook answering 500, or nobody listening: notify_run returns False."""
    recorder.answer = lambda _body, _path: (500, {})
    summary = {"status": "failed", "run_id": "r", "duration_s": 1.0, "failure_ratio": 0.0}
    for url in (recorder.url, "http://127.0.0.1:9/hook"):
        settings = sandbox.settings.model_copy(update={"webhook_url": _secret(url)})
        assert await notify_run(summary, settings) is False
    assert "webhook notification failed" in caplog.text


@pytest.mark.parametrize(
    ("summary", "reasons"),
    [
        ({"status": "succeeded", "failure_ratio": 0.0, "duration_s": 10}, 0),
        ({"status": "failed", "failure_ratio": 0.0, "duration_s": 10}, 1),
        ({"status": "succeeded", "failure_ratio": 0.0, "duration_s": 1801}, 1),
        ({"status": "completed_with_failures", "failure_ratio": 0.02, "duration_s": 10}, 2),
    ],
)
def test_breaches(sandbox: LocalSandbox, summary: dict[str, object], reasons: int) -> None:
    """Status, failure ratio (> 1 %) and duration (> run_window_s) each breach."""
    assert len(breaches(summary, sandbox.settings)) == reasons


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)
