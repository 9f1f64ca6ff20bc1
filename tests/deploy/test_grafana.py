"""The Grafana dashboard: valid JSON, a schemaVersion, parsable PromQL, agreed metric names."""

from __future__ import annotations

import json
from typing import Any

from .support import validate

WANTED = {
    "phonesync_rows_total",
    "phonesync_run_duration_seconds",
    "phonesync_fhir_requests_total",
    "phonesync_fhir_request_duration_seconds_bucket",
    "phonesync_concurrency",
    "phonesync_last_success_timestamp_seconds",
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(validate.DASHBOARD.read_text("utf-8"))
    return loaded


def test_dashboard_is_valid_and_uses_only_agreed_metrics() -> None:
    """The dashboard has a schemaVersion, unique panels, and queries only agreed series."""
    board = dashboard()
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36
    assert validate.dashboard_problems(board) == []


def test_dashboard_shows_the_nightly_picture() -> None:
    """Rows by outcome, duration, requests by status, latency p50/p95, concurrency, last success."""
    exprs = " ".join(validate.dashboard_exprs(dashboard()))
    assert {name for name in WANTED if name in exprs} == WANTED
    assert "histogram_quantile(0.5," in exprs
    assert "histogram_quantile(0.95," in exprs
    assert "by (outcome)" in exprs
    assert "by (status)" in exprs


def test_a_wrong_metric_name_in_the_dashboard_is_reported() -> None:
    """A panel querying a series phonesync does not export is a problem."""
    board = dashboard()
    board["panels"][0]["targets"][0]["expr"] = "sum(phonesync_rows_updated_total)"
    assert validate.dashboard_problems(board) == [
        "dashboard: phonesync_rows_updated_total is not an agreed metric name"
    ]


def test_dashboard_promql_parses(promtool: str) -> None:
    """promtool parses every dashboard query (Grafana's $__ variables filled in); junk fails."""
    exprs = validate.dashboard_exprs(dashboard())
    assert validate.promql_problems(exprs) == []
    assert validate.promql_problems(["sum(rate(phonesync_rows_total[5m])"]) != []
