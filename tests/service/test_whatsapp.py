"""WhatsApp check: off by default, one HTTP adapter, never blocks the sync."""

from __future__ import annotations

import json
from collections import Counter

from pydantic import SecretStr
from tests.service.conftest import DAY, NIGHT, Recorder

from phonesync.batch import run_factory, run_observed
from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.source import open_source
from phonesync.sync import RunRequest
from phonesync.whatsapp import REFUSED_REASON


def provider(raw: bytes, _path: str) -> tuple[int, object]:
    """Numbers ending in 1 or 2 are not on WhatsApp; ending in 3 the provider fails; else exist."""
    last = json.loads(raw)["number"][-1]
    if last == "3":
        return 500, {"error": "upstream"}
    return 200, {"exists": last not in "12"}


def test_no_check_unless_configured(sandbox: LocalSandbox) -> None:
    """Without whatsapp_check_url the FHIR factory is the plain one (no extra step)."""
    assert sandbox.settings.whatsapp_check_url is None
    factory = run_factory(sandbox.settings, Metrics())
    assert getattr(factory, "func", None) is open_fhir


async def test_refuse_mode_refuses_missing_numbers_and_ignores_provider_errors(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder, night: SandboxData
) -> None:
    """Missing → invalid_phone without a FHIR write; provider errors → row goes on; all counted."""
    recorder.answer = provider
    settings = sandbox.settings.model_copy(
        update={
            "whatsapp_check_url": f"{recorder.url}/check",
            "whatsapp_check_key": SecretStr("wa-key-123"),
            "whatsapp_check_mode": "refuse",
        }
    )
    metrics = Metrics()
    outcome = await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), metrics=metrics, now=lambda: NIGHT
    )
    numbers = [body["number"] for body in recorder.json_bodies()]
    assert numbers
    assert all(n.startswith("+628") for n in numbers)
    assert {s["headers"]["Authorization"] for s in recorder.seen} == {"Bearer wa-key-123"}
    said = Counter(
        "error" if n[-1] == "3" else "missing" if n[-1] in "12" else "exists" for n in numbers
    )
    for result, count in said.items():
        labels = {"result": result}
        assert metrics.registry.get_sample_value("phonesync_whatsapp_checks_total", labels) == count
    refused = ledger.results(outcome.stats.run_id, outcomes={"invalid_phone"})
    assert sum(1 for r in refused if r.reason == REFUSED_REASON) == said["missing"]
    expected = Counter(night.expected.values())
    assert (
        outcome.summary["outcomes"]["invalid_phone"] == expected["invalid_phone"] + said["missing"]
    )
    assert outcome.stats.status == "succeeded"


async def test_record_mode_changes_no_outcome(
    sandbox: LocalSandbox, ledger: Ledger, recorder: Recorder, night: SandboxData
) -> None:
    """In record mode (the default) every row ends as it would without the check."""
    recorder.answer = provider
    settings = sandbox.settings.model_copy(update={"whatsapp_check_url": recorder.url})
    outcome = await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), now=lambda: NIGHT
    )
    assert recorder.seen
    recorded = {r.row: str(r.outcome) for r in ledger.results(outcome.stats.run_id)}
    assert recorded == night.expected


async def test_an_unreachable_provider_never_blocks_the_sync(
    sandbox: LocalSandbox, ledger: Ledger, night: SandboxData
) -> None:
    """Nobody listening at the check URL: every row still ends as due; errors are counted."""
    settings = sandbox.settings.model_copy(
        update={"whatsapp_check_url": "http://127.0.0.1:9/check", "whatsapp_check_mode": "refuse"}
    )
    metrics = Metrics()
    outcome = await run_observed(
        settings, ledger, open_source(settings), RunRequest(DAY), metrics=metrics, now=lambda: NIGHT
    )
    recorded = {r.row: str(r.outcome) for r in ledger.results(outcome.stats.run_id)}
    assert recorded == night.expected
    assert (
        metrics.registry.get_sample_value("phonesync_whatsapp_checks_total", {"result": "error"})
        > 0
    )
