"""FHIR JSON in and out without changing a single number.

A PUT sends the whole resource back, so everything we did not mean to change must come back as
it was. `json.loads` turns `-6.200000` (a geolocation extension) or `1.50` (FHIR decimals keep
their precision) into floats that print as `-6.2` and `1.5`. Here decimals are read as `Decimal`
and written back with exactly the digits they came with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any


def loads(data: bytes | str) -> Any:
    """Parse JSON, keeping every non-integer number as a `Decimal` (its text preserved)."""
    return json.loads(data, parse_float=Decimal)


def dumps(value: Any) -> str:
    """Serialise JSON (compact); `Decimal`s are written with their original digits."""
    return "".join(_chunks(value))


def _chunks(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + json.dumps(str(key)) + ":"
            yield from _chunks(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _chunks(item)
        yield "]"
    elif isinstance(value, Decimal):
        yield str(value) if value.is_finite() else json.dumps(float(value))
    else:
        yield json.dumps(value)
