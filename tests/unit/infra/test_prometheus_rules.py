"""The Prometheus config and rules: promtool accepts them and their unit tests pass; every alert is documented in
the runbook and tested both ways; every name a rule reads is a metric the service declares or a recorded series."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.infra.files import INFRA, PROMETHEUS_DIR, RULE_FILES, RULE_TEST_FILES
from tests.unit.infra.promql import declared_samples, github_anchor, load_rules, metric_names

RULES = load_rules(RULE_FILES)
ALERTS = [rule for rule in RULES if "alert" in rule]
RECORDED = {rule["record"] for rule in RULES if "record" in rule}
RUNBOOK = INFRA / "RUNBOOK.md"


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def _rule_tests() -> list[dict[str, Any]]:
    tests = []
    for path in RULE_TEST_FILES:
        tests += yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    return tests


def test_promtool_check_config_accepts_the_config_and_its_rule_files(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_check_rules_accepts_every_rule_file_without_lint_findings(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", *map(str, RULE_FILES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", *map(str, RULE_TEST_FILES))

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_loads_every_rule_file() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    loaded = {path for pattern in config["rule_files"] for path in PROMETHEUS_DIR.glob(pattern)}

    assert loaded == set(RULE_FILES)
    assert any(job["job_name"] == "journey" for job in config["scrape_configs"])


def test_scrape_target_labels_do_not_clash_with_the_metrics_labels() -> None:
    from serving import metrics

    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "journey")
    metric_labels = {label for metric in metrics.ALL_METRICS for label in metric._labelnames}
    target_labels = {label for static in job["static_configs"] for label in static.get("labels", {})}

    assert metric_labels >= {"endpoint", "service"}
    assert not target_labels & (metric_labels | {"endpoint", "http_response_code", "service_name"})


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_has_summary_description_severity_and_a_runbook_section(alert: dict[str, Any]) -> None:
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }

    annotations = alert["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert alert["labels"]["severity"] in {"warning", "critical"}
    path, _, anchor = annotations["runbook"].partition("#")
    assert path == "infra/RUNBOOK.md"
    assert anchor == alert["alert"].lower()
    assert anchor in anchors, f"infra/RUNBOOK.md has no section for {alert['alert']}"


@pytest.mark.parametrize("alert", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_has_promtool_tests_where_it_fires_and_where_it_stays_quiet(alert: dict[str, Any]) -> None:
    cases = [case for test in _rule_tests() for case in test.get("alert_rule_test", ())]
    mine = [case for case in cases if case["alertname"] == alert["alert"]]

    assert any(case.get("exp_alerts") for case in mine), f"no test where {alert['alert']} fires"
    assert any(not case.get("exp_alerts") for case in mine), f"no test where {alert['alert']} stays quiet"


@pytest.mark.parametrize("record", sorted(RECORDED))
def test_recording_rule_has_a_promtool_test_of_its_values(record: str) -> None:
    tested = {
        name
        for test in _rule_tests()
        for case in test.get("promql_expr_test", ())
        if case.get("exp_samples")
        for name in metric_names(case["expr"])
    }

    assert record in tested


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.get("alert") or rule["record"])
def test_rule_reads_only_declared_metrics_and_recorded_series(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])

    unknown = {n for n in names if n.startswith("journey_") and n not in declared_samples()}
    unrecorded = {n for n in names if n.startswith("journey:") and n not in RECORDED}
    assert not unknown, f"not declared in serving/metrics.py: {sorted(unknown)}"
    assert not unrecorded, f"no recording rule: {sorted(unrecorded)}"


def test_every_declared_journey_metric_is_used_by_a_rule_or_a_dashboard() -> None:
    from infra.grafana.build_dashboards import DASHBOARDS
    from serving import metrics

    used = {n for rule in RULES for n in metric_names(rule["expr"])}
    used |= {n for d in DASHBOARDS for p in d.panels() for query in p.queries for n in metric_names(query.expr)}
    families = {family.name for metric in metrics.ALL_METRICS for family in metric.describe()}

    unwatched = {f for f in families if not any(name == f or name.startswith(f"{f}_") for name in used)}
    assert not unwatched, f"declared in serving/metrics.py but in no rule or panel: {sorted(unwatched)}"
