"""Optional WhatsApp number check: a pluggable verification step before a row's FHIR write.

Off unless `PHONESYNC_WHATSAPP_CHECK_URL` is set; then every row that goes to the FHIR server is
first checked with the provider, over one generic HTTP contract:

    POST {url}   Authorization: Bearer {key}   {"number": "+6281234567890"}
    200          {"exists": true | false}

The step never blocks the sync: a provider error, timeout or odd reply is logged (row number,
never the number) and counted (`phonesync_whatsapp_checks_total{result="error"}`), and the row
goes on as if there were no check. With `whatsapp_check_mode=record` (default) a number that is
not on WhatsApp is only counted and logged — it is still the patient's phone; with `refuse` the row
ends `invalid_phone` without a FHIR request.

It plugs in around the FHIR session (`with_number_check(factory, …)`), so the orchestrator does
not know it exists. Other providers implement `NumberCheck`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from typing import Any, Protocol

import aiohttp

from phonesync.masking import register_secret
from phonesync.metrics import NO_METRICS, RunMetrics
from phonesync.outcomes import Outcome, RowResult
from phonesync.plan import WorkItem
from phonesync.settings import Settings
from phonesync.sync import FhirFactory, FhirSession, RowUpdater

log = logging.getLogger(__name__)

REFUSED_REASON = "number is not registered on WhatsApp (whatsapp check)"


class CheckFailed(Exception):
    """The provider could not answer; the message never holds the number."""


class NumberCheck(Protocol):
    async def exists(self, number: str) -> bool:
        """Whether `number` (E.164) has WhatsApp; raises `CheckFailed` when unknown."""


class HttpNumberCheck:
    """The generic HTTP adapter: `POST {url} {"number": …}` → `{"exists": bool}`."""

    def __init__(self, url: str, key: str | None, session: aiohttp.ClientSession) -> None:
        self._url = url
        self._session = session
        self._headers = {"Content-Type": "application/json"}
        if key:
            register_secret(key)
            self._headers["Authorization"] = f"Bearer {key}"

    async def exists(self, number: str) -> bool:
        try:
            async with self._session.post(
                self._url, json={"number": number}, headers=self._headers
            ) as resp:
                if resp.status != 200:
                    raise CheckFailed(f"provider answered {resp.status}")
                reply: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CheckFailed(type(exc).__name__) from None  # str(exc) may quote the request
        if not isinstance(reply, dict) or not isinstance(reply.get("exists"), bool):
            raise CheckFailed("reply has no boolean `exists`")
        return bool(reply["exists"])


class CheckingUpdater:
    """A `RowUpdater` that asks the `NumberCheck` before handing the row to the real updater."""

    def __init__(
        self, inner: RowUpdater, check: NumberCheck, *, refuse: bool, metrics: RunMetrics
    ) -> None:
        self._inner, self._check, self._refuse, self._metrics = inner, check, refuse, metrics

    async def update(self, item: WorkItem, *, dry_run: bool = False) -> RowResult:
        try:
            exists = await self._check.exists(item.phone)
        except CheckFailed as exc:
            self._metrics.whatsapp_check("error")
            log.warning("WhatsApp check failed (%s); row goes on unchecked", exc)
            return await self._inner.update(item, dry_run=dry_run)
        self._metrics.whatsapp_check("exists" if exists else "missing")
        if not exists:
            log.info("number is not on WhatsApp%s", " (row refused)" if self._refuse else "")
            if self._refuse:
                return RowResult(row=item.row, outcome=Outcome.INVALID_PHONE, reason=REFUSED_REASON)
        return await self._inner.update(item, dry_run=dry_run)


class CheckingSession:
    """A `FhirSession` whose updaters check numbers first."""

    def __init__(
        self, inner: FhirSession, check: NumberCheck, *, refuse: bool, metrics: RunMetrics
    ) -> None:
        self._inner, self._check, self._refuse, self._metrics = inner, check, refuse, metrics

    async def preflight(self) -> None:
        await self._inner.preflight()

    def updater(self, business_date: date) -> RowUpdater:
        inner = self._inner.updater(business_date)
        return CheckingUpdater(inner, self._check, refuse=self._refuse, metrics=self._metrics)

    def request_stats(self) -> tuple[int, int, dict[str, int]]:
        return self._inner.request_stats()

    def batch_stats(self) -> tuple[int, int]:
        return self._inner.batch_stats()

    def useful_rows(self) -> int | None:
        return self._inner.useful_rows()


def with_number_check(
    factory: FhirFactory, settings: Settings, metrics: RunMetrics = NO_METRICS
) -> FhirFactory:
    """`factory` itself when no check is configured, else one whose sessions check numbers."""
    url = settings.whatsapp_check_url
    if not url:
        return factory
    key = settings.whatsapp_check_key.get_secret_value() if settings.whatsapp_check_key else None
    refuse = settings.whatsapp_check_mode == "refuse"

    @asynccontextmanager
    async def open_checked(s: Settings) -> AsyncIterator[FhirSession]:
        timeout = aiohttp.ClientTimeout(total=s.whatsapp_timeout_s)
        async with factory(s) as fhir, aiohttp.ClientSession(timeout=timeout) as http:
            check = HttpNumberCheck(url, key, http)
            yield CheckingSession(fhir, check, refuse=refuse, metrics=metrics)

    def opener(s: Settings) -> AbstractAsyncContextManager[FhirSession]:
        return open_checked(s)

    return opener
