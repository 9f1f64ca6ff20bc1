"""The FHIR server freezes mid-night (the user test's `kill -STOP`) for longer than
`REQUEST_TIMEOUT_S`: the writes it held land when it thaws, their answers lost. Each such row is
this run's update — `updated` with the answer-lost reason, counted in the summary, the metrics and
requests-per-updated-row — and no patient is written twice. Real loopback HTTP, the real
`phonesync run` path (`batch.run_observed`), in this process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tests.sync.nights import DAY, results_by_row

from phonesync.batch import run_observed
from phonesync.fhir.updater import UNCHANGED_ON_RECORD, UPDATED_ANSWER_LOST
from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData
from phonesync.source import open_source
from phonesync.sync import RunOutcome, RunRequest

TIMEOUT_S = 1.0
FREEZE_S = 1.6  # longer than the timeout (the writes held time out), short of two of them
PATCH_GAP = "the record has no telecom: the national PATCH can only replace existing elements"


def _freeze_once_after(sb: LocalSandbox, writes: int) -> None:
    """Once `writes` writes have landed, the next one stops the whole server (its event loop)
    for `FREEZE_S` before it is applied — as `kill -STOP` would; what it held is then handled."""

    def freeze(pid: str) -> None:
        if sb.store.writes < writes:
            return
        sb.store.before_write.remove(freeze)
        time.sleep(FREEZE_S)

    sb.store.before_write.append(freeze)


def _run(sb: LocalSandbox, metrics: Metrics) -> RunOutcome:
    ledger = Ledger.open(sb.settings.database_url)
    try:
        request = RunRequest(business_date=DAY, trigger="manual")
        coro = run_observed(sb.settings, ledger, open_source(sb.settings), request, metrics=metrics)
        return asyncio.run(coro)
    finally:
        ledger.close()


@pytest.mark.parametrize(
    ("write_mode", "batch"),
    [("put", False), ("patch", False), ("put", True)],
    ids=["put", "patch", "put-in-batch-bundles"],
)
def test_writes_whose_answers_were_lost_in_a_freeze_count_as_updated(
    tmp_path: Path, synth_small: SandboxData, write_mode: str, batch: bool
) -> None:
    profile = FhirProfile(latency_ms=2, latency_p99_ms=4, batch=batch)
    overrides: dict[str, Any] = {
        "request_timeout_s": TIMEOUT_S,
        "write_mode": write_mode,
        "concurrency": 8,
        "pacing": "fixed",
    }
    with LocalSandbox(
        synth_small.patients, synth_small.values, tmp_path, profile=profile, overrides=overrides
    ) as sb:
        _freeze_once_after(sb, 100)
        metrics = Metrics()
        run = _run(sb, metrics)
        summary = run.summary
        rows = results_by_row(sb, summary["run_id"])
        assert sb.store.before_write == []  # the freeze happened

        outcomes = summary["outcomes"]
        lost = {row for row, r in rows.items() if r.reason == UPDATED_ANSWER_LOST}
        assert lost, outcomes  # at least the write the server froze on
        assert {str(rows[row].outcome) for row in lost} == {"updated"}
        # every row the data was built to update is this run's update (none `unchanged`) …
        got = {row: str(r.outcome) for row, r in rows.items()}
        # (the national PATCH cannot add a telecom the record lacks: those fail, as on any night)
        no_patch = {row for row, r in rows.items() if (r.reason or "").startswith(PATCH_GAP)}
        assert {row: o for row, o in got.items() if row not in no_patch} == {
            row: o for row, o in synth_small.expected.items() if row not in no_patch
        }
        assert summary["status"] == ("completed_with_failures" if no_patch else "succeeded")
        assert write_mode == "patch" or not no_patch
        assert {r.reason for r in rows.values() if str(r.outcome) == "unchanged"} <= {
            UNCHANGED_ON_RECORD
        }
        # … written exactly once, and counted wherever `updated` counts
        assert outcomes["updated"] == sb.store.writes
        for row in lost:
            record = rows[row]
            assert sb.store.version_count(record.patient_id) == 2, f"row {row}: one new version"
            assert record.version_before != record.version_after
            assert sb.store.versions(record.patient_id)[-1].vid == record.version_after
        assert all(sb.store.version_count(pid) <= 2 for pid in sb.store.ids())
        updated = metrics.registry.get_sample_value("phonesync_rows_total", {"outcome": "updated"})
        assert updated == outcomes["updated"]
        per_row = summary["requests"]["per_updated_row"]
        assert per_row == round(summary["requests"]["total"] / outcomes["updated"], 3)
