"""`/recommend` A/B between two next-item kinds over HTTP: a session-kNN version trained by the pipeline (`journey
train next-item --kind sknn`'s path), routed 50/50 against the production GRU4Rec version, both answering a real
`bentoml serve` with nothing in serving that knows the kinds apart.

The route lives in the session's shared registry (`shop`): the module clears it when it ends, so the other modules'
servers answer from the production version as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from journey import contracts as c
from tests.integration.serving.conftest import DATASET, MAX_EXAMPLES, SESSION_SETUP_TIMEOUT_S, Server, Shop, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

USERS = range(1, 61)  # enough users for both arms of a 50/50 split (sticky by a hash of the user id)


@dataclass(frozen=True)
class Arms:
    gru: int  # the production next_item version (gru4rec)
    sknn: int  # the session-kNN version registered here


@pytest.fixture(scope="module")
def arms(shop: Shop) -> Iterator[Arms]:
    """An sknn next_item version trained on the shop, and the recommend route: gru 50, sknn 50 (cleared after)."""
    from journey.registry import Registry, RouteVariant
    from training.pipeline import run_training

    result = run_training(
        "next-item", DATASET, shop.settings, max_examples=MAX_EXAMPLES, actor="integration-test", recommender="sknn"
    )
    with Registry(shop.settings) as registry:
        gru = registry.get(c.NEXT_ITEM_MODEL, "production")
        assert gru.params["kind"] == "gru4rec" and result.version.params["kind"] == "sknn"
        variants = [
            RouteVariant("gru", c.NEXT_ITEM_MODEL, gru.version, 50),
            RouteVariant("sknn", c.NEXT_ITEM_MODEL, result.version.version, 50),
        ]
        registry.set_route(c.RECOMMEND, variants, actor="integration-test", experiment="kinds-ab")
    yield Arms(gru.version, result.version.version)
    with Registry(shop.settings) as registry:
        registry.clear_route(c.RECOMMEND, actor="integration-test")


@pytest.fixture(scope="module")
def server(shop: Shop, arms: Arms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(shop.env, tmp_path_factory.mktemp("serve-recommend-kinds")) as s:
        yield s


def _in_process(shop: Shop, version: int, session_id: str, k: int) -> tuple[list[int], np.ndarray]:
    """The version's answer computed here, as the service computes it (same features, same file)."""
    from journey.registry import Registry
    from journey.stores.feature_store import close_store, open_store
    from serving.features import OnlineFeatureReader
    from serving.predictors import build_predictor
    from serving.runtime import ModelRuntime
    from serving.schemas import RecommendRequest

    store = open_store(shop.settings)
    try:
        with Registry(shop.settings) as registry:
            row = registry.get(c.NEXT_ITEM_MODEL, version)
            runtime = ModelRuntime.load(registry.artifact_path(row), intra_op_threads=1, inter_op_threads=1)
        reader = OnlineFeatureReader(store, c.NEXT_ITEM_V1)
        predictor: Any = build_predictor(row, runtime, "in-process", lambda _service: reader)
        prepared = predictor.prepare(RecommendRequest(user_id=1, session_id=session_id, k=k))
        outputs = runtime.run(prepared.feeds)
    finally:
        close_store(store)
    return outputs["recommended_item_ids"][0, :k].tolist(), outputs["scores"][0, :k]


def test_recommend_routes_users_50_50_between_the_gru_and_the_sknn_version_and_both_answer(
    server: Server, shop: Shop, arms: Arms
) -> None:
    session = shop.sessions[0]
    answers = {}
    for user in USERS:
        response = server.post("/recommend", {"user_id": user, "session_id": session.session_id, "k": 8})
        assert response.status_code == 200, response.text
        answers[user] = response.json()

    by_variant: dict[str, list[dict[str, Any]]] = {}
    for answer in answers.values():
        by_variant.setdefault(answer["variant"], []).append(answer)
    assert set(by_variant) == {"gru", "sknn"}
    assert 15 <= len(by_variant["sknn"]) <= 45  # 60 users, 50/50: far from one-sided
    assert {a["version"] for a in by_variant["gru"]} == {arms.gru}
    assert {a["version"] for a in by_variant["sknn"]} == {arms.sknn}
    for variant, version in (("gru", arms.gru), ("sknn", arms.sknn)):
        answer = by_variant[variant][0]
        assert answer["model"] == c.NEXT_ITEM_MODEL and not answer["degraded"] and len(answer["items"]) == 8
        ids, scores = _in_process(shop, version, session.session_id, 8)
        assert [item["item_id"] for item in answer["items"]] == ids
        np.testing.assert_allclose([item["score"] for item in answer["items"]], scores, atol=1e-6)
    gru_items = [i["item_id"] for i in by_variant["gru"][0]["items"]]
    assert gru_items != [i["item_id"] for i in by_variant["sknn"][0]["items"]]  # two models, two answers


def test_each_user_stays_in_the_variant_it_was_given(server: Server, shop: Shop, arms: Arms) -> None:
    session = shop.sessions[1]
    first = {u: server.post("/recommend", {"user_id": u, "session_id": session.session_id}).json() for u in USERS}
    again = {u: server.post("/recommend", {"user_id": u, "session_id": session.session_id}).json() for u in USERS}
    assert all(first[u]["variant"] == again[u]["variant"] for u in USERS)
    assert {a["variant"] for a in first.values()} == {"gru", "sknn"}
