"""The real BentoML server on the prod profile: Redis online store, PostgreSQL offline store, Feast registry and model
registry, in a project and schemas of this session's own (removed afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from journey import contracts as c
from tests.factories.journey_state import expected_state
from tests.integration.serving.conftest import (
    MODELS,
    NEXT_ACTION_CLASSES,
    SESSION_SETUP_TIMEOUT_S,
    ProdProject,
    Server,
    later,
    serve,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]


@pytest.fixture(scope="module")
def server(prod_project: ProdProject, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(prod_project.env, tmp_path_factory.mktemp("serve-prod")) as s:
        yield s


def test_readyz_shows_the_prod_profile_and_both_registry_versions_on_the_cpu_provider(
    server: Server, prod_project: ProdProject
) -> None:
    from journey.registry import Registry

    with Registry(prod_project.settings) as registry:
        versions = {name: registry.get(name, "production").version for name in MODELS}
    response = server.client.get("/readyz")
    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["ready"], status["profile"], status["problems"]) == (True, "prod", [])
    served = {name: (m["version"], m["provider"]) for name, m in status["models"].items()}
    assert served == {name: (versions[name], "CPUExecutionProvider") for name in MODELS}


def test_predict_purchase_reads_redis_features_and_scores_every_candidate(
    server: Server, prod_project: ProdProject
) -> None:
    session = prod_project.sessions[0]
    items = [{"item_id": item, "price": price} for item, price in session.items]
    ts = int(session.last_event.timestamp()) + 60
    body = {"user_id": session.user_id, "session_id": session.session_id, "items": items, "request_ts": ts}
    response = server.post("/predict_purchase", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["degraded"]) == ("purchase_propensity", False)
    assert [s["item_id"] for s in answer["scores"]] == [item for item, _ in session.items]
    assert all(0.0 <= s["probability"] <= 1.0 for s in answer["scores"])
    # every view answered from Redis: the materialised rows of this project
    ages = answer["feature_age_seconds"]
    assert set(ages) == {c.USER_ACTIVITY, c.ITEM_POPULARITY, c.SESSION_ACTIVITY}
    assert None not in ages.values()


def test_predict_next_action_gives_a_distribution_from_redis_features(
    server: Server, prod_project: ProdProject
) -> None:
    session = prod_project.sessions[0]
    response = server.post("/predict_next_action", {"user_id": session.user_id, "session_id": session.session_id})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["degraded"]) == ("next_action", False)
    assert set(answer["probabilities"]) == set(NEXT_ACTION_CLASSES)
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert None not in answer["feature_age_seconds"].values()


def test_events_are_pushed_to_redis_and_logged_in_postgresql(server: Server, prod_project: ProdProject) -> None:
    from journey.stores.offline import OfflineTables

    session = prod_project.sessions[1]
    before = server.post("/predict_next_action", {"user_id": session.user_id, "session_id": session.session_id})
    good = {
        "event_id": f"it-{uuid.uuid4().hex}",
        "user_id": session.user_id,
        "session_id": session.session_id,
        "item_id": session.items[0][0],
        "event_type": "add_to_cart",
        "event_timestamp": later(session, 30),
        "price": 19.0,
        "category_id": 4,
    }
    bad = good | {"event_id": f"it-{uuid.uuid4().hex}", "event_type": "teleport"}
    response = server.post("/events", {"events": [good, bad]})
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    logged = OfflineTables(prod_project.settings).read("event_log")["event_id"].to_pylist()
    assert good["event_id"] in logged and bad["event_id"] not in logged
    after = server.post("/predict_next_action", {"user_id": session.user_id, "session_id": session.session_id})
    # the session's online features moved (its last event is now an add_to_cart), so the answer did too
    assert after.json()["probabilities"] != before.json()["probabilities"]


def test_a_retried_batch_is_stored_once_in_redis_and_postgresql(server: Server, prod_project: ProdProject) -> None:
    from journey.stores.offline import OfflineTables

    session = prod_project.sessions[3]
    batch = [
        {
            "event_id": f"it-{uuid.uuid4().hex}",
            "user_id": session.user_id,
            "session_id": session.session_id,
            "item_id": session.items[0][0],
            "event_type": kind,
            "event_timestamp": later(session, 40 + i),
            "price": 19.0,
            "category_id": 4,
        }
        for i, kind in enumerate(("view", "add_to_cart"))
    ]
    answers = [server.post("/events", {"events": batch}) for _ in range(3)]
    assert [(a.json()["accepted"], a.json()["duplicates"]) for a in answers] == [(2, 0), (0, 2), (0, 2)]
    tables = OfflineTables(prod_project.settings)
    logged = tables.read("event_log")["event_id"].to_pylist()
    assert [logged.count(e["event_id"]) for e in batch] == [1, 1]
    activity = tables.read("session_activity").to_pandas()
    assert activity[activity["session_id"] == session.session_id]["session_events"].is_unique


def test_journey_reads_the_profile_and_session_from_redis(server: Server, prod_project: ProdProject) -> None:
    session = prod_project.sessions[0]
    response = server.client.get(f"/journey/{session.user_id}", params={"session_id": session.session_id})
    assert response.status_code == 200, response.text
    assert response.json() == pytest.approx(expected_state(prod_project.settings, session.user_id, session.session_id))
