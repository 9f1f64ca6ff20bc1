"""The NIK → Patient id cache: a known patient costs a read + a write, a stale id falls back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phonesync.fhir.patient_cache import CacheChanges, with_cached_ids
from phonesync.ledger.store import Ledger
from phonesync.outcomes import Outcome, RowResult
from phonesync.sandbox.fhir_server import PatientStore
from phonesync.sandbox.threaded import ThreadedServer

from .conftest import NIK_B, FakeTime, open_updater, patient_a, work


def _methods(store: PatientStore) -> list[str]:
    return [f"{r.method} {'search' if '?' in r.raw_path_qs else 'id'}" for r in store.requests]


def _other_nik(resource: dict[str, Any]) -> None:
    resource["identifier"][0]["value"] = NIK_B


async def test_cached_id_skips_the_search(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime
) -> None:
    """A cached id that still carries the NIK: GET Patient/{id} + PUT, no search."""
    store.add(patient_a())
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(dataclasses.replace(work(), patient_id="P001"))
    assert result.outcome is Outcome.UPDATED
    assert _methods(store) == ["GET id", "PUT id"]
    assert result.attempts == 2


@pytest.mark.parametrize("cached", ["P001", "P404"])
async def test_stale_cached_id_falls_back_to_the_search(
    server: ThreadedServer, store: PatientStore, fake_time: FakeTime, cached: str
) -> None:
    """The cached record now carries another NIK, or is gone: search, write the right patient."""
    store.add(patient_a())
    store.add(patient_a("P002"))
    store.modify("P001", _other_nik)
    async with open_updater(server, fake_time) as updater:
        result = await updater.update(dataclasses.replace(work(), patient_id=cached))
    assert (result.outcome, result.patient_id) == (Outcome.UPDATED, "P002")
    assert _methods(store) == ["GET id", "GET search", "GET id", "PUT id"]
    assert (store.version_count("P001"), store.version_count("P002")) == (2, 2)


@pytest.mark.parametrize(
    ("cached", "outcome", "pid", "found", "gone"),
    [
        (None, Outcome.UPDATED, "P1", {"h": "P1"}, set()),
        ("P1", Outcome.UPDATED, "P1", {}, set()),  # nothing new
        ("P1", Outcome.UNCHANGED, "P2", {"h": "P2"}, set()),  # corrected
        ("P1", Outcome.PATIENT_NOT_FOUND, None, {}, {"h"}),
        ("P1", Outcome.AMBIGUOUS_PATIENT, None, {}, {"h"}),
        ("P1", Outcome.FAILED, None, {}, set()),  # a failure tells nothing
        (None, Outcome.IDENTITY_MISMATCH, "P3", {"h": "P3"}, set()),
    ],
)
def test_cache_changes_learn_from_row_results(
    cached: str | None, outcome: Outcome, pid: str | None, found: dict[str, str], gone: set[str]
) -> None:
    """Found patients are remembered, vanished ones forgotten, failures change nothing."""
    item = dataclasses.replace(work(), nik_hash="h", patient_id=cached)
    changes = CacheChanges()
    changes.learn(item, RowResult(row=2, outcome=outcome, patient_id=pid))
    assert changes.take() == (found, gone)
    assert not changes


def test_ledger_keeps_patient_ids_by_nik_hash(tmp_path: Path) -> None:
    """patient_ids round trip in the ledger: store, correct, forget; hints land on work items."""
    h1, h2 = "a" * 64, "b" * 64
    now = datetime(2024, 3, 15, 16, 0, tzinfo=UTC)
    with Ledger.open(f"sqlite:///{tmp_path / 'l.sqlite3'}") as ledger:
        ledger.update_patient_ids({h1: "P1", h2: "P2"}, set(), seen_at=now)
        ledger.update_patient_ids({h1: "P9"}, {h2}, seen_at=now)
        assert ledger.patient_ids_for([h1, h2, "c" * 64]) == {h1: "P9"}
    items = with_cached_ids([dataclasses.replace(work(), nik_hash=h) for h in (h1, h2)], {h1: "P9"})
    assert [i.patient_id for i in items] == ["P9", None]
