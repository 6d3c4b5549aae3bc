"""Live: a real Prometheus with the repo's config and rules scrapes a real `bentoml serve` (local profile, trained
models) under a short bounded load on loopback; then every Grafana panel query and every recording rule is evaluated
through Prometheus' HTTP API and must return data.

The load is routed: /predict_purchase is split between two variants (the production version and a copy of it) for
the A/B panels and rules, and some /events carry purchases by users who got predictions, so conversions are counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.grafana.build_dashboards import DASHBOARDS, RATE, Panel
from tests.factories.served import register_copy
from tests.integration.infra.conftest import Prometheus, run_prometheus
from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, Server, Shop, serve
from tests.unit.infra.files import RULE_FILES
from tests.unit.infra.promql import load_rules, metric_names

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

RULES = load_rules(RULE_FILES)
RATE_WINDOW = "5m"  # what $__rate_interval stands for here: covers the whole load and the checks after it
REQUESTS_PER_ENDPOINT = 240
BAD_EVERY = 8  # one request in 8 is malformed (422) or carries a bad event
UNKNOWN_USER = 987_654_321
PURCHASE_EVERY = 8  # at i % 8 == 2, the /events batch is a purchase by a user of the load's predictions
EXPERIMENT = "live-prometheus"


@dataclass(frozen=True)
class Observed:
    server: Server
    prometheus: Prometheus
    sent: int  # requests the load sent to the three endpoints, bad ones included


def _expr(expr: str) -> str:
    return expr.replace(RATE, RATE_WINDOW)


def _purchase(shop: Shop, i: int) -> dict[str, Any]:
    if i % BAD_EVERY == 0:
        return {"user_id": shop.sessions[0].user_id, "items": []}  # 422: items must not be empty
    session = shop.sessions[i % len(shop.sessions)]
    items = [{"item_id": item, "price": price} for item, price in session.items]
    user = UNKNOWN_USER if i % 5 == 0 else session.user_id  # unknown users: features served as defaults
    return {"user_id": user, "session_id": session.session_id, "items": items, "request_ts": shop.request_ts}


def _next_action(shop: Shop, i: int) -> dict[str, Any]:
    if i % BAD_EVERY == 0:
        return {"user_id": shop.sessions[0].user_id}  # 422: session_id missing
    session = shop.sessions[i % len(shop.sessions)]
    return {"user_id": session.user_id, "session_id": session.session_id}


def _events(shop: Shop, i: int) -> dict[str, Any]:
    """Fresh sessions' views (never the shop's sessions, which other checks read); a bad event now and then, alone
    or beside a good one (a per-row reject either way: 200, the good one stored); now and then a purchase by a user
    the load asked predictions for (an A/B conversion)."""
    stamp = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()

    def event(event_type: str, user_id: int = 1) -> dict[str, Any]:
        return {
            "event_id": f"obs-{uuid.uuid4().hex}",
            "user_id": user_id,
            "session_id": f"obs-{i}",
            "item_id": 42,
            "event_type": event_type,
            "event_timestamp": stamp,
            "price": 9.99,
        }

    if i % BAD_EVERY == 0:
        return {"events": [event("teleport")]}
    if i % BAD_EVERY == BAD_EVERY // 2:
        return {"events": [event("view"), event("teleport")]}
    if i % PURCHASE_EVERY == 2:
        return {"events": [event("purchase", shop.sessions[i % len(shop.sessions)].user_id)]}
    return {"events": [event("view")]}


def drive_load(server: Server, shop: Shop) -> int:
    """A bounded load on loopback: REQUESTS_PER_ENDPOINT to each endpoint, interleaved, keep-alive; no 5xx."""
    sent = 0
    for i in range(REQUESTS_PER_ENDPOINT):
        for path, body in (
            ("/predict_purchase", _purchase(shop, i)),
            ("/predict_next_action", _next_action(shop, i)),
            ("/events", _events(shop, i)),
        ):
            response = server.post(path, body)
            assert response.status_code in (200, 422), f"{path}: {response.status_code} {response.text[:500]}"
            sent += 1
    return sent


@contextmanager
def ab_route(shop: Shop) -> Iterator[None]:
    """predict_purchase split 50/50 between the production version and a copy of it, for the server's lifetime (the
    session's registry is shared: the route is cleared afterwards)."""
    from journey.registry import Registry, RouteVariant

    candidate = register_copy(shop.settings, "purchase_propensity", actor="live-prometheus")
    with Registry(shop.settings) as registry:
        production = registry.get("purchase_propensity", "production").version
        registry.set_route(
            "predict_purchase",
            [
                RouteVariant("control", "purchase_propensity", production, 50),
                RouteVariant("candidate", "purchase_propensity", candidate.version, 50),
            ],
            actor="live-prometheus",
            experiment=EXPERIMENT,
        )
    try:
        yield
    finally:
        with Registry(shop.settings) as registry:
            registry.clear_route("predict_purchase", actor="live-prometheus")


