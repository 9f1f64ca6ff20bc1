"""Frozen inputs at rest: exact cells back, encrypted, and a wrong key is a configuration error."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from phonesync.crypto import Sealer, new_key
from phonesync.errors import ConfigError
from phonesync.snapshot import FrozenSource, decode_rows, encode_rows
from phonesync.source.rows import Cell, SheetRow

NIK_A = "3174014203950001"


@pytest.mark.parametrize(
    "cell",
    [
        None,
        "",
        NIK_A,
        "'3174014203950001",
        "08 12-3456\u00a07890",
        3174014203950001,  # a NIK that came through a number must still be refused
        9271060312000001,  # above 2**53
        3.174014203950001e15,
        81234567890.0,
        float("inf"),
        True,
        45366,
        45366.75,
        datetime(2024, 3, 15, 9, 30, tzinfo=UTC),
        datetime(2024, 3, 15, 9, 30),  # noqa: DTZ001 - a naive cell as a reader may give it
        date(2024, 3, 15),
        "kemarin",
    ],
)
def test_every_cell_comes_back_with_its_type(cell: Cell) -> None:
    """What a replay reads is exactly what the run read: same value, same type."""
    rows = [SheetRow(row=7, nik=cell, phone=cell, updated=cell)]
    back = decode_rows(encode_rows(rows))
    assert back == rows
    assert type(back[0].nik) is type(cell)


def test_nan_survives() -> None:
    """A NaN cell (a broken numeric cell) stays NaN."""
    back = decode_rows(encode_rows([SheetRow(2, math.nan, None, None)]))
    assert isinstance(back[0].nik, float)
    assert math.isnan(back[0].nik)


def test_sealed_snapshot_holds_no_clear_text() -> None:
    """Encrypted with the snapshot key: neither the NIK nor the phone is visible at rest."""
    sealer = Sealer(new_key())
    token = sealer.seal(encode_rows([SheetRow(2, NIK_A, "+6281234567890", "2024-03-15")]))
    assert NIK_A.encode() not in token
    assert b"81234567890" not in token
    assert decode_rows(sealer.unseal(token))[0].nik == NIK_A


def test_rotated_keys_still_open_old_snapshots_and_a_wrong_key_is_refused() -> None:
    """`new,old` opens what `old` sealed; an unrelated key raises ConfigError."""
    old, new = new_key(), new_key()
    token = Sealer(old).seal(encode_rows([SheetRow(2, NIK_A, None, None)]))
    assert decode_rows(Sealer(f"{new},{old}").unseal(token))[0].nik == NIK_A
    with pytest.raises(ConfigError, match="cannot decrypt"):
        Sealer(new).unseal(token)


def test_frozen_source_serves_the_rows_without_requests() -> None:
    """A replay costs no Sheets request."""
    rows = [SheetRow(2, NIK_A, "0812", "2024-03-15")]
    source = FrozenSource(rows)
    assert list(source.read()) == rows
    assert (source.requests, source.rows_read) == (0, 1)
