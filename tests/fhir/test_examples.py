"""Official FHIR R4 example Patients: only the mobile phone entry changes (fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phonesync.fhir import jsonio
from phonesync.fhir.telecom import apply_mobile, is_active_mobile
from phonesync.outcomes import Outcome
from phonesync.sandbox.fhir_server import FhirProfile, PatientStore

from .conftest import NIK_SYSTEM, D, FakeTime, Serve, open_updater, work

FIXTURES = Path(__file__).parent / "fixtures"
NEW = "+6281234567890"
#: fixture → a NIK that agrees with its birthDate and gender (the identity guard stays on).
EXAMPLES = {
    "patient-example.json": "3174012512740001",  # male, 1974-12-25
    "patient-example-f001-pieter.json": "3174011711440001",  # male, 1944-11-17
    "patient-example-contained.json": "3174012512740002",  # male, 1974-12-25
}


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _without(resource: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in names}


def _others(telecom: list[Any]) -> list[Any]:
    """Every telecom entry that is not an active mobile (or one we retired)."""
    return [
        t
        for t in telecom
        if not is_active_mobile(t, D) and t.get("period", {}).get("end") != D.isoformat()
    ]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("old_number", ["keep", "drop"])
def test_everything_but_the_mobile_is_byte_for_byte_the_same(name: str, old_number: str) -> None:
    """Every element but telecom, contacts and contained resources included, serialises the same."""
    original = jsonio.loads(_text(name))
    updated = apply_mobile(original, NEW, old_number=old_number, business_date=D)
    assert updated is not None
    assert list(updated) == list(original)  # element order kept too
    assert jsonio.dumps(_without(updated, "telecom")) == jsonio.dumps(_without(original, "telecom"))
    assert jsonio.dumps(_others(updated["telecom"])) == jsonio.dumps(_others(original["telecom"]))
    mobiles = [t for t in updated["telecom"] if is_active_mobile(t, D)]
    since = {"start": D.isoformat()}
    assert mobiles == [
        {"system": "phone", "value": NEW, "use": "mobile", "rank": 1, "period": since}
    ]


def test_decimal_in_an_extension_keeps_its_digits() -> None:
    """`0.950` on `_gender` is written back as `0.950`, not as the float `0.95`."""
    original = jsonio.loads(_text("patient-example-contained.json"))
    updated = apply_mobile(original, NEW, old_number="keep", business_date=D)
    assert updated is not None
    assert '"valueDecimal":0.950' in jsonio.dumps(updated)


def _stored(store: PatientStore, pid: str) -> dict[str, Any]:
    current = store.get(pid)
    assert current is not None
    return current


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("mode", ["put", "patch"])
async def test_examples_round_trip_through_the_server(
    serve: Serve, store: PatientStore, fake_time: FakeTime, name: str, mode: str
) -> None:
    """Written through the sandbox (PUT or national PATCH): the record differs only in telecom."""
    nik_value = EXAMPLES[name]
    resource = json.loads(_text(name))
    resource["identifier"].append({"system": NIK_SYSTEM, "value": nik_value})
    store.add(resource)
    before = _stored(store, resource["id"])
    server = serve(FhirProfile(write_modes=frozenset({mode})))
    async with open_updater(server, fake_time, write_mode=mode) as updater:
        result = await updater.update(work(nik_value, NEW))
    assert result.outcome is Outcome.UPDATED
    after = _stored(store, resource["id"])
    assert _without(after, "telecom", "meta") == _without(before, "telecom", "meta")
    assert _others(after["telecom"]) == _others(before["telecom"])
    assert [t["value"] for t in after["telecom"] if is_active_mobile(t, D)] == [NEW]
