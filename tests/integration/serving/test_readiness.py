"""Readiness follows what is deployed: a real `bentoml serve` whose registry has only the propensity model in
production is ready (200) and serves it, and the endpoints without a model answer 503 naming why (issue 19.6).

The server reads a registry of its own (JOURNEY_REGISTRY_URL, SQLite), holding a copy of the shop's production
propensity version; the shop's features and data dir are shared, nothing of the shop's registry changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from journey import contracts as c
from tests.factories.served import register_copy
from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, Server, Shop, serve
from tests.integration.serving.test_service_local import purchase_body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]


@pytest.fixture(scope="module")
def server(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from journey.registry import Registry

    tmp = tmp_path_factory.mktemp("serve-readiness")
    settings = shop.settings.model_copy(update={"registry_url": f"sqlite:///{tmp / 'registry.db'}"})
    version = register_copy(settings, c.PURCHASE_PROPENSITY_MODEL, actor="integration-test", source=shop.settings)
    with Registry(settings) as registry:
        registry.promote(c.PURCHASE_PROPENSITY_MODEL, version.version, "integration-test")
    with serve(shop.env | {"JOURNEY_REGISTRY_URL": str(settings.registry_url)}, tmp) as s:
        yield s


def test_readyz_is_200_with_only_the_propensity_model_deployed_and_lists_every_endpoint(server: Server) -> None:
    response = server.client.get("/readyz")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True and body["problems"] == []
    endpoints = body["endpoints"]
    assert endpoints[c.PREDICT_PURCHASE] == "serving purchase_propensity (production v1)"
    assert endpoints[c.PREDICT_NEXT_ACTION].startswith("no model: nothing deployed")
    assert endpoints[c.RECOMMEND].startswith("no model: nothing deployed")


def test_the_deployed_endpoint_answers_and_one_without_a_model_is_503_naming_why(server: Server, shop: Shop) -> None:
    session = shop.sessions[0]

    assert server.post("/predict_purchase", purchase_body(session, shop.request_ts)).status_code == 200
    missing = server.post("/predict_next_action", {"user_id": session.user_id, "session_id": session.session_id})
    assert missing.status_code == 503, missing.text
    assert "next_action has no production version and no route" in missing.json()["error"]
