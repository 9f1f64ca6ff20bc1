"""What one HTTP outcome from the FHIR server means — decided here and nowhere else.

    status            kind       what the caller does
    2xx               ok         use the answer
    408 429 5xx(*)    retry      back off (Retry-After honoured, capped by the caller) and try again
    None (network)    retry      same
    401, 403          reauth     refresh credentials once; if it persists the run aborts
    409, 412          conflict   someone changed the record: re-read and re-apply
    other 4xx         reject     retrying cannot help; the row ends `failed`

    (*) 500, 502, 503, 504. Other 5xx (501 Not Implemented, 505 …) and any other status are
    rejections: they will not get better by asking again.

The server's own words (OperationOutcome `issue[].diagnostics` / `details.text`, or a text body)
are extracted defensively and always passed through `masking.redact`: bodies may echo the URL,
the NIK or the phone number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from phonesync.masking import redact

#: Longest server text kept as evidence; OperationOutcomes can be pages long.
MAX_DETAIL_CHARS = 300


class Kind(StrEnum):
    """What the caller should do about one HTTP outcome."""

    OK = "ok"
    RETRY = "retry"
    REAUTH = "reauth"
    CONFLICT = "conflict"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The meaning of one HTTP outcome; `detail` is masked, `retry_after` in seconds (uncapped)."""

    kind: Kind
    status: int | None
    retry_after: float | None = None
    detail: str = ""


_BY_STATUS: dict[int, Kind] = {
    401: Kind.REAUTH,
    403: Kind.REAUTH,
    408: Kind.RETRY,
    409: Kind.CONFLICT,
    412: Kind.CONFLICT,
    429: Kind.RETRY,
    500: Kind.RETRY,
    502: Kind.RETRY,
    503: Kind.RETRY,
    504: Kind.RETRY,
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def classify(
    status: int | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: Callable[[], datetime] = _utc_now,
) -> Verdict:
    """Decide what an HTTP outcome means; `status=None` is a network error or timeout.

    `now` (aware) is the wall clock a Retry-After HTTP-date is measured against.
    """
    if status is None:
        return Verdict(Kind.RETRY, None, detail=redact(body.decode("utf-8", "replace"))[:120])
    kind = Kind.OK if 200 <= status < 300 else _BY_STATUS.get(status, Kind.REJECT)
    if kind is Kind.OK:
        return Verdict(kind, status)
    retry_after = (
        parse_retry_after(_header(headers, "retry-after"), now()) if kind is Kind.RETRY else None
    )
    return Verdict(kind, status, retry_after=retry_after, detail=extract_detail(body))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Garbage gives None (the caller falls back to its own back-off); a date in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 850 / asctime forms carry no zone: they are GMT by definition
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def extract_detail(body: bytes) -> str:
    """The server's explanation, masked and shortened; never raises, whatever the body."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    found = _outcome_text(parsed) if isinstance(parsed, dict) else None
    detail = found if found is not None else " ".join(text.split())
    return redact(detail)[:MAX_DETAIL_CHARS]


def _outcome_text(outcome: dict[str, Any]) -> str | None:
    """`issue[].diagnostics` / `details.text` (else `code`) of an OperationOutcome, joined."""
    issues = outcome.get("issue")
    if not isinstance(issues, list):
        return None
    parts = [_issue_text(issue) for issue in issues if isinstance(issue, dict)]
    joined = "; ".join(part for part in parts if part)
    return joined or None


def _issue_text(issue: dict[str, Any]) -> str:
    details = issue.get("details")
    texts = [
        issue.get("diagnostics"),
        details.get("text") if isinstance(details, dict) else None,
    ]
    words = [str(t).strip() for t in texts if isinstance(t, str) and t.strip()]
    if not words and isinstance(issue.get("code"), str):
        words = [issue["code"]]
    severity = issue.get("severity")  # may be the non-standard "invalid": shown, never trusted
    prefix = f"{severity}: " if isinstance(severity, str) and words else ""
    return prefix + " / ".join(dict.fromkeys(words))
