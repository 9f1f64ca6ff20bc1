"""The dry-run preview never shows a real change as a no-op, though the masks look alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phonesync.ledger.store import LedgerRow
from phonesync.masking import keyed_hash, mask_nik, mask_phone
from phonesync.outcomes import Outcome
from phonesync.preview import preview_row, render

KEY = b"k"
OLD = "+6281200000001"


@pytest.mark.parametrize(
    ("new", "flagged"),
    [("+6281299990001", True), ("+6281344445555", False), (OLD, False)],
    ids=["same-mask-other-number", "visibly-different", "same-number"],
)
def test_hidden_difference_is_named(new: str, flagged: bool) -> None:
    """Old and new numbers that mask alike but differ are marked "differs in masked digits"."""
    row = LedgerRow(
        row=2,
        outcome=Outcome.UPDATED,
        nik_hash=keyed_hash("3174014203950001", KEY),
        nik_masked=mask_nik("3174014203950001"),
        phone_hash=keyed_hash(new, KEY),
        phone_masked=mask_phone(new),
        moment=datetime(2024, 3, 15, tzinfo=UTC),
    )
    preview = preview_row(row, OLD, False, old_hash=keyed_hash(OLD, KEY))
    assert preview.hidden_change is flagged
    text = render([preview], {}, "table")
    assert ("differs in masked digits" in text) is flagged
    assert "81200000001" not in text
    assert new[3:] not in text
