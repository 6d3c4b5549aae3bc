"""The Grafana dashboards of the Journey platform, generated so every panel's query stays consistent with the rules.

    .venv/bin/python infra/grafana/build_dashboards.py      # rewrites infra/grafana/dashboards/*.json

Why code and not hand-edited JSON: the queries use the metric names of serving/metrics.py and the recording rules of
infra/prometheus/rules/ in one place, and tests read the same panel list: `tests/unit/infra/test_dashboards.py`
checks that the committed JSON equals what this module writes and that every name a query uses is declared, and
`tests/integration/infra/test_live_prometheus.py` runs every query against a real Prometheus scraping a real service.

A panel whose metrics only get data once another issue lands carries `pending` (the issue); the live test expects
exactly those panels to be empty (a strict xfail), so the mark has to go once they have data.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

DASHBOARD_DIR: Final = Path(__file__).resolve().parent / "dashboards"
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
RATE: Final = "$__rate_interval"  # Grafana's window for rate(): at least 4 scrape intervals
GRID_WIDTH: Final = 24

PanelKind = Literal["timeseries", "stat", "heatmap", "table"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    kind: PanelKind = "timeseries"
    width: int = 12
    height: int = 8
    pending: str | None = None  # the issue whose metrics this panel waits for: no data until it lands


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("journey",))

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"

    def panels(self) -> Iterator[Panel]:
        for row in self.rows:
            yield from row.panels


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def percentiles(prefix: str, labels: str, legend: str) -> tuple[Query, ...]:
    """p50/p90/p99 recording rules of one family (the p90 only where recorded)."""
    quantiles = ("p50", "p90", "p99") if prefix == "journey:request_duration_seconds" else ("p50", "p99")
    return tuple(q(f"max by ({labels}) ({prefix}:{p}_5m)", f"{legend} {p}") for p in quantiles)


# ---------------------------------------------------------------------------------------------------------- service

SERVICE = Dashboard(
    uid="journey-service",
    title="Journey / Service overview",
    description="Traffic, latency, errors and saturation of the Journey prediction service (BentoML + ONNX Runtime).",
    rows=(
        Row(
            "Traffic",
            (
                Panel(
                    "Requests per second",
                    (q(f"sum(rate(journey_request_duration_seconds_count[{RATE}]))"),),
                    "All prediction and /events requests, every status.",
                    unit="reqps",
                    kind="stat",
                    width=6,
                    height=4,
                ),
                Panel(
                    "Server error ratio (worst endpoint)",
                    (q("max(journey:request_errors:ratio_rate5m)"),),
                    "Share of 5xx answers over 5 minutes; JourneyHighErrorRatio fires above 1%.",
                    unit="percentunit",
                    kind="stat",
                    width=6,
                    height=4,
                ),
                Panel(
                    "p99 latency (worst endpoint)",
                    (q("max(journey:request_duration_seconds:p99_5m)"),),
                    "Highest p99 over endpoints and variants, 5-minute window.",
                    unit="s",
                    kind="stat",
                    width=6,
                    height=4,
                ),
                Panel(
                    "Online store degraded",
                    (q("max(journey_online_store_degraded)"),),
                    "1 while online reads fail and answers use default features (flagged `degraded`).",
                    kind="stat",
                    width=6,
                    height=4,
                ),
                Panel(
                    "Requests by endpoint",
                    (q(f"sum by (endpoint) (rate(journey_request_duration_seconds_count[{RATE}]))", "{{endpoint}}"),),
                    "Requests per second per endpoint.",
                    unit="reqps",
                ),
                Panel(
                    "Requests by status",
                    (q(f"sum by (status) (rate(journey_request_duration_seconds_count[{RATE}]))", "{{status}}"),),
                    "Requests per second per HTTP status the endpoints answered (422: bad input, 499: client left).",
                    unit="reqps",
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Latency percentiles by endpoint",
                    percentiles("journey:request_duration_seconds", "endpoint", "{{endpoint}}"),
                    "End-to-end request latency inside the service (features + model + response), 5-minute window.",
                    unit="s",
                ),
                Panel(
                    "p99 against its target",
                    (
                        q("max by (endpoint) (journey:request_duration_seconds:p99_5m)", "{{endpoint}} p99"),
                        q("journey:slo:request_p99_seconds", "{{endpoint}} target"),
                    ),
                    "JourneyHighP99Latency fires when p99 stays above the target for 10 minutes.",
                    unit="s",
                ),
                Panel(
                    "HTTP p99 by route (BentoML)",
                    (
                        q(
                            "histogram_quantile(0.99, sum by (endpoint, le) "
                            f"(rate(bentoml_service_request_duration_seconds_bucket[{RATE}])))",
                            "{{endpoint}}",
                        ),
                    ),
                    "As BentoML's HTTP layer measures it, every route included (/readyz, /livez).",
                    unit="s",
                    width=24,
                ),
            ),
        ),
        Row(
            "Errors",
            (
                Panel(
                    "Server error ratio (5xx) by endpoint",
                    (q("journey:request_errors:ratio_rate5m", "{{endpoint}} / {{variant}}"),),
                    "Share of 5xx answers per endpoint and variant, 5-minute window.",
                    unit="percentunit",
                ),
                Panel(
                    "Client error ratio (4xx) by endpoint",
                    (q("journey:request_client_errors:ratio_rate5m", "{{endpoint}} / {{variant}}"),),
                    "Bad requests (422 with the field named): the calling shop's bugs, not the service's.",
                    unit="percentunit",
                ),
                Panel(
                    "HTTP answers by code (BentoML)",
                    (
                        q(
                            f"sum by (http_response_code) (rate(bentoml_service_request_total[{RATE}]))",
                            "{{http_response_code}}",
                        ),
                    ),
                    "Every HTTP answer, including those the middleware gives (413 body too large) and probes.",
                    unit="reqps",
                    width=24,
                ),
            ),
        ),
        Row(
            "Saturation",
            (
                Panel(
                    "Requests in progress",
                    (q("sum by (endpoint) (bentoml_service_request_in_progress)", "{{endpoint}}"),),
                    "Concurrent requests per route: a growing queue means the workers are saturated.",
                ),
                Panel(
                    "Model inference p99 by provider",
                    (
                        q(
                            "journey:model_inference_seconds:p99_5m",
                            "{{model}} v{{version}} {{provider}}",
                        ),
                    ),
                    "ONNX Runtime time of one model call (one batch), per execution provider.",
                    unit="s",
                ),
                Panel(
                    "Rows per model call",
                    (
                        q("journey:batch_size:mean_5m", "{{model}} mean"),
                        q("journey:batch_size:p99_5m", "{{model}} p99"),
                    ),
                    "Candidate items per propensity call (merged calls with adaptive batching).",
                ),
                Panel(
                    "Instances scraped",
                    (q('sum(up{job="journey"})', "up"),),
                    "Service instances Prometheus reaches; JourneyTargetDown fires for one missing 2 minutes.",
                ),
            ),
        ),
    ),
)

# ----------------------------------------------------------------------------------------------------------- models

MODELS = ("purchase_propensity", "next_action")
SCORE_NAMES = {"purchase_propensity": "P(purchase)", "next_action": "top-class probability"}

MODELS_DASHBOARD = Dashboard(
    uid="journey-models",
    title="Journey / Models & experiments",
    description="Per model version and A/B variant: latency, execution provider, score distribution and drift, "
    "A/B assignments and conversions.",
    rows=(
        Row(
            "Versions",
            (
                Panel(
                    "Execution provider per model version",
                    (q("max by (model, version, provider) (journey_execution_provider) == 1"),),
                    "The ONNX Runtime provider each loaded version really runs on.",
                    kind="table",
                ),
                Panel(
                    "GPU expected per model version",
                    (q("max by (model, version) (journey_gpu_expected)"),),
                    "1 where the host has a GPU and the model has CUDA kernels: with a CPU provider above, "
                    "JourneyGPUExpectedButCPU fires.",
                    kind="table",
                ),
                Panel(
                    "Inference latency by version and provider",
                    percentiles(
                        "journey:model_inference_seconds",
                        "model, version, provider",
                        "{{model}} v{{version}} {{provider}}",
                    ),
                    "ONNX Runtime time of one call, 5-minute window.",
                    unit="s",
                ),
                Panel(
                    "Request p99 by endpoint and variant",
                    (q("journey:request_duration_seconds:p99_5m", "{{endpoint}} / {{variant}}"),),
                    "End-to-end p99 per A/B variant (`production` without a route).",
                    unit="s",
                ),
                Panel(
                    "Requests by variant",
                    (q("sum by (endpoint, variant) (journey:requests:rate5m)", "{{endpoint}} / {{variant}}"),),
                    "Requests per second each variant answered.",
                    unit="reqps",
                    width=24,
                ),
            ),
        ),
        Row(
            "Scores",
            (
                *(
                    Panel(
                        f"{model} score distribution",
                        (
                            q(
                                f'sum by (le) (increase(journey_prediction_score_bucket{{model="{model}"}}[{RATE}]))',
                                "{{le}}",
                            ),
                        ),
                        f"Served {SCORE_NAMES[model]} per 0.05 bucket, all versions.",
                        kind="heatmap",
                    )
                    for model in MODELS
                ),
                Panel(
                    "Mean score against the training reference",
                    (
                        q("journey:prediction_score:mean_1h", "{{model}} v{{version}} served"),
                        q("max by (model, version) (journey_training_score_mean)", "{{model}} v{{version}} training"),
                    ),
                    "Served mean over 1 hour and the version's training mean (journey_training_score_mean).",
                ),
                Panel(
                    "Mean score shift from training",
                    (q("journey:prediction_score:mean_shift_ratio_1h", "{{model}} v{{version}}"),),
                    "(served - training) / training; JourneyPredictionScoreDrift fires beyond ±50%.",
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Experiments",
            (
                Panel(
                    "A/B assignments per second",
                    (
                        q(
                            f"sum by (endpoint, variant) (rate(journey_ab_assignments_total[{RATE}]))",
                            "{{endpoint}} / {{variant}}",
                        ),
                    ),
                    "Requests the A/B router sent to each variant.",
                    unit="reqps",
                ),
                Panel(
                    "Assignment share against the route's weight",
                    (
                        q(
                            "journey:ab_assignments:increase1h / on (endpoint) group_left () "
                            "sum by (endpoint) (journey:ab_assignments:increase1h)",
                            "{{endpoint}} / {{variant}} observed",
                        ),
                        q("journey:ab_expected_share", "{{endpoint}} / {{variant}} configured"),
                    ),
                    "Last hour's share of assignments and the configured share.",
                    unit="percentunit",
                ),
                Panel(
                    "Sample ratio mismatch (chi-square, 1 h)",
                    (q("journey:ab_srm_chi2:1h", "{{endpoint}}"),),
                    "JourneyABSampleRatioMismatch fires above 10.83 per extra variant (p < 0.001).",
                ),
                Panel(
                    "Conversions per second",
                    (
                        q(
                            f"sum by (endpoint, variant) (rate(journey_ab_conversions_total[{RATE}]))",
                            "{{endpoint}} / {{variant}}",
                        ),
                    ),
                    "Purchases attributed to the variant that answered the buyer's earlier prediction.",
                ),
                Panel(
                    "Conversions per assignment (1 h)",
                    (
                        q(
                            "sum by (endpoint, variant) (increase(journey_ab_conversions_total[1h])) "
                            "/ sum by (endpoint, variant) (increase(journey_ab_assignments_total[1h]))",
                            "{{endpoint}} / {{variant}}",
                        ),
                    ),
                    "A live view only: the A/B report gives intervals and p-values.",
                    unit="percentunit",
                    width=24,
                ),
            ),
        ),
    ),
)

# --------------------------------------------------------------------------------------------------------- features

FEATURES = Dashboard(
    uid="journey-features",
    title="Journey / Feature store",
    description="Online feature reads (latency, degraded answers, defaults), freshness per view and the /events push.",
    rows=(
        Row(
            "Online reads",
            (
                Panel(
                    "Online read latency by feature service",
                    percentiles("journey:online_features_seconds", "service", "{{service}}"),
                    "One online read (all views of a feature service, every candidate row), 5-minute window.",
                    unit="s",
                ),
                Panel(
                    "Online reads per second",
                    (
                        q(
                            f"sum by (service) (rate(journey_online_features_seconds_count[{RATE}]))",
                            "{{service}}",
                        ),
                    ),
                    "Reads per feature service.",
                    unit="reqps",
                ),
                Panel(
                    "Online store degraded",
                    (q("max by (instance) (journey_online_store_degraded)", "{{instance}}"),),
                    "1 while reads fail or time out; JourneyOnlineStoreDegraded fires after 2 minutes.",
                ),
                Panel(
                    "Default values served by reason",
                    (
                        q(
                            f"sum by (service, reason) (rate(journey_feature_defaults_total[{RATE}]))",
                            "{{service}} {{reason}}",
                        ),
                    ),
                    "Feature values served as missing: unknown entity, missing value, or the store down.",
                ),
            ),
        ),
        Row(
            "Freshness",
            (
                Panel(
                    "Feature age by view (latest request)",
                    (q("journey:feature_age_seconds:max", "{{view}}"),),
                    "Age of the oldest row the latest request served, per view.",
                    unit="s",
                ),
                Panel(
                    "Freshest row in 30 minutes against its target",
                    (
                        q("journey:feature_age_seconds:min_30m", "{{view}}"),
                        q("journey:slo:feature_age_seconds", "{{view}} target"),
                    ),
                    "JourneyFeaturesStale fires when even the freshest row stays older than the target.",
                    unit="s",
                ),
            ),
        ),
        Row(
            "Push (/events)",
            (
                Panel(
                    "Events per second by outcome",
                    (q(f"sum by (status) (rate(journey_events_total[{RATE}]))", "{{status}}"),),
                    "Events accepted (pushed online and offline) and rejected by validation.",
                    unit="reqps",
                    width=8,
                ),
                Panel(
                    "Rejected share",
                    (
                        q(
                            f'sum(rate(journey_events_total{{status="rejected"}}[{RATE}])) '
                            f"/ sum(rate(journey_events_total[{RATE}]))",
                            "rejected",
                        ),
                    ),
                    "Share of events refused (the response names row, field and reason).",
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "Push latency",
                    tuple(
                        q(
                            f"histogram_quantile({quantile}, "
                            f"sum by (le) (rate(journey_event_push_seconds_bucket[{RATE}])))",
                            name,
                        )
                        for quantile, name in (("0.5", "p50"), ("0.99", "p99"))
                    ),
                    "One /events batch into the Feast push source (online store and offline append).",
                    unit="s",
                    width=8,
                ),
            ),
        ),
    ),
)

DASHBOARDS: Final = (SERVICE, MODELS_DASHBOARD, FEATURES)


# ----------------------------------------------------------------------------------------------------------- render


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schema 39), panels laid out left to right in rows of 24 columns."""
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row in dashboard.rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "utc",
        "version": 1,
        "annotations": {"list": []},
        "links": [
            {"title": "Journey dashboards", "type": "dashboards", "tags": ["journey"], "asDropdown": True},
        ],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                    "refresh": 1,
                }
            ]
        },
        "panels": panels,
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    table = panel.kind == "table"
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": not table,
            "instant": table,
            **({"format": "heatmap"} if panel.kind == "heatmap" else {"format": "table"} if table else {}),
        }
        for i, query in enumerate(panel.queries)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description + (f" (no data until {panel.pending} lands)" if panel.pending else ""),
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": _options(panel.kind),
        "targets": targets,
    }


def _options(kind: PanelKind) -> dict[str, Any]:
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
    if kind == "heatmap":
        return {"calculate": False, "cellGap": 1, "yAxis": {"axisPlacement": "left"}, "color": {"scheme": "Oranges"}}
    if kind == "table":
        return {"showHeader": True}
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def dashboard_json(dashboard: Dashboard) -> str:
    """The file content: stable key order and a final newline, so regenerating changes nothing."""
    return json.dumps(render(dashboard), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = DASHBOARD_DIR, dashboards: Sequence[Dashboard] = DASHBOARDS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in dashboards:
        path = directory / dashboard.file_name
        path.write_text(dashboard_json(dashboard), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"{path}\n")
