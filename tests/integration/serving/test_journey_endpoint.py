"""`GET /journey/{user_id}` on a real BentoML server (local profile): the state the estimated chain and the online
store give, equal to the same decision made in this process; unknown users 404, bad ids 422."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from journey import contracts as c
from tests.factories.journey_state import expected_state
from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, Server, Shop, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

UNKNOWN_USER = 987_654_321


@pytest.fixture(scope="module")
def server(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(shop.env, tmp_path_factory.mktemp("serve-journey")) as s:
        yield s


def _get(server: Server, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=10.0, trust_env=False)


def test_journey_of_a_known_user_equals_the_chain_and_profile_decided_in_process(server: Server, shop: Shop) -> None:
    user = shop.sessions[0].user_id
    response = _get(server, f"/journey/{user}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == pytest.approx(expected_state(shop.settings, user))
    assert body["stage"] in c.STAGES and 0.0 <= body["purchase_probability"] <= 1.0
    assert body["segment_name"]


def test_journey_with_a_session_takes_the_stage_of_its_last_event(server: Server, shop: Shop) -> None:
    session = shop.sessions[1]
    response = _get(server, f"/journey/{session.user_id}?session_id={session.session_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stage_source"] == "session" and body["session_id"] == session.session_id
    assert body == pytest.approx(expected_state(shop.settings, session.user_id, session.session_id))


def test_journey_of_an_unknown_user_is_404_saying_so(server: Server) -> None:
    response = _get(server, f"/journey/{UNKNOWN_USER}")
    assert response.status_code == 404
    assert f"user {UNKNOWN_USER}" in response.json()["error"] and "unknown" in response.json()["error"]


@pytest.mark.parametrize("raw", ["abc", "1.5", str(2**63), ""])
def test_journey_with_a_user_id_that_is_not_an_int64_is_422_naming_it(server: Server, raw: str) -> None:
    response = _get(server, f"/journey/{raw}")
    assert response.status_code == 422
    assert response.json()["field"] == "user_id"


def test_journey_with_an_overlong_session_id_is_422_naming_it(server: Server, shop: Shop) -> None:
    response = _get(server, f"/journey/{shop.sessions[0].user_id}?session_id={'s' * 300}")
    assert response.status_code == 422
    assert response.json()["field"] == "session_id"


def test_journey_with_an_empty_session_id_is_422_naming_it(server: Server, shop: Shop) -> None:
    response = _get(server, f"/journey/{shop.sessions[0].user_id}?session_id=")
    assert response.status_code == 422
    assert response.json()["field"] == "session_id"


def test_readyz_names_the_journey_chain_that_answers(server: Server, shop: Shop) -> None:
    journey = _get(server, "/readyz").json()["journey"]
    assert journey["path"] == str(shop.settings.journey_chain_path)


def test_journey_requests_are_counted_by_status(server: Server) -> None:
    _get(server, f"/journey/{UNKNOWN_USER}")
    statuses = {
        labels["status"]
        for labels, _ in server.metrics()["journey_request_duration_seconds_count"]
        if labels["endpoint"] == "journey"
    }
    assert "404" in statuses
