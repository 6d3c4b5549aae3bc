"""The real BentoML server on the local profile (files + SQLite): every endpoint over HTTP, its answers equal to the
same ONNX models run in this process, and bad requests answered with 4xx naming the field, never 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from journey import contracts as c
from tests.integration.serving.conftest import (
    MODELS,
    NEXT_ACTION_CLASSES,
    SESSION_SETUP_TIMEOUT_S,
    Server,
    Session,
    Shop,
    later,
    serve,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

BODY_LIMIT = 1 << 20  # JOURNEY_MAX_BODY_BYTES of this module's server: 10k candidates (~190 kB) still fit
ENDPOINTS = ("predict_purchase", "predict_next_action", "events")
UNKNOWN_ITEM = 987_654_321


@pytest.fixture(scope="module")
def server(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(shop.env | {"JOURNEY_MAX_BODY_BYTES": str(BODY_LIMIT)}, tmp_path_factory.mktemp("serve-local")) as s:
        yield s


@dataclass
class InProcess:
    """The production models and feature readers built in this process, as the service builds them."""

    versions: dict[str, int]
    purchase: Any  # serving.predictors.purchase.PurchasePredictor
    next_action: Any  # serving.predictors.next_action.NextActionPredictor
    runtimes: dict[str, Any]  # serving.runtime.ModelRuntime per model


@pytest.fixture(scope="module")
def in_process(shop: Shop) -> Iterator[InProcess]:
    from journey.registry import Registry
    from journey.stores.feature_store import close_store, open_store
    from serving.features import OnlineFeatureReader
    from serving.predictors import build_predictor
    from serving.runtime import ModelRuntime

    store = open_store(shop.settings)
    predictors, runtimes, versions = {}, {}, {}
    with Registry(shop.settings) as registry:
        for name in MODELS:
            version = registry.get(name, "production")
            runtimes[name] = ModelRuntime.load(registry.artifact_path(version), intra_op_threads=1, inter_op_threads=1)
            versions[name] = version.version
            predictors[name] = build_predictor(
                version, runtimes[name], "production", lambda service: OnlineFeatureReader(store, service)
            )
    try:
        yield InProcess(versions, predictors["purchase_propensity"], predictors["next_action"], runtimes)
    finally:
        close_store(store)


def purchase_body(session: Session, request_ts: int) -> dict[str, Any]:
    """The session's items with their prices, one without a price and one item no store knows."""
    items: list[dict[str, Any]] = [{"item_id": item, "price": price} for item, price in session.items]
    items += [{"item_id": session.items[0][0]}, {"item_id": UNKNOWN_ITEM, "price": 12.5}]
    return {"user_id": session.user_id, "session_id": session.session_id, "items": items, "request_ts": request_ts}


def event(session: Session | None, seconds: float, event_type: str = "view", **fields: Any) -> dict[str, Any]:
    """A canonical event `seconds` after the session's last one (a fresh session of user 1 when none is given)."""
    if session is None:
        user, session_id, stamp = 1, f"it-{uuid.uuid4().hex[:12]}", (datetime.now(UTC) - timedelta(minutes=5))
        when = (stamp + timedelta(seconds=seconds)).isoformat()
    else:
        user, session_id, when = session.user_id, session.session_id, later(session, seconds)
    return {
        "event_id": f"it-{uuid.uuid4().hex}",
        "user_id": user,
        "session_id": session_id,
        "item_id": 42,
        "event_type": event_type,
        "event_timestamp": when,
        "price": 9.99,
        "category_id": 3,
    } | fields


def named_fields(response: httpx.Response) -> set[str]:
    """Every field an error response names: pydantic's `loc`s, a `field`, or the `<field>: ...` error prefix."""
    body = response.json()
    names: set[str] = set()
    for entry in body if isinstance(body, list) else [body]:
        for detail in entry.get("detail") or []:
            names.add(".".join(str(part) for part in detail.get("loc", ())))
        if entry.get("field"):
            names.add(entry["field"])
        if isinstance(error := entry.get("error"), str) and ": " in error:
            names.add(error.split(": ", 1)[0])
    return names


