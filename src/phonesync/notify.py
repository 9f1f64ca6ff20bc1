"""Webhook notifier: one JSON POST at the end of a run that breaches a threshold.

A run breaches when its status is not `succeeded`, its failure ratio is above
`PHONESYNC_FAILURE_THRESHOLD`, or it took longer than `PHONESYNC_RUN_WINDOW_S`. The body holds
counts only — run id, date, status, outcomes, ratio, duration, the reasons it breached — never a
NIK, phone number, row or error text from a server. Generic on purpose: chat tools accept it
through their incoming-webhook adapters (a `text` field is included for the simplest ones).

With `PHONESYNC_WEBHOOK_SECRET` the body is signed: `X-Phonesync-Signature: sha256=<hex HMAC>`.
A failure to notify is logged and never fails the run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from phonesync.masking import register_secret
from phonesync.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Phonesync-Signature"


def breaches(summary: Mapping[str, Any], settings: Settings) -> list[str]:
    """Why this run deserves a notification (empty: it does not)."""
    reasons: list[str] = []
    status = summary.get("status")
    if status != "succeeded":
        reasons.append(f"status {status}")
    ratio = float(summary.get("failure_ratio") or 0.0)
    if ratio > settings.failure_threshold:
        reasons.append(f"failure ratio {ratio:.2%} above {settings.failure_threshold:.2%}")
    duration = float(summary.get("duration_s") or 0.0)
    if duration > settings.run_window_s:
        reasons.append(f"took {duration:.0f} s, window {settings.run_window_s:.0f} s")
    return reasons


def payload(summary: Mapping[str, Any], reasons: list[str]) -> dict[str, Any]:
    """The webhook body: counts and identifiers of the run only."""
    rows = summary.get("rows") or {}
    text = (
        f"phonesync run {summary.get('run_id')} for {summary.get('business_date')}: "
        f"{summary.get('status')} — {'; '.join(reasons)}"
    )
    return {
        "event": "phonesync.run.breach",
        "text": text,
        "run_id": summary.get("run_id"),
        "business_date": summary.get("business_date"),
        "trigger": summary.get("trigger"),
        "status": summary.get("status"),
        "reasons": reasons,
        "duration_s": summary.get("duration_s"),
        "failure_ratio": summary.get("failure_ratio"),
        "rows": {"read": rows.get("read"), "in_scope": rows.get("in_scope")},
        "outcomes": dict(summary.get("outcomes") or {}),
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def notify_run(
    summary: Mapping[str, Any],
    settings: Settings,
    *,
    session: aiohttp.ClientSession | None = None,
) -> bool:
    """POST the breach to the webhook when configured and breached; True when one was sent."""
    if settings.webhook_url is None or summary.get("dry_run"):
        return False
    reasons = breaches(summary, settings)
    if not reasons:
        return False
    body = json.dumps(payload(summary, reasons), default=str).encode()
    headers = {"Content-Type": "application/json"}
    if settings.webhook_secret is not None:
        headers[SIGNATURE_HEADER] = sign(body, settings.webhook_secret.get_secret_value())
    url = settings.webhook_url.get_secret_value()
    register_secret(url)  # chat webhooks carry their token in the URL
    try:
        await _post(url, body, headers, settings.notify_timeout_s, session)
    except Exception as exc:  # noqa: BLE001 - a notification outage must never fail the run
        log.warning("webhook notification failed (%s)", type(exc).__name__)
        return False
    log.info("webhook notified", extra={"run_id": summary.get("run_id"), "reasons": reasons})
    return True


async def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    session: aiohttp.ClientSession | None,
) -> None:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    if session is None:
        async with aiohttp.ClientSession(timeout=timeout) as own:
            await _send(own, url, body, headers)
    else:
        await _send(session, url, body, headers)


async def _send(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"webhook answered {resp.status}")
