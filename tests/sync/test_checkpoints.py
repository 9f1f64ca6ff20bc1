"""Finished rows are recorded by count (RECORD_BATCH) and by time (CHECKPOINT_S): a slow night,
held back by a rate limit, must not keep minutes of finished work only in memory, where a crash
(kill -9) would lose it and the next run would do it again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.sync.nights import DAY, run_night

from phonesync import sync
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import generate


def _batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_s: float
) -> tuple[list[int], int]:
    """The sizes of the row batches the run recorded, and the rows it worked on."""
    data = generate(seed=3, patients=60, rows=40, business_date=DAY)
    sizes: list[int] = []
    record = Ledger.record_results

    def spy(self: Ledger, run_id: str, rows: list[Any], **kw: Any) -> None:
        sizes.append(len(rows))
        record(self, run_id, rows, **kw)

    monkeypatch.setattr(Ledger, "record_results", spy)
    monkeypatch.setattr(sync, "CHECKPOINT_S", checkpoint_s)
    with LocalSandbox(data.patients, data.values, tmp_path, overrides={"concurrency": 4}) as sb:
        outcome = run_night(sb)
    assert outcome.summary["status"] == "succeeded"
    return sizes, outcome.summary["rows"]["searched"]


def test_rows_are_recorded_as_time_passes_not_only_every_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the time checkpoint due at once, each finished row is recorded soon after it ends."""
    sizes, worked = _batches(tmp_path, monkeypatch, checkpoint_s=0.0)
    assert worked > 10
    assert len(sizes) >= worked // 2  # recorded in many small batches, as the rows ended
    assert max(sizes) < sync.RECORD_BATCH


def test_without_the_time_checkpoint_a_small_night_is_recorded_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contrast (the behaviour before CHECKPOINT_S): fewer than 500 rows, one batch at the
    end of the FHIR work, plus the rows settled before it (invalid, superseded)."""
    sizes, worked = _batches(tmp_path, monkeypatch, checkpoint_s=3600.0)
    assert worked > 10
    assert len(sizes) <= 3
