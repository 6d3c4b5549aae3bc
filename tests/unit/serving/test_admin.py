"""Admin HTTP (serving.http + serving.admin) on a bare Starlette app, the embedded registry and a real lifecycle:
the bearer token, each operation, that this worker serves a change before it answers, and the error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from journey.contracts import PREDICT_PURCHASE
from journey.registry import Registry
from journey.settings import Settings
from serving import http
from serving.admin import Admin
from serving.lifecycle import Lifecycle
from tests.factories.served import register_propensity
from tests.unit.serving.test_http import Client

TOKEN = "unit-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("propensity")


@pytest.fixture
def lifecycle(settings: Settings, model_dir: Path) -> Iterator[Lifecycle]:
    register_propensity(settings, model_dir, 3)
    lifecycle = Lifecycle.start(settings, lambda _service: None, poll=False)
    yield lifecycle
    lifecycle.close()


@pytest.fixture
def client(settings: Settings, lifecycle: Lifecycle) -> Iterator[Client]:
    app = http.JourneyHTTP(Starlette(), api_paths=(), max_body_bytes=4096)
    http.publish_admin(Admin(lifecycle, lambda: Registry(settings)).handle, TOKEN)
    yield Client(app)
    http._admin.clear()


def served_variants(lifecycle: Lifecycle) -> dict[str, int]:
    return {name: arm.version for name, arm in lifecycle.snapshot.endpoints[PREDICT_PURCHASE].arms.items()}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "no-scheme", "basic"],
)
def test_admin_requests_without_the_bearer_token_are_401_and_change_nothing(
    client: Client, lifecycle: Lifecycle, headers: dict[str, str]
) -> None:
    body = {"model_version": "purchase_propensity:2", "weight": 50}

    response = client.request("POST", "/admin/deploy", json=body, headers=headers)

    assert response.status_code == 401
    assert response.json()["field"] == "authorization"
    assert response.headers["www-authenticate"] == "Bearer"
    assert served_variants(lifecycle) == {"production": 1}


def test_a_worker_without_an_admin_token_refuses_every_admin_request(client: Client, lifecycle: Lifecycle) -> None:
    http.publish_admin(Admin(lifecycle, lambda: Registry(lifecycle.settings)).handle, None)

    assert client.request("GET", "/admin/routes", headers=AUTH).status_code == 401


def test_deploy_changes_the_route_and_this_worker_serves_it_before_answering(
    client: Client, lifecycle: Lifecycle
) -> None:
    response = client.request(
        "POST", "/admin/deploy", json={"model_version": "purchase_propensity:2", "weight": 25}, headers=AUTH
    )

    assert response.status_code == 200, response.text
    assert response.json()["route"]["shares"] == {"production": 0.75, "v2": 0.25}
    assert served_variants(lifecycle) == {"production": 1, "v2": 2}


def test_set_shadow_show_rollback_and_clear_over_http(client: Client, lifecycle: Lifecycle) -> None:
    variants: list[Any] = ["control=1:90", {"name": "candidate", "version": 2, "weight": 10}]
    set_ = client.request("PUT", f"/admin/routes/{PREDICT_PURCHASE}", json={"variants": variants}, headers=AUTH)
    shadow = client.request(
        "PUT", f"/admin/routes/{PREDICT_PURCHASE}/shadow", json={"model_version": "3"}, headers=AUTH
    )
    shown = client.request("GET", f"/admin/routes?endpoint={PREDICT_PURCHASE}", headers=AUTH)

    assert set_.status_code == shadow.status_code == shown.status_code == 200
    assert shown.json()["routes"][0]["shadow_version"] == 3
    assert shown.json()["serving"][PREDICT_PURCHASE]["shadow_version"] == 3
    assert served_variants(lifecycle) == {"control": 1, "candidate": 2}

    back = client.request("POST", f"/admin/routes/{PREDICT_PURCHASE}/rollback", json={}, headers=AUTH)
    assert back.status_code == 200
    assert back.json()["route"]["shadow_version"] is None

    cleared = client.request("DELETE", f"/admin/routes/{PREDICT_PURCHASE}", headers=AUTH)
    assert cleared.status_code == 200
    assert served_variants(lifecycle) == {"production": 1}


def test_changes_over_http_are_audited_with_the_actor(client: Client, settings: Settings) -> None:
    client.request(
        "POST",
        "/admin/deploy",
        json={"model_version": "purchase_propensity:2", "weight": 10, "actor": "ci-bot"},
        headers=AUTH,
    )

    with Registry(settings) as registry:
        assert registry.route_history(PREDICT_PURCHASE)[0].actor == "ci-bot"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", f"/admin/routes/{PREDICT_PURCHASE}", {"variants": ["control=1"]}, 422, "variant"),
        ("PUT", f"/admin/routes/{PREDICT_PURCHASE}", {"variants": "control=1:1"}, 422, "variants"),
        ("POST", "/admin/deploy", {"model_version": "purchase_propensity:9", "weight": 10}, 422, "version"),
        ("POST", "/admin/deploy", {"model_version": "purchase_propensity:2"}, 422, "weight"),
        ("POST", f"/admin/routes/{PREDICT_PURCHASE}/rollback", {}, 404, None),
        ("POST", "/admin/nothing", {}, 404, None),
    ],
    ids=["bad-variant", "variants-not-a-list", "unknown-version", "no-weight", "nothing-to-roll-back", "unknown"],
)
def test_bad_admin_requests_get_the_error_shape_with_the_field(
    client: Client, method: str, path: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    response = client.request(method, path, json=body, headers=AUTH)

    assert response.status_code == status, response.text
    assert response.json().get("field") == field
    assert response.json()["error"]


def test_an_admin_body_that_is_not_json_is_422_naming_the_body(client: Client) -> None:
    response = client.request("POST", "/admin/deploy", content=b"{not json", headers=AUTH)

    assert response.status_code == 422
    assert response.json()["field"] == "body"
