"""mask_phone: what a report, the preview and the ledger show of a phone cell."""

from __future__ import annotations

import pytest

from phonesync.masking import mask_phone


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("+6281234567890", "+62812****7890"),  # E.164: the shape reports rely on
        ("0812-3456-7890", "0812******7890"),
        ("12345", "*****"),  # short: nothing shown
        ("", ""),
        # a name in the cell (fresh-user test: "Budi" came through) is never shown
        ("Budi 081234567890 ibu 081298765432", "****************5432"),
        ("WA: 0812 3456 7890", "*** **********7890"),
        ("0812 3456 78ab", "0812******78**"),
    ],
)
def test_a_phone_cell_shows_at_most_4_and_4_characters_and_no_letters(
    cell: str, shown: str
) -> None:
    """At most the first 4 (E.164: 6) and the last 4 characters, letters masked too."""
    assert mask_phone(cell) == shown
