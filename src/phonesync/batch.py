"""One run as a batch job (`phonesync run`/`retry`, a Kubernetes CronJob, a Cloud Run Job).

Wraps `run_sync` with what a run does around the sync itself, the same way `serve` does it:
metrics on a registry of the run's own, the optional WhatsApp check, then at the end the webhook
(when the run breached a threshold) and a push to the Pushgateway (when one is configured) —
the Prometheus convention for jobs too short-lived to be scraped. The push of a replay of an
older date, or of a dry run, goes to a group of its own (`metrics.run_kind`): it never replaces
the series of the latest night.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.metrics import Metrics, RunKind, push, run_kind
from phonesync.notify import notify_run
from phonesync.settings import Settings
from phonesync.source.rows import RowSource
from phonesync.sync import FhirFactory, Progress, RunOutcome, RunRequest, StopRequest, run_sync
from phonesync.whatsapp import with_number_check

log = logging.getLogger(__name__)


def kind_of(ledger: Ledger, request: RunRequest) -> RunKind:
    """`run_kind` of a run about to start, from the runs already in the ledger.

    A ledger that cannot answer makes it the night: the run will fail, and its failure must
    show where the alerts look.
    """
    try:
        latest = ledger.latest_night_date()
    except Exception:  # noqa: BLE001 - the run itself reports the ledger's trouble
        log.warning("could not read the latest night's date; this run counts as the night")
        latest = None
    return run_kind(request, latest)


def run_factory(settings: Settings, metrics: Metrics) -> FhirFactory:
    """The FHIR side of a run: the real client reporting to `metrics`, plus the number check."""
    base: FhirFactory = functools.partial(open_fhir, metrics=metrics)
    return with_number_check(base, settings, metrics)


async def run_observed(
    settings: Settings,
    ledger: Ledger,
    source: RowSource,
    request: RunRequest,
    *,
    progress: Progress | None = None,
    metrics: Metrics | None = None,
    fhir_factory: FhirFactory | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    stop: StopRequest | None = None,
) -> RunOutcome:
    """`run_sync` with metrics, the webhook and the Pushgateway push around it."""
    metrics = metrics or Metrics()
    factory = fhir_factory or run_factory(settings, metrics)
    kind = kind_of(ledger, request)
    try:
        outcome = await run_sync(
            settings,
            ledger,
            source,
            request,
            factory,
            progress=progress,
            now=now,
            metrics=metrics,
            stop=stop,
        )
    finally:
        # the push of a run that died half-way still shows how far it got
        await asyncio.to_thread(
            functools.partial(
                push, metrics, settings.pushgateway_url, settings.pushgateway_job, kind=kind
            )
        )
    await notify_run(outcome.summary, settings)
    return outcome
