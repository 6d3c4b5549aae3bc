"""`/recommend` over HTTP against a real `bentoml serve`: the next_item model's top-k, as ONNX Runtime gives it
in-process for the same online features, and the requests it refuses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from journey import contracts as c
from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, Server, Shop, serve
from tests.integration.serving.test_service_local import assert_client_error

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]


@pytest.fixture(scope="module")
def server(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(shop.env, tmp_path_factory.mktemp("serve-recommend")) as s:
        yield s


@pytest.fixture(scope="module")
def predictor(shop: Shop) -> Iterator[Any]:
    """The production next_item version and its feature reader, built in this process as the service builds them."""
    from journey.registry import Registry
    from journey.stores.feature_store import close_store, open_store
    from serving.features import OnlineFeatureReader
    from serving.predictors import build_predictor
    from serving.runtime import ModelRuntime

    store = open_store(shop.settings)
    with Registry(shop.settings) as registry:
        version = registry.get("next_item", "production")
        runtime = ModelRuntime.load(registry.artifact_path(version), intra_op_threads=1, inter_op_threads=1)
    try:
        reader = OnlineFeatureReader(store, c.NEXT_ITEM_V1)
        yield build_predictor(version, runtime, "production", lambda _service: reader), runtime
    finally:
        close_store(store)


def body(shop: Shop, **extra: Any) -> dict[str, Any]:
    session = shop.sessions[0]
    return {"user_id": session.user_id, "session_id": session.session_id} | extra


def test_recommend_returns_k_items_best_first_from_the_production_next_item_model(server: Server, shop: Shop) -> None:
    response = server.post("/recommend", body(shop, k=7))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["variant"], answer["degraded"]) == ("next_item", "production", False)
    scores = [item["score"] for item in answer["items"]]
    assert len(scores) == 7
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < score <= 1.0 for score in scores)
    assert len({item["item_id"] for item in answer["items"]}) == 7
    assert answer["feature_age_seconds"][c.SESSION_ACTIVITY] is not None


def test_recommendations_over_http_equal_the_onnx_model_run_in_process(
    server: Server, shop: Shop, predictor: Any
) -> None:
    from serving.schemas import RecommendRequest

    recommender, runtime = predictor
    response = server.post("/recommend", body(shop, k=10))
    assert response.status_code == 200, response.text
    prepared = recommender.prepare(RecommendRequest.model_validate(body(shop, k=10)))
    assert not prepared.degraded and prepared.feeds["lengths"][0] > 0
    outputs = runtime.run(prepared.feeds)
    served = response.json()["items"]
    assert [item["item_id"] for item in served] == outputs["recommended_item_ids"][0, :10].tolist()
    np.testing.assert_allclose([item["score"] for item in served], outputs["scores"][0, :10], rtol=0, atol=1e-6)


def test_a_session_the_store_does_not_know_still_gets_recommendations(server: Server) -> None:
    response = server.post("/recommend", {"user_id": 1, "session_id": "no-such-session"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["items"]) == 10  # the default k
    assert answer["degraded"] is False  # the store answered: it knows nothing of the session
    assert answer["feature_age_seconds"][c.SESSION_ACTIVITY] is None


def test_readyz_lists_the_next_item_model_and_its_provider(server: Server) -> None:
    models = server.client.get("/readyz").json()["models"]
    assert models["next_item"]["provider"] == "CPUExecutionProvider"


def test_recommend_requests_are_counted_by_endpoint(server: Server, shop: Shop) -> None:
    assert server.post("/recommend", body(shop)).status_code == 200
    requests = server.metrics()["journey_request_duration_seconds_count"]
    assert any(
        (labels["endpoint"], labels["status"]) == ("recommend", "200") and value >= 1 for labels, value in requests
    )


def test_k_over_the_models_top_k_answers_top_k_items(server: Server, shop: Shop) -> None:
    response = server.post("/recommend", body(shop, k=51))
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 50


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"k": 0}, "k", id="k zero"),
        pytest.param({"k": "ten"}, "k", id="k not an integer"),
        pytest.param({"session_id": ""}, "session_id", id="empty session_id"),
        pytest.param({"items": [1]}, "items", id="unknown field"),
    ],
)
def test_a_bad_recommend_request_is_422_naming_the_field(
    server: Server, shop: Shop, extra: dict[str, Any], field: str
) -> None:
    assert_client_error(server.post("/recommend", body(shop, **extra)), 422, field)


def test_recommend_without_session_id_is_422_naming_it(server: Server) -> None:
    assert_client_error(server.post("/recommend", {"user_id": 7}), 422, "session_id")
