"""Prometheus metrics: every `phonesync_*` series in one module, on a registry of our own.

    metrics = Metrics()                      # its own CollectorRegistry, never the global one
    run_sync(..., metrics=metrics)           # rows, duration, status, projected finish
    FhirHttp(settings, ..., metrics=metrics) # requests by method and status, latency, retries
    generate_latest(metrics.registry)        # what `serve` answers on /metrics
    push(metrics, url, job, kind=kind)       # a CLI run → the Pushgateway, when configured

Labels are bounded by construction: an outcome name, an HTTP method, an HTTP status code (or
`network`), a run status. Never a NIK, phone number, sheet row or run id. `NO_METRICS` is the
default everywhere: code that is not given a `Metrics` records nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from phonesync.masking import redact
from phonesync.outcomes import Outcome
from phonesync.projection import RunProjection

if TYPE_CHECKING:
    from phonesync.ledger.records import RunRecord
    from phonesync.sync import RunRequest

log = logging.getLogger(__name__)

RunKind = Literal["night", "replay", "dry_run"]
#: The grouping label of pushes that do not stand for the night (docs/operations.md, "Alerts").
RUN_KIND_LABEL = "run_kind"
#: Not pushed by a replay or a dry run: only the night's success counts for the alerts.
NIGHT_ONLY = frozenset({"phonesync_last_success_timestamp_seconds"})

RUN_STATUSES = ("succeeded", "completed_with_failures", "failed", "aborted", "running")
_METHODS = frozenset({"GET", "PUT", "PATCH", "POST", "DELETE"})
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RunMetrics(Protocol):
    """What the orchestrator and the FHIR client report; `Metrics` and `NoMetrics` implement it."""

    def run_started(self, run_id: str) -> None: ...
    def planned(self, to_apply: int) -> None: ...
    def row(self, outcome: Outcome, *, applied_work: bool = True) -> None: ...
    def run_finished(self, summary: Mapping[str, Any]) -> None: ...
    def fhir_request(self, method: str, status: int | None, seconds: float) -> None: ...
    def retry(self) -> None: ...
    def in_flight(self, delta: int) -> None: ...
    def whatsapp_check(self, result: str) -> None: ...


class NoMetrics:
    """Records nothing (the default)."""

    def run_started(self, run_id: str) -> None:
        return None

    def planned(self, to_apply: int) -> None:
        return None

    def row(self, outcome: Outcome, *, applied_work: bool = True) -> None:
        return None

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        return None

    def fhir_request(self, method: str, status: int | None, seconds: float) -> None:
        return None

    def retry(self) -> None:
        return None

    def in_flight(self, delta: int) -> None:
        return None

    def whatsapp_check(self, result: str) -> None:
        return None


NO_METRICS = NoMetrics()


class Metrics:
    """The phonesync series on one `CollectorRegistry`; `clock` is monotonic seconds."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock, self._wall = clock, wall
        self._projection: RunProjection | None = None  # the current run's (projection.py)
        self._declare(self.registry)
        for outcome in Outcome:  # every outcome present from the start, zeros included
            self.rows.labels(outcome=outcome.value)

    def _declare(self, r: CollectorRegistry) -> None:
        self.rows = Counter("phonesync_rows", "Rows ended, by outcome.", ["outcome"], registry=r)
        self.run_duration = Gauge(
            "phonesync_run_duration_seconds", "Duration of the last finished run.", registry=r
        )
        self.requests = Counter(
            "phonesync_fhir_requests", "FHIR HTTP exchanges.", ["method", "status"], registry=r
        )
        self._request_children: dict[tuple[str, int | None], Counter] = {}
        self.latency = Histogram(
            "phonesync_fhir_request_duration_seconds",
            "Latency of one FHIR HTTP exchange.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter("phonesync_retries", "FHIR requests retried.", registry=r)
        self.concurrency = Gauge(
            "phonesync_concurrency", "FHIR requests in flight now.", registry=r
        )
        self.last_success = Gauge(
            "phonesync_last_success_timestamp_seconds",
            "Unix time at which the last succeeded run finished.",
            registry=r,
        )
        self.projected_finish = Gauge(
            "phonesync_run_projected_finish_seconds",
            "Projected total duration of the current run at its present rate (0 = none).",
            registry=r,
        )
        self.run_status = Gauge(
            "phonesync_run_status", "1 for the last run's status.", ["status"], registry=r
        )
        self.failure_ratio = Gauge(
            "phonesync_run_failure_ratio", "(failed + conflict) / in scope, last run.", registry=r
        )
        self.running = Gauge("phonesync_run_in_progress", "1 while a run is going.", registry=r)
        self.whatsapp = Counter(
            "phonesync_whatsapp_checks", "Number checks, by result.", ["result"], registry=r
        )

    def restore(self, runs: Sequence[RunRecord]) -> None:
        """Start from what the ledger holds (`runs`, newest first), not from zero: a freshly
        started `serve` showed `last_success 0` and no status at all, as if no night had ever
        succeeded. The status is the newest run's; the last success is the finish of the newest
        succeeded run that stood for its night (not a dry run, nor a replay of an older date)."""
        if runs:
            self._set_status(runs[0].status)
        newest_date: date | None = None
        for run in reversed(runs):  # oldest first, as `run_kind` sees them
            if run.dry_run:
                continue
            night = newest_date is None or run.business_date >= newest_date
            newest_date = max(newest_date or run.business_date, run.business_date)
            if night and run.status == "succeeded" and run.finished_at is not None:
                self.last_success.set(run.finished_at.timestamp())

    # --- the run ------------------------------------------------------------------------------
    def run_started(self, run_id: str) -> None:
        # run_id is for observers such as the service's jobs; never a label here
        self._projection = RunProjection(math.inf, clock=self._clock)  # the gauge, no warning
        self.running.set(1)
        self.projected_finish.set(0)
        self._set_status("running")

    def planned(self, to_apply: int) -> None:
        if self._projection is not None:
            self._projection.planned(to_apply)

    def row(self, outcome: Outcome, *, applied_work: bool = True) -> None:
        self.rows.labels(outcome=outcome.value).inc()
        projection = self._projection
        if applied_work and projection is not None and projection.done < projection.total:
            projection.advance()
            projected = projection.projected_s
            if projected is not None:
                self.projected_finish.set(round(projected, 3))

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        status = str(summary.get("status", "failed"))
        self.running.set(0)
        self.run_duration.set(float(summary.get("duration_s") or 0.0))
        self.failure_ratio.set(float(summary.get("failure_ratio") or 0.0))
        self._set_status(status)
        if status == "succeeded" and not summary.get("dry_run"):
            self.last_success.set(self._wall())
        self._projection = None

    def _set_status(self, status: str) -> None:
        for name in RUN_STATUSES:
            self.run_status.labels(status=name).set(1 if name == status else 0)

    # --- FHIR ---------------------------------------------------------------------------------
    def fhir_request(self, method: str, status: int | None, seconds: float) -> None:
        # On the hot path (every exchange): the labelled child is looked up once per pair.
        child = self._request_children.get((method, status))
        if child is None:
            label = method.upper() if method.upper() in _METHODS else "OTHER"
            child = self.requests.labels(method=label, status=_status_label(status))
            self._request_children[(method, status)] = child
        child.inc()
        self.latency.observe(max(seconds, 0.0))

    def retry(self) -> None:
        self.retries.inc()

    def in_flight(self, delta: int) -> None:
        self.concurrency.inc(delta)

    def whatsapp_check(self, result: str) -> None:
        self.whatsapp.labels(result=result).inc()


def _status_label(status: int | None) -> str:
    if status is None:
        return "network"
    return str(status) if 100 <= status <= 599 else "other"


def run_kind(request: RunRequest, latest_night: date | None) -> RunKind:
    """Whether a run stands for the night: `latest_night` is the newest business date of the
    non-dry runs already in the ledger. A date before it is a replay (a re-run of an old date,
    or a retry of an older run, whatever its trigger); that date or a newer one is the night."""
    if request.dry_run:
        return "dry_run"
    if latest_night is not None and request.business_date < latest_night:
        return "replay"
    return "night"


class _Without(Collector):
    """A registry's metric families except some names (what a replay or dry run pushes)."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self._registry, self._names = registry, names

    def collect(self) -> Iterable[Metric]:
        return [m for m in self._registry.collect() if m.name not in self._names]


def push(metrics: Metrics, gateway: str | None, job: str, *, kind: RunKind = "night") -> bool:
    """Push a CLI run's metrics to the Pushgateway; never fails the run.

    The night replaces the group `{job}`; a replay or a dry run replaces `{job, run_kind}`
    instead, without the last-success time, and leaves the night's group as it was.
    """
    if not gateway:
        return False
    registry = metrics.registry
    grouping: dict[str, str] = {}
    if kind != "night":
        grouping = {RUN_KIND_LABEL: kind}
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Without(metrics.registry, NIGHT_ONLY))
    try:
        push_to_gateway(
            gateway, job=job, registry=registry, grouping_key=grouping or None, timeout=10
        )
    except Exception as exc:  # noqa: BLE001 - a monitoring outage must not fail a sync
        log.warning("could not push metrics to the Pushgateway: %s", redact(str(exc)))
        return False
    return True