@pytest.fixture(scope="module")
def observed(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observability")
    with ab_route(shop), serve(shop.env, tmp / "serve") as server:
        target = urlsplit(server.url).netloc
        with run_prometheus(target, tmp / "prometheus") as prometheus:
            prometheus.wait_for('up{job="journey"}', lambda r: bool(r) and r[0]["value"][1] == "1")
            sent = drive_load(server, shop)
            # every request scraped, then a few more scrapes and rule evaluations after the last one
            prometheus.wait_for(
                'sum(bentoml_service_request_total{endpoint=~"/predict_purchase|/predict_next_action|/events"})',
                lambda r: bool(r) and float(r[0]["value"][1]) >= sent,
            )
            prometheus.wait_for("journey:requests:rate5m", bool)
            prometheus.wait_for("count(journey:prediction_score:mean_1h)", lambda r: bool(r))
            yield Observed(server, prometheus, sent)


def _panel_params() -> list[Any]:
    params = []
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels():
            marks = [pytest.mark.xfail(strict=True, reason=panel.pending)] if panel.pending else []
            params.append(pytest.param(panel, id=f"{dashboard.uid}:{panel.title}", marks=marks))
    return params


def _record_params() -> list[Any]:
    records = sorted({rule["record"] for rule in RULES if "record" in rule})
    return [pytest.param(record, id=record) for record in records]


@pytest.mark.parametrize("panel", _panel_params())
def test_panel_queries_return_data(observed: Observed, panel: Panel) -> None:
    for query in panel.queries:
        result = observed.prometheus.finite(_expr(query.expr))

        assert result, f"panel {panel.title!r}: {query.expr!r} returned no data"


@pytest.mark.parametrize("record", _record_params())
def test_recording_rule_produces_series(observed: Observed, record: str) -> None:
    assert observed.prometheus.query(record), f"recording rule {record} produced no series"


def test_every_rule_is_loaded_and_evaluates_without_error(observed: Observed) -> None:
    loaded = observed.prometheus.rules()

    assert {r["name"] for r in loaded} == {rule.get("alert") or rule["record"] for rule in RULES}
    failing = {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"}
    assert not failing, failing


def test_panels_read_metric_names_the_service_really_exports(observed: Observed) -> None:
    scraped = set(observed.server.metrics())
    used = {
        name
        for dashboard in DASHBOARDS
        for panel in dashboard.panels()
        if not panel.pending
        for query in panel.queries
        for name in metric_names(query.expr)
        if not name.startswith("journey:")
    }

    assert used, "no panel read a journey_* or bentoml_* metric"
    assert not used - scraped, f"not in the service's /metrics: {sorted(used - scraped)}"


def test_scraped_series_keep_their_own_labels(observed: Observed) -> None:
    """A target label clashing with a metric's label renames the metric's to exported_<name> (honor_labels off)."""
    series = observed.prometheus.query('{__name__=~"journey_.+|bentoml_.+"}')
    clashing = {label for s in series for label in s["metric"] if label.startswith("exported_")}

    assert series and not clashing


def test_prometheus_counts_the_load_with_its_bad_requests_and_no_server_error(observed: Observed) -> None:
    prometheus = observed.prometheus
    by_status = {
        s["metric"]["status"]: float(s["value"][1])
        for s in prometheus.query("sum by (status) (journey_request_duration_seconds_count)")
    }
    bad_batches = REQUESTS_PER_ENDPOINT // BAD_EVERY
    http_4xx = prometheus.query('sum(bentoml_service_request_total{http_response_code=~"4.."})')

    # bodies that fail schema validation are refused before an endpoint runs: only BentoML's HTTP metric has them
    assert float(http_4xx[0]["value"][1]) >= 2 * bad_batches
    assert "422" not in by_status  # a bad event is a reject inside a 200, even alone in its batch
    assert sum(by_status.values()) == observed.sent - 2 * bad_batches
    assert not [status for status in by_status if status.startswith("5")]
    rejected = prometheus.query('sum(journey_events_total{status="rejected"})')
    assert float(rejected[0]["value"][1]) == 2 * bad_batches


def _active_alerts(prometheus: Prometheus) -> dict[str, set[str | None]]:
    """Alerts pending or firing, with the `view` label of each instance (None for alerts without one)."""
    return {
        r["name"]: {a["labels"].get("view") for a in r.get("alerts", ())}
        for r in prometheus.rules()
        if r["type"] == "alerting" and r["state"] != "inactive"
    }


def test_stale_features_alert_is_active_for_exactly_the_views_older_than_their_target(observed: Observed) -> None:
    """The shop's synthetic events end before today, so served rows may be older than a view's target: the live rule
    goes pending for exactly those views (`for` keeps it from firing within the test)."""
    stale = {
        s["metric"]["view"]
        for s in observed.prometheus.query(
            "journey:feature_age_seconds:min_30m > on (view) group_left () journey:slo:feature_age_seconds"
        )
    }

    assert _active_alerts(observed.prometheus).get("JourneyFeaturesStale", set()) == stale


def test_alerts_of_a_broken_service_stay_inactive_on_a_healthy_one(observed: Observed) -> None:
    """Latency and drift are left out: they depend on how busy this shared machine is and on the synthetic data."""
    broken = {
        "JourneyTargetDown",
        "JourneyHighErrorRatio",
        "JourneyOnlineStoreDegraded",
        "JourneyGPUExpectedButCPU",
        "JourneyABSampleRatioMismatch",
    }

    assert not broken & set(_active_alerts(observed.prometheus))
