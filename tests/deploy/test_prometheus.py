"""Alerting rules: promtool checks and unit tests, and only metric names phonesync exposes."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import generate_latest

from phonesync.metrics import Metrics
from phonesync.outcomes import Outcome

from .support import validate


def exposed_names() -> set[str]:
    """Series names in what phonesync's /metrics (or a push) actually sends."""
    metrics = Metrics()
    metrics.run_started(10)
    metrics.row(Outcome.UPDATED)
    metrics.fhir_request("GET", 200, 0.1)
    metrics.retry()
    metrics.in_flight(1)
    metrics.run_finished({"status": "succeeded", "duration_s": 1.0, "failure_ratio": 0.0})
    text = generate_latest(metrics.registry).decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")
    }


def test_agreed_metric_names_are_what_phonesync_exposes() -> None:
    """Every agreed name (and the histogram's series) is exported by phonesync.metrics."""
    exposed = exposed_names()
    assert validate.AGREED_METRICS - validate.HISTOGRAMS - exposed == set()
    for histogram in validate.HISTOGRAMS:
        assert {f"{histogram}_bucket", f"{histogram}_count"} <= exposed


def test_alerts_use_only_agreed_metric_names() -> None:
    """Every alert expression names only agreed phonesync series; a typo is reported."""
    assert validate.metric_problems(validate.alert_exprs(), "alerts") == []
    assert validate.metric_problems(["phonesync_row_total > 0"], "x") == [
        "x: phonesync_row_total is not an agreed metric name"
    ]


def test_every_alert_required_by_the_runbook_exists() -> None:
    """Failure ratio, too long, projected overrun, no success in 26 h, run failed: all there."""
    rules = yaml.safe_load(validate.ALERTS.read_text("utf-8"))["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "PhonesyncFailureRatioHigh",
        "PhonesyncRunTooLong",
        "PhonesyncRunProjectedOverrun",
        "PhonesyncNoRecentSuccess",
        "PhonesyncRunFailed",
        "PhonesyncReplayFailed",
    } <= names
    exprs = " ".join(r["expr"] for r in rules)
    assert "> 0.01" in exprs
    assert "26 * 3600" in exprs
    assert "> 1800" in exprs
    # every alert but the replay's looks at the night only (docs/operations.md, "Alerts")
    for rule in rules:
        wanted = 'run_kind="replay"' if rule["alert"] == "PhonesyncReplayFailed" else 'run_kind=""'
        assert wanted in rule["expr"], rule["alert"]


def test_promtool_checks_and_unit_tests_pass(promtool: str) -> None:
    """`promtool check rules` and `promtool test rules` pass on deploy/prometheus."""
    assert validate.check_prometheus() == []


def test_promtool_unit_tests_catch_a_wrong_threshold(promtool: str, tmp_path: Path) -> None:
    """With the failure-ratio threshold moved to 5 %, the unit tests fail."""
    (tmp_path / "alerts.yml").write_text(
        validate.ALERTS.read_text("utf-8").replace("> 0.01", "> 0.05")
    )
    (tmp_path / "alerts_test.yml").write_text(validate.ALERTS_TEST.read_text("utf-8"))
    result = validate.run_tool([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert result.returncode != 0
    assert "PhonesyncFailureRatioHigh" in result.stdout + result.stderr


def test_promtool_check_rejects_broken_promql(promtool: str, tmp_path: Path) -> None:
    """A syntax error in an alert expression fails `promtool check rules`."""
    broken = tmp_path / "alerts.yml"
    broken.write_text(
        validate.ALERTS.read_text("utf-8").replace("max by (job) (", "max by (job (", 1)
    )
    result = validate.run_tool([promtool, "check", "rules", str(broken)])
    assert result.returncode != 0