def assert_client_error(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert field in named_fields(response), response.text


# ------------------------------------------------------------------------------------------------- happy paths


def test_predict_purchase_scores_every_candidate_in_order_with_a_probability(
    server: Server, shop: Shop, in_process: InProcess
) -> None:
    body = purchase_body(shop.sessions[0], shop.request_ts)
    response = server.post("/predict_purchase", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "purchase_propensity"
    assert answer["version"] == in_process.versions["purchase_propensity"]
    assert (answer["variant"], answer["degraded"]) == ("production", False)
    assert [s["item_id"] for s in answer["scores"]] == [item["item_id"] for item in body["items"]]
    assert all(0.0 <= s["probability"] <= 1.0 for s in answer["scores"])
    ages = answer["feature_age_seconds"]
    assert set(ages) == {c.USER_ACTIVITY, c.ITEM_POPULARITY, c.SESSION_ACTIVITY}
    assert all(age is not None and age >= 0 for age in ages.values())  # known user, items and session


def test_predict_next_action_gives_a_distribution_over_next_event_types_and_exit(
    server: Server, shop: Shop, in_process: InProcess
) -> None:
    session = shop.sessions[0]
    response = server.post("/predict_next_action", {"user_id": session.user_id, "session_id": session.session_id})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["version"]) == ("next_action", in_process.versions["next_action"])
    assert (answer["variant"], answer["degraded"]) == ("production", False)
    probabilities = answer["probabilities"]
    assert set(probabilities) == set(NEXT_ACTION_CLASSES)
    assert all(0.0 <= p <= 1.0 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert answer["predicted"] == max(probabilities, key=probabilities.__getitem__)


def test_events_accepts_good_events_and_counts_their_sessions(server: Server) -> None:
    first = event(None, 0)
    second = event(None, 20, "add_to_cart") | {"user_id": first["user_id"], "session_id": first["session_id"]}
    response = server.post("/events", {"events": [first, second]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": 2,
        "rejected": 0,
        "duplicates": 0,
        "sessions": 1,
        "rejects": [],
        "duplicate_rows": [],
    }


def test_readyz_shows_both_models_on_the_cpu_provider_with_their_registry_versions(
    server: Server, in_process: InProcess
) -> None:
    response = server.client.get("/readyz")
    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["ready"], status["profile"], status["problems"]) == (True, "local", [])
    assert set(status["models"]) == set(MODELS)
    for name, model in status["models"].items():
        assert model["provider"] == "CPUExecutionProvider", name
        assert model["version"] == in_process.versions[name]


def test_livez_answers_200(server: Server) -> None:
    assert server.client.get("/livez").status_code == 200


# ------------------------------------------------------------------------------------------------------ metrics


def _traffic(server: Server, shop: Shop) -> None:
    """One successful call per endpoint (tests may run alone: each metrics test makes its own traffic)."""
    session = shop.sessions[2]
    assert server.post("/predict_purchase", purchase_body(session, shop.request_ts)).status_code == 200
    ids = {"user_id": session.user_id, "session_id": session.session_id}
    assert server.post("/predict_next_action", ids).status_code == 200
    assert server.post("/events", {"events": [event(None, 0)]}).status_code == 200


def test_metrics_expose_every_journey_family_after_traffic(server: Server, shop: Shop) -> None:
    from serving import metrics

    _traffic(server, shop)
    expected = {family.name for metric in metrics.ALL_METRICS for family in metric.describe()}
    assert expected <= server.metric_families(), sorted(expected - server.metric_families())


def test_metrics_expose_the_ab_assignments_counter(server: Server, shop: Shop) -> None:
    _traffic(server, shop)
    assert "journey_ab_assignments" in server.metric_families()


def test_request_histogram_counts_requests_of_every_endpoint(server: Server, shop: Shop) -> None:
    _traffic(server, shop)
    counts = server.metrics()["journey_request_duration_seconds_count"]
    for endpoint in ENDPOINTS:
        served = sum(v for labels, v in counts if labels["endpoint"] == endpoint and labels["status"] == "200")
        assert served > 0, (endpoint, counts)


def test_metrics_show_both_models_on_the_cpu_provider_and_a_healthy_online_store(server: Server, shop: Shop) -> None:
    _traffic(server, shop)
    samples = server.metrics()
    providers = {(labels["model"], labels["provider"]): v for labels, v in samples["journey_execution_provider"]}
    assert providers == {(name, "CPUExecutionProvider"): 1.0 for name in MODELS}
    assert [v for _, v in samples["journey_online_store_degraded"]] == [0.0]


# ----------------------------------------------------------------------------------------- parity with ONNX here


def test_purchase_probabilities_over_http_equal_the_onnx_model_run_in_process(
    server: Server, shop: Shop, in_process: InProcess
) -> None:
    from serving.schemas import PurchaseRequest

    body = purchase_body(shop.sessions[0], shop.request_ts)
    response = server.post("/predict_purchase", body)
    assert response.status_code == 200, response.text
    prepared = in_process.purchase.prepare(PurchaseRequest.model_validate(body))
    assert not prepared.degraded
    expected = in_process.runtimes["purchase_propensity"].run(prepared.feeds)["probabilities"][:, 1]
    served = [s["probability"] for s in response.json()["scores"]]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_next_action_probabilities_over_http_equal_the_onnx_model_run_in_process(
    server: Server, shop: Shop, in_process: InProcess
) -> None:
    from serving.schemas import NextActionRequest

    session = shop.sessions[0]
    body = {"user_id": session.user_id, "session_id": session.session_id}
    response = server.post("/predict_next_action", body)
    assert response.status_code == 200, response.text
    prepared = in_process.next_action.prepare(NextActionRequest.model_validate(body))
    assert not prepared.degraded
    expected = in_process.runtimes["next_action"].run(prepared.feeds)["probabilities"][0]
    served = response.json()["probabilities"]
    labels = in_process.next_action.model.classes
    np.testing.assert_allclose([served[label] for label in labels], expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad requests

GOOD = {"user_id": 7, "items": [{"item_id": 1, "price": 2.5}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"user_id": 7}, "items", id="missing items"),
        pytest.param(GOOD | {"user_id": "abc"}, "user_id", id="user_id not an integer"),
        pytest.param(GOOD | {"items": []}, "items", id="no candidates"),
        pytest.param(GOOD | {"items": [{"item_id": i} for i in range(10_000)]}, "items", id="10k candidates"),
        pytest.param(GOOD | {"colour": "red"}, "colour", id="unknown field"),
        pytest.param(GOOD | {"items": [{"item_id": 1, "size": 3}]}, "items.0.size", id="unknown candidate field"),
        pytest.param(GOOD | {"items": [{"item_id": -5}]}, "items.0.item_id", id="negative item_id"),
        pytest.param(GOOD | {"items": [{"item_id": 1, "price": -1}]}, "items.0.price", id="negative price"),
        pytest.param(GOOD | {"request_ts": "yesterday"}, "request_ts", id="request_ts not an integer"),
    ],
)
def test_a_bad_purchase_request_is_422_naming_the_field(server: Server, body: dict[str, Any], field: str) -> None:
    assert_client_error(server.post("/predict_purchase", body), 422, field)


def test_next_action_without_session_id_is_422_naming_it(server: Server) -> None:
    assert_client_error(server.post("/predict_next_action", {"user_id": 7}), 422, "session_id")


def test_a_body_over_the_limit_is_413_before_it_is_read(server: Server) -> None:
    body = json.dumps(GOOD | {"padding": "x" * (2 * BODY_LIMIT)}).encode()
    response = server.client.post("/predict_purchase", content=body, headers={"content-type": "application/json"})
    assert_client_error(response, 413, "body")


def test_a_chunked_body_over_the_limit_is_413(server: Server) -> None:
    chunk = b" " * 65_536

    def chunks() -> Iterator[bytes]:  # no content-length: the size is only known while it arrives
        yield json.dumps(GOOD).encode()[:-1] + b', "padding": "'
        for _ in range(2 * BODY_LIMIT // len(chunk)):
            yield chunk
        yield b'"}'

    response = server.client.post("/predict_purchase", content=chunks(), headers={"content-type": "application/json"})
    assert_client_error(response, 413, "body")


def test_a_body_that_is_not_json_is_a_4xx(server: Server) -> None:
    response = server.client.post(
        "/predict_purchase", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text


# ------------------------------------------------------------------------------------------------------ /events


@dataclass(frozen=True)
class MixedBatch:
    response: httpx.Response
    good: dict[str, Any]
    bad: dict[str, Any]
    before: dict[str, list[Any]]
    after: dict[str, list[Any]]


@pytest.fixture(scope="module")
def mixed_batch(server: Server, shop: Shop, in_process: InProcess) -> MixedBatch:
    """A known session gets one good add_to_cart and one event of an unknown type, in one request."""
    session = shop.sessions[1]
    rows = [{c.USER: session.user_id, c.SESSION: session.session_id}]
    reader = in_process.next_action.reader
    before = reader.read(rows)
    good = event(session, 30, "add_to_cart", item_id=session.items[0][0])
    bad = event(session, 31, "teleport")
    response = server.post("/events", {"events": [good, bad]})
    return MixedBatch(response, good, bad, before, reader.read(rows))


def test_a_mixed_batch_is_200_reporting_the_bad_event_by_row_field_and_reason(mixed_batch: MixedBatch) -> None:
    assert mixed_batch.response.status_code == 200, mixed_batch.response.text
    assert mixed_batch.response.json() == {
        "accepted": 1,
        "rejected": 1,
        "duplicates": 0,
        "sessions": 1,
        "rejects": [{"row": 2, "field": "event_type", "value": "teleport", "reason": "unknown_event_type"}],
        "duplicate_rows": [],
    }


def test_the_good_event_of_a_mixed_batch_updates_the_sessions_online_features(mixed_batch: MixedBatch) -> None:
    before, after = mixed_batch.before, mixed_batch.after
    assert before["session_events"][0] is not None
    assert after["session_events"] == [before["session_events"][0] + 1]
    assert after["session_carts"] == [before["session_carts"][0] + 1]
    assert after["session_last_event_types"][0][-1] == "add_to_cart"


def test_the_good_event_of_a_mixed_batch_is_in_the_event_log_and_the_bad_one_is_not(
    mixed_batch: MixedBatch, shop: Shop
) -> None:
    from journey.stores.offline import OfflineTables

    logged = set(OfflineTables(shop.settings).read("event_log")["event_id"].to_pylist())
    assert mixed_batch.good["event_id"] in logged
    assert mixed_batch.bad["event_id"] not in logged


def test_a_batch_sent_three_times_leaves_online_and_offline_state_as_sending_it_once(
    server: Server, shop: Shop, in_process: InProcess
) -> None:
    from journey.stores.offline import OfflineTables

    session = shop.sessions[4]
    rows = [{c.USER: session.user_id, c.SESSION: session.session_id}]
    reader = in_process.next_action.reader
    batch = [event(session, 40, "view", item_id=session.items[0][0]), event(session, 41, "add_to_cart")]
    before = reader.read(rows)

    answers = [server.post("/events", {"events": batch}) for _ in range(3)]  # a client retrying a timed-out request

    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    assert [(a.json()["accepted"], a.json()["duplicates"]) for a in answers] == [(2, 0), (0, 2), (0, 2)]
    assert answers[1].json()["duplicate_rows"] == [1, 2] and answers[1].json()["sessions"] == 0
    after = reader.read(rows)
    assert after["session_events"] == [before["session_events"][0] + 2]  # counted once
    assert after["session_carts"] == [before["session_carts"][0] + 1]
    tables = OfflineTables(shop.settings)
    logged = tables.read("event_log")["event_id"].to_pylist()
    assert [logged.count(e["event_id"]) for e in batch] == [1, 1]
    activity = tables.read("session_activity").to_pandas()
    mine = activity[activity[c.SESSION] == session.session_id]
    assert mine["session_events"].max() == after["session_events"][0] and mine["session_events"].is_unique


def test_a_batch_of_only_bad_events_is_200_with_every_reject_and_logs_nothing(server: Server, shop: Shop) -> None:
    from journey.stores.offline import OfflineTables

    bad = [event(None, 0, "teleport"), event(None, 1, "teleport")]
    response = server.post("/events", {"events": bad})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (0, 2)
    assert [(r["row"], r["field"], r["reason"]) for r in body["rejects"]] == [
        (1, "event_type", "unknown_event_type"),
        (2, "event_type", "unknown_event_type"),
    ]
    tables = OfflineTables(shop.settings)
    logged = set(tables.read("event_log")["event_id"].to_pylist()) if tables.exists("event_log") else set()
    assert not logged & {e["event_id"] for e in bad}


def test_a_batch_mixing_good_events_missing_fields_and_wrong_types_stores_exactly_the_good_ones(
    server: Server, shop: Shop
) -> None:
    from journey.stores.offline import OfflineTables

    first, last = event(None, 0), event(None, 3)
    incomplete = {k: v for k, v in event(None, 1).items() if k != "event_type"}
    wrong = event(None, 2, user_id="someone", colour="red")
    response = server.post("/events", {"events": [first, incomplete, wrong, last, None]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    assert [(r["row"], r["field"], r["reason"]) for r in body["rejects"]] == [
        (2, "event_type", "missing_field"),
        (3, "colour", "unknown_field"),
        (3, "user_id", "wrong_type"),
        (5, "event", "not_an_object"),
    ]
    logged = set(OfflineTables(shop.settings).read("event_log")["event_id"].to_pylist())
    assert {first["event_id"], last["event_id"]} <= logged
    assert not {incomplete["event_id"], wrong["event_id"]} & logged


def test_an_empty_event_list_is_422_naming_events(server: Server) -> None:
    assert_client_error(server.post("/events", {"events": []}), 422, "events")


def test_the_openapi_schema_types_every_event_field_and_shows_an_example(server: Server) -> None:
    response = server.client.get("/docs.json")
    assert response.status_code == 200, response.text
    text = json.dumps(response.json())
    spec = response.json()
    body = spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:  # BentoML puts the request model in the components
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    item = body["properties"]["events"]["items"]
    assert set(item["required"]) == {"event_id", "user_id", "session_id", "item_id", "event_type", "event_timestamp"}
    assert item["properties"]["event_type"]["enum"] == ["view", "add_to_cart", "remove_from_cart", "purchase"]
    assert item["properties"]["event_timestamp"]["format"] == "date-time"
    assert item["properties"]["price"]["nullable"] is True and item["additionalProperties"] is False
    assert "e-2026-11-23-0001" in text  # the example
