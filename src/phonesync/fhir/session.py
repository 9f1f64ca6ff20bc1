"""`open_fhir(settings)`: the FHIR side as the orchestrator (`sync.py`) sees it.

One `FhirHttp` (session, credentials, limiter, retry loop) shared by every row of a run, a
pre-flight, an `Updater` per business date, and the request counters for the run summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

from phonesync.fhir.breaker import breaker_from_settings
from phonesync.fhir.http import FhirHttp
from phonesync.fhir.pacing import limiter_from_settings
from phonesync.fhir.updater import Updater
from phonesync.metrics import NO_METRICS, RunMetrics
from phonesync.settings import Settings


class FhirSession:
    """What a run needs of the FHIR server."""

    def __init__(self, http: FhirHttp, settings: Settings) -> None:
        self.http = http
        self._settings = settings

    async def preflight(self) -> None:
        """Fail fast (`FhirUnavailable`) when the server is unreachable or refuses us; then
        batch requests from here on if the server's CapabilityStatement offers it."""
        await self.http.preflight()
        self.http.enable_batching(self.http.capability)

    def updater(self, business_date: date) -> Updater:
        return Updater(self.http, self._settings, business_date)

    def request_stats(self) -> tuple[int, int, dict[str, int]]:
        """(total requests, retries, requests by status) so far; a request sent inside a batch
        Bundle counts as one, with its own entry's status (`batch_stats` has the bundles)."""
        stats = self.http.stats
        return stats.total, stats.retries, dict(stats.by_status)

    def batch_stats(self) -> tuple[int, int]:
        """(batch Bundles sent, requests sent inside them); (0, 0) without batching."""
        bundler = self.http.bundler
        return (bundler.bundles, bundler.entries) if bundler is not None else (0, 0)

    def useful_rows(self) -> int | None:
        """How many rows are worth having in progress now (None: as many as there are workers);
        the pacing knows (`Limiter.useful_in_flight`)."""
        return self.http.useful_rows()


@asynccontextmanager
async def open_fhir(
    settings: Settings, *, metrics: RunMetrics = NO_METRICS
) -> AsyncIterator[FhirSession]:
    """The production wiring: pacing and breaker as configured, real clock, one aiohttp session."""
    limiter = limiter_from_settings(settings, clock=time.monotonic, sleeper=asyncio.sleep)
    breaker = breaker_from_settings(settings, clock=time.monotonic, sleeper=asyncio.sleep)
    async with FhirHttp(settings, limiter=limiter, metrics=metrics, breaker=breaker) as http:
        try:
            yield FhirSession(http, settings)
        finally:
            if http.bundler is not None:
                await http.bundler.aclose()
