"""A/B routing against the real server (local profile, trained models): admin HTTP behind the token, sticky variants,
the shadow logged but never returned, conversions, hot reload of routes and promotions, and route changes under
concurrent load without one failed request. Loopback only; the load is bounded (clients x changes).

The routes set here live in the session's shared registry (`shop`): the module clears them and restores the
production version when it ends, so the other modules' servers answer as before.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow.compute as pc
import pytest

from tests.factories.served import register_copy
from tests.integration.serving.conftest import ADMIN_TOKEN, SESSION_SETUP_TIMEOUT_S, Server, Shop, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

PP = "purchase_propensity"
EP = "predict_purchase"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELOAD_S = 5.0  # the acceptance bound for a change made elsewhere to be served
CLIENTS = 8
CHANGES = 10


@dataclass(frozen=True)
class Versions:
    production: int
    candidate: int
    shadow: int
    promoted: int  # promoted and archived again by the promotion test: no route can use it afterwards


@pytest.fixture(scope="module")
def versions(shop: Shop) -> Iterator[Versions]:
    """Three more purchase_propensity versions (copies of production); on exit, routes cleared and the production
    version restored."""
    from journey.contracts import ENDPOINT_MODELS
    from journey.registry import Registry

    with Registry(shop.settings) as registry:
        production = registry.get(PP, "production").version
    copies = [register_copy(shop.settings, PP, actor="routing-test").version for _ in range(3)]
    yield Versions(production, *copies)
    with Registry(shop.settings) as registry:
        for endpoint in ENDPOINT_MODELS:
            registry.clear_route(endpoint, actor="routing-test")
        registry.promote(PP, production, "routing-test")


@pytest.fixture(scope="module")
def server(shop: Shop, versions: Versions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = shop.env | {
        "JOURNEY_ADMIN_TOKEN": ADMIN_TOKEN,
        "JOURNEY_ROUTE_POLL_S": "0.5",
        "JOURNEY_PREDICTION_LOG_FLUSH_S": "0.2",
    }
    with serve(env, tmp_path_factory.mktemp("serve-routing")) as s:
        yield s


@pytest.fixture
def clean_route(server: Server) -> Iterator[None]:
    """Each test starts and ends on the default route (production version, variant `production`)."""
    admin(server, "DELETE", f"/admin/routes/{EP}")
    yield
    admin(server, "DELETE", f"/admin/routes/{EP}")


def admin(server: Server, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = server.client.request(method, path, json=body or {}, headers=AUTH)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def purchase(shop: Shop, user_id: int) -> dict[str, Any]:
    session = shop.sessions[user_id % len(shop.sessions)]
    items = [{"item_id": item, "price": price} for item, price in session.items]
    return {"user_id": user_id, "session_id": session.session_id, "items": items, "request_ts": shop.request_ts}


def served_route(server: Server, endpoint: str = EP) -> dict[str, Any]:
    """The route the server says it serves (`/readyz` -> lifecycle)."""
    lifecycle: dict[str, Any] = server.client.get("/readyz").json()["lifecycle"]
    route: dict[str, Any] = lifecycle["routes"][endpoint]
    return route


def wait_for_revision(server: Server, revision: int) -> float:
    return wait_for(lambda: served_route(server)["revision"] == revision)


def wait_for(condition: Callable[[], bool], timeout_s: float = RELOAD_S) -> float:
    """Seconds until `condition()` held; fails the test after `timeout_s`."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout_s:
            pytest.fail(f"not applied within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - began


# ------------------------------------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-the-token"}], ids=["without-a-token", "with-a-wrong-token"]
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/routes", None),
        ("POST", "/admin/deploy", {"model_version": f"{PP}:2", "weight": 50}),
        ("POST", f"/admin/routes/{EP}/rollback", {}),
    ],
    ids=["show", "deploy", "rollback"],
)
def test_admin_endpoints_answer_401_without_the_right_token_and_change_nothing(
    server: Server, headers: dict[str, str], method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = served_route(server)

    response = server.client.request(method, path, json=body, headers=headers)

    assert response.status_code == 401
    assert response.json()["field"] == "authorization"
    assert served_route(server) == before


# --------------------------------------------------------------------------------------------------------- routing


@pytest.mark.usefixtures("clean_route")
def test_each_user_keeps_the_variant_it_was_assigned_and_the_answer_names_it(
    server: Server, shop: Shop, versions: Versions
) -> None:
    admin(
        server,
        "PUT",
        f"/admin/routes/{EP}",
        {
            "variants": [f"control={versions.production}:50", f"candidate={versions.candidate}:50"],
            "experiment": "sticky-test",
        },
    )
    expected = {"control": versions.production, "candidate": versions.candidate}
    users = range(1000, 1040)

    first = {u: server.post("/predict_purchase", purchase(shop, u)).json() for u in users}
    again = {u: server.post("/predict_purchase", purchase(shop, u)).json() for u in users}

    assert {a["variant"] for a in first.values()} == {"control", "candidate"}
    assert all(first[u]["variant"] == again[u]["variant"] for u in users)
    assert all(a["model_version"] == a["version"] == expected[a["variant"]] for a in first.values())


@pytest.mark.usefixtures("clean_route")
def test_the_shadow_version_is_never_returned_but_is_logged_beside_the_answer(
    server: Server, shop: Shop, versions: Versions
) -> None:
    from journey.stores.prediction_log import read_predictions

    experiment = f"shadow-{uuid.uuid4().hex[:8]}"
    admin(
        server, "PUT", f"/admin/routes/{EP}/shadow", {"model_version": str(versions.shadow), "experiment": experiment}
    )
    assert served_route(server)["shadow_version"] == versions.shadow

    answers = [server.post("/predict_purchase", purchase(shop, u)).json() for u in range(2000, 2020)]

    assert {(a["variant"], a["version"]) for a in answers} == {("production", versions.production)}

    def logged() -> bool:
        table = read_predictions(shop.settings, experiment=experiment)
        return pc.sum(table["shadow"]).as_py() == len(answers) if table.num_rows else False

    wait_for(logged, timeout_s=15)
    rows = read_predictions(shop.settings, experiment=experiment).to_pylist()
    live = {r["request_id"]: r for r in rows if not r["shadow"]}
    shadow = {r["request_id"]: r for r in rows if r["shadow"]}
    assert len(live) == len(shadow) == len(answers)
    assert live.keys() == shadow.keys()  # one shadow row per answered request, under its request id
    assert {r["model_version"] for r in shadow.values()} == {versions.shadow}
    assert {r["variant"] for r in live.values()} == {"production"}
    assert all(r["score"] is not None and r["feature_age_s"] is not None for r in live.values())


def conversions(server: Server, variant: str) -> float:
    samples = server.metrics().get("journey_ab_conversions_total", [])
    return sum(v for labels, v in samples if labels == {"endpoint": EP, "variant": variant})


@pytest.mark.usefixtures("clean_route")
def test_a_purchase_after_a_prediction_counts_a_conversion_for_the_variant_that_answered(
    server: Server, shop: Shop
) -> None:
    user = 3001
    variant = server.post("/predict_purchase", purchase(shop, user)).json()["variant"]
    before = conversions(server, variant)
    event = {
        "event_id": f"it-{uuid.uuid4().hex}",
        "user_id": user,
        "session_id": f"it-{uuid.uuid4().hex[:12]}",
        "item_id": 42,
        "event_type": "purchase",
        "event_timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "price": 9.99,
    }

    assert server.post("/events", {"events": [event]}).status_code == 200
    assert conversions(server, variant) == before + 1


# ------------------------------------------------------------------------------------------------------ hot reload


@pytest.mark.usefixtures("clean_route")
def test_a_route_changed_in_the_registry_is_served_within_five_seconds(
    server: Server, shop: Shop, versions: Versions
) -> None:
    from journey.registry import Registry

    with Registry(shop.settings) as registry:
        route = registry.deploy(EP, versions.candidate, 30, actor="routing-test")

    seconds = wait_for_revision(server, route.revision)
    assert seconds < RELOAD_S
    assert {v["name"]: v["version"] for v in served_route(server)["variants"]}[f"v{versions.candidate}"] == (
        versions.candidate
    )


@pytest.mark.usefixtures("clean_route")
def test_a_promoted_version_is_served_within_five_seconds_without_a_restart(
    server: Server, shop: Shop, versions: Versions
) -> None:
    from journey.registry import Registry

    with Registry(shop.settings) as registry:
        registry.promote(PP, versions.promoted, "routing-test")
    try:
        wait_for(lambda: server.client.get("/readyz").json()["models"][PP]["version"] == versions.promoted)
        answer = server.post("/predict_purchase", purchase(shop, 4000)).json()
        assert (answer["variant"], answer["version"]) == ("production", versions.promoted)
    finally:
        with Registry(shop.settings) as registry:
            registry.promote(PP, versions.production, "routing-test")
    wait_for(lambda: server.client.get("/readyz").json()["models"][PP]["version"] == versions.production)


@dataclass
class Load:
    statuses: Counter[int]
    variants: Counter[tuple[str, int]]
    errors: list[str]


def run_load(server: Server, shop: Shop, stop: threading.Event) -> tuple[list[threading.Thread], Load]:
    """CLIENTS threads, each with its own keep-alive connection, sending /predict_purchase until `stop`."""
    load = Load(Counter(), Counter(), [])
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            user = 5000 + index
            while not stop.is_set():
                try:
                    response = http.post("/predict_purchase", json=purchase(shop, user))
                except httpx.HTTPError as exc:
                    with lock:
                        load.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    load.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        answer = response.json()
                        load.variants[(answer["variant"], answer["version"])] += 1
                    else:
                        load.errors.append(f"{response.status_code}: {response.text[:300]}")
                user += CLIENTS

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads, load


@pytest.mark.usefixtures("clean_route")
def test_ten_route_changes_and_rollbacks_under_concurrent_load_fail_no_request(
    server: Server, shop: Shop, versions: Versions
) -> None:
    from journey.registry import Registry

    candidate = f"{PP}:{versions.candidate}"
    changes: list[Callable[[], int]] = [
        lambda: admin(server, "POST", "/admin/deploy", {"model_version": candidate, "weight": 10})["route"]["revision"],
        lambda: admin(server, "POST", "/admin/deploy", {"model_version": candidate, "weight": 50})["route"]["revision"],
        lambda: admin(server, "PUT", f"/admin/routes/{EP}/shadow", {"model_version": str(versions.shadow)})["route"][
            "revision"
        ],
        lambda: admin(server, "POST", f"/admin/routes/{EP}/rollback")["route"]["revision"],
        lambda: admin(server, "POST", "/admin/deploy", {"model_version": candidate, "weight": 90})["route"]["revision"],
        lambda: admin(server, "POST", f"/admin/routes/{EP}/rollback")["route"]["revision"],
    ]

    def through_registry(action: Callable[[Any], Any]) -> Callable[[], int]:
        def change() -> int:  # made elsewhere: the server's poller must find it
            with Registry(shop.settings) as registry:
                return int(action(registry).revision)

        return change

    changes += [
        through_registry(lambda r: r.deploy(EP, versions.candidate, 70, actor="routing-test")),
        through_registry(lambda r: r.set_shadow(EP, versions.shadow, actor="routing-test")),
        through_registry(lambda r: r.rollback_route(EP, actor="routing-test")),
        through_registry(lambda r: r.deploy(EP, versions.candidate, 40, actor="routing-test")),
    ]
    assert len(changes) == CHANGES
    stop = threading.Event()
    threads, load = run_load(server, shop, stop)
    try:
        for change in changes:
            wait_for_revision(server, change())
            time.sleep(0.3)  # let the load run on each route
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert not load.errors, load.errors[:5]
    assert set(load.statuses) == {200}
    assert load.statuses[200] >= CHANGES * CLIENTS  # the load really ran through the changes
    assert {variant for variant, _ in load.variants} >= {"production", f"v{versions.candidate}"}
    assert {version for _, version in load.variants} <= {versions.production, versions.candidate}


def test_with_adaptive_batching_every_variant_answers_with_its_own_version(
    shop: Shop, versions: Versions, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The batching scorer holds the production version only: the other variants must score in-process."""
    from journey.registry import Registry, RouteVariant

    with Registry(shop.settings) as registry:
        registry.set_route(
            EP,
            [
                RouteVariant("control", PP, versions.production, 50),
                RouteVariant("candidate", PP, versions.candidate, 50),
            ],
            actor="routing-test",
        )
    try:
        env = shop.env | {"JOURNEY_ADAPTIVE_BATCHING": "true", "JOURNEY_ADMIN_TOKEN": ADMIN_TOKEN}
        with serve(env, tmp_path_factory.mktemp("serve-batching")) as server:
            answers = [server.post("/predict_purchase", purchase(shop, u)) for u in range(6000, 6040)]
            scored = server.metrics().get("journey_batch_size_count", [])
    finally:
        with Registry(shop.settings) as registry:
            registry.clear_route(EP, actor="routing-test")

    assert {a.status_code for a in answers} == {200}
    expected = {"control": versions.production, "candidate": versions.candidate}
    assert {(a.json()["variant"], a.json()["version"]) for a in answers} == set(expected.items())
    assert sum(v for _, v in scored) == len(answers)  # one model call per answer, through the scorer or not


def _scorer_pids(server: Server) -> list[int]:
    """The batching scorer's worker processes among the server's children (BentoML names the service in argv)."""
    import psutil

    return [
        child.pid
        for child in psutil.Process(server.process.pid).children(recursive=True)
        if "journey_propensity_scorer" in child.cmdline()
    ]


def test_with_adaptive_batching_a_killed_scorer_process_costs_no_request(
    shop: Shop, versions: Versions, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The scorer dies under load (OOM kill, crash): requests in flight to it and those sent before BentoML restarts
    it are scored in-process, never answered 5xx."""
    env = shop.env | {"JOURNEY_ADAPTIVE_BATCHING": "true", "JOURNEY_ADMIN_TOKEN": ADMIN_TOKEN}
    with serve(env, tmp_path_factory.mktemp("serve-scorer-kill")) as server:
        (scorer,) = _scorer_pids(server)
        stop = threading.Event()
        threads, load = run_load(server, shop, stop)
        try:
            time.sleep(1.0)
            os.kill(scorer, signal.SIGKILL)
            time.sleep(3.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        fell_back = "batched scorer unavailable, scoring in-process" in server.log.read_text(errors="replace")

    assert not load.errors, load.errors[:5]
    assert set(load.statuses) == {200} and load.statuses[200] >= CLIENTS
    assert fell_back  # the kill really cut requests off from the scorer


def test_next_action_is_routed_and_shadowed_like_purchase(server: Server, shop: Shop) -> None:
    from journey.registry import Registry, RouteVariant
    from journey.stores.prediction_log import read_predictions

    na = "next_action"
    copy, shadow = (register_copy(shop.settings, na, actor="routing-test").version for _ in range(2))
    experiment = f"next-{uuid.uuid4().hex[:8]}"
    with Registry(shop.settings) as registry:
        production = registry.get(na, "production").version
        route = registry.set_route(
            "predict_next_action",
            [RouteVariant("control", na, production, 50), RouteVariant("candidate", na, copy, 50)],
            actor="routing-test",
            experiment=experiment,
            shadow_version=shadow,
        )
    try:
        wait_for(lambda: served_route(server, "predict_next_action")["revision"] == route.revision)
        sessions = shop.sessions
        answers = [
            server.post(
                "/predict_next_action", {"user_id": 7000 + i, "session_id": sessions[i % len(sessions)].session_id}
            )
            for i in range(30)
        ]
        assert {a.status_code for a in answers} == {200}
        assert {(a.json()["variant"], a.json()["model_version"]) for a in answers} == {
            ("control", production),
            ("candidate", copy),
        }

        def shadowed() -> bool:
            table = read_predictions(shop.settings, experiment=experiment)
            return table.num_rows == 2 * len(answers)

        wait_for(shadowed, timeout_s=15)
        rows = read_predictions(shop.settings, experiment=experiment).to_pylist()
        assert {r["model_version"] for r in rows if r["shadow"]} == {shadow}
        assert all(r["score"] is not None for r in rows)  # P(purchase) of the next action
    finally:
        with Registry(shop.settings) as registry:
            registry.clear_route("predict_next_action", actor="routing-test")
