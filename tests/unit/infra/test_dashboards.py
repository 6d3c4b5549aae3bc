"""The Grafana dashboards: the committed JSON is what build_dashboards.py generates, every query reads names the
service declares (or recording rules record), panels are laid out without overlap, and provisioning finds them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from infra.grafana.build_dashboards import DASHBOARD_DIR, DASHBOARDS, Dashboard, Panel, dashboard_json
from tests.unit.infra.files import INFRA, RULE_FILES
from tests.unit.infra.promql import declared_samples, load_rules, metric_names

RECORDED = {rule["record"] for rule in load_rules(RULE_FILES) if "record" in rule}
# BentoML's HTTP instrumentation (bentoml/_internal/server/http/instruments.py, namespace bentoml_service); the
# live test checks them against a real /metrics scrape
BENTOML_SAMPLES = {
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_request_duration_seconds_sum",
    "bentoml_service_request_duration_seconds_count",
    "bentoml_service_request_total",
    "bentoml_service_request_in_progress",
    "bentoml_service_last_request_timestamp_seconds",
}
PANELS = [pytest.param(d, p, id=f"{d.uid}:{p.title}") for d in DASHBOARDS for p in d.panels()]


def _names(panel: Panel) -> set[str]:
    return {name for query in panel.queries for name in metric_names(query.expr)}


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_committed_dashboard_json_equals_the_generated_one(dashboard: Dashboard) -> None:
    committed = (DASHBOARD_DIR / dashboard.file_name).read_text(encoding="utf-8")

    assert committed == dashboard_json(dashboard), "run: .venv/bin/python infra/grafana/build_dashboards.py"


def test_dashboard_dir_holds_exactly_the_generated_dashboards() -> None:
    assert {p.name for p in DASHBOARD_DIR.glob("*.json")} == {d.file_name for d in DASHBOARDS}
    assert len({d.uid for d in DASHBOARDS}) == len(DASHBOARDS)


@pytest.mark.parametrize(("dashboard", "panel"), PANELS)
def test_panel_queries_read_only_declared_metrics_and_recorded_series(dashboard: Dashboard, panel: Panel) -> None:
    names = _names(panel)

    assert panel.queries
    assert not {n for n in names if n.startswith("journey_")} - declared_samples()
    assert not {n for n in names if n.startswith("journey:")} - RECORDED
    assert not {n for n in names if n.startswith("bentoml_")} - BENTOML_SAMPLES


@pytest.mark.parametrize(("dashboard", "panel"), PANELS)
def test_no_panel_waits_for_an_unfinished_issue(dashboard: Dashboard, panel: Panel) -> None:
    """The A/B panels had to wait for the router (serving.lifecycle); every panel has data now, and the live test
    holds each to it."""
    assert panel.pending is None


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_panels_fit_the_grid_without_overlapping(dashboard: Dashboard) -> None:
    panels = json.loads(dashboard_json(dashboard))["panels"]
    cells: set[tuple[int, int]] = set()

    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({p["title"] for p in panels if p["type"] != "row"}) == len([p for p in panels if p["type"] != "row"])


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_every_query_uses_the_dashboards_datasource_variable(dashboard: Dashboard) -> None:
    model = json.loads(dashboard_json(dashboard))
    variables = {v["name"]: v for v in model["templating"]["list"]}

    assert variables["datasource"]["query"] == "prometheus"
    for panel in (p for p in model["panels"] if p["type"] != "row"):
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])


def _yaml(path: str) -> Any:
    return yaml.safe_load((INFRA / path).read_text(encoding="utf-8"))


def test_provisioning_loads_the_dashboards_where_compose_mounts_them() -> None:
    provider = _yaml("grafana/provisioning/dashboards/journey.yml")["providers"][0]
    source = _yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    grafana = _yaml("compose.yaml")["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])

    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
