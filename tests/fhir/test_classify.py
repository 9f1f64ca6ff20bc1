"""classify(): the one function deciding what an HTTP outcome means."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest

from phonesync.fhir.classify import Kind, classify, extract_detail, parse_retry_after
from phonesync.masking import register_secret

NOW = datetime(2024, 3, 15, 23, 0, tzinfo=ZoneInfo("Asia/Jakarta"))


def _outcome(*issues: dict[str, object]) -> bytes:
    return json.dumps({"resourceType": "OperationOutcome", "issue": list(issues)}).encode()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, Kind.OK),
        (201, Kind.OK),
        (204, Kind.OK),
        (None, Kind.RETRY),
        (408, Kind.RETRY),
        (429, Kind.RETRY),
        (500, Kind.RETRY),
        (502, Kind.RETRY),
        (503, Kind.RETRY),
        (504, Kind.RETRY),
        (401, Kind.REAUTH),
        (403, Kind.REAUTH),
        (409, Kind.CONFLICT),
        (412, Kind.CONFLICT),
        (400, Kind.REJECT),
        (404, Kind.REJECT),
        (405, Kind.REJECT),
        (410, Kind.REJECT),
        (415, Kind.REJECT),
        (422, Kind.REJECT),
        (501, Kind.REJECT),
        (505, Kind.REJECT),
        (302, Kind.REJECT),
    ],
)
def test_status_decides_the_kind(status: int | None, kind: Kind) -> None:
    """Each status maps to exactly one kind of reaction."""
    assert classify(status, {}, b"", now=lambda: NOW).kind is kind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 120 ", 120.0),
        (format_datetime((NOW + timedelta(seconds=30)).astimezone(UTC), usegmt=True), 30.0),
        ("Fri, 15 Mar 2024 16:00:30 GMT", 30.0),  # 23:00 WIB is 16:00 UTC
        ("Friday, 15-Mar-24 16:01:00 GMT", 60.0),  # RFC 850 form
        ("Fri Mar 15 16:00:10 2024", 10.0),  # asctime form, no zone: GMT
        ("Fri, 15 Mar 2024 15:00:00 GMT", 0.0),  # in the past: go now
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("1.5", None),
    ],
)
def test_retry_after_seconds_and_http_date(value: str | None, expected: float | None) -> None:
    """Retry-After is read as delay-seconds or an HTTP-date relative to the injected clock."""
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_is_read_case_insensitively_from_headers() -> None:
    """A plain dict with a lower-case header name works as well as aiohttp's mapping."""
    verdict = classify(429, {"retry-after": "7"}, b"", now=lambda: NOW)
    assert (verdict.kind, verdict.retry_after) == (Kind.RETRY, 7.0)


def test_retry_after_is_ignored_for_rejections() -> None:
    """Only retryable outcomes carry a wait."""
    assert classify(400, {"Retry-After": "7"}, b"", now=lambda: NOW).retry_after is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            _outcome({"severity": "error", "code": "invalid", "diagnostics": "gender is required"}),
            "error: gender is required",
        ),
        (
            _outcome({"severity": "invalid", "code": "x", "details": {"text": "bad telecom"}}),
            "invalid: bad telecom",
        ),
        (_outcome({"severity": "error", "code": "business-rule"}), "error: business-rule"),
        (
            _outcome({"diagnostics": "one"}, {"diagnostics": "two", "details": {"text": "two"}}),
            "one; two",
        ),
        (_outcome("not a dict", {"severity": 3, "diagnostics": "kept"}), "kept"),  # type: ignore[arg-type]
        (
            b'{"resourceType":"OperationOutcome","issue":"oops"}',
            '{"resourceType":"OperationOutcome","issue":"oops"}',
        ),
        (b"Gateway Timeout", "Gateway Timeout"),
        (
            b"<html>\n  <body>Bad   Gateway</body>\n</html>",
            "<html> <body>Bad Gateway</body> </html>",
        ),
        (b"\xff\xfe\x00garbage", "\ufffd\ufffd\x00garbage"),
        (b"[1, 2]", "[1, 2]"),
        (b"", ""),
    ],
)
def test_detail_is_extracted_defensively(body: bytes, expected: str) -> None:
    """OperationOutcome text (non-standard severities too), plain text or garbage never raise."""
    assert extract_detail(body) == expected


def test_detail_is_masked_and_shortened() -> None:
    """A NIK, a phone number, the encoded search URL or a key in a body never come out in clear."""
    register_secret("test-key-123")
    body = _outcome(
        {
            "diagnostics": "no match for /Patient?identifier=https%3A%2F%2Ffhir.kemkes.go.id"
            "%2Fid%2Fnik%7C3174014203950001 phone +6281234567890 key test-key-123 " + "x" * 500
        }
    )
    detail = classify(422, {}, body, now=lambda: NOW).detail
    for secret in ("3174014203950001", "6281234567890", "81234567890", "test-key-123"):
        assert secret not in detail
    assert "317401******0001" in detail
    assert len(detail) <= 300


def test_network_error_is_retryable_with_masked_detail() -> None:
    """status None (connection reset, timeout) is retried; its text is masked."""
    verdict = classify(None, {}, b"ClientOSError to /nik|3174014203950001", now=lambda: NOW)
    assert verdict.kind is Kind.RETRY
    assert verdict.status is None
    assert "3174014203950001" not in verdict.detail
