"""jsonio: FHIR JSON round-trips without changing a number."""

from __future__ import annotations

import json

import pytest

from phonesync.fhir.jsonio import dumps, loads


@pytest.mark.parametrize(
    "text",
    [
        '{"valueDecimal":3.10}',
        '{"latitude":-6.200000,"longitude":106.816666}',
        '{"a":[1,2.50,1E+5,1e-7,-0.0],"b":true,"c":null,"d":"\\u00e9 \\"q\\""}',
        '{"nested":{"x":[{"y":0.1000}]},"n":12345678901234567890}',
        "[]",
        "{}",
    ],
)
def test_round_trip_keeps_number_text(text: str) -> None:
    """Decimals keep their digits (3.10 stays 3.10); everything else is plain JSON."""
    out = dumps(loads(text))
    assert json.loads(out) == json.loads(text)
    assert [t for t in out if t.isdigit()] == [t for t in text if t.isdigit()]


def test_plain_json_float_would_have_changed_the_text() -> None:
    """The control: the standard library rewrites 3.10 as 3.1, which is why jsonio exists."""
    assert json.dumps(json.loads('{"v":3.10}')) == '{"v": 3.1}'
    assert dumps(loads('{"v":3.10}')) == '{"v":3.10}'
