"""NIK (Nomor Induk Kependudukan) cleaning and validation — see docs/normalisation.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from phonesync.outcomes import Rejected


@dataclass(frozen=True, slots=True)
class Nik:
    """A valid 16-digit NIK and what it encodes (`PP RR SS DDMMYY NNNN`)."""

    value: str
    province: str
    birth_day: int  # 1..31, the +40 for women already removed
    birth_month: int  # 1..12
    birth_yy: int  # 0..99: the century cannot be known
    sex: Literal["male", "female"]


def parse_nik(cell: object) -> Nik | Rejected:
    """Clean and validate one NIK cell; never raises, never puts the value in a reason."""
    raise NotImplementedError
