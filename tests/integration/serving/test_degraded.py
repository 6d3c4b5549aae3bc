"""Fault test: the online store (a `redis-server` of this module's own) dies under traffic and comes back.

The service must keep answering (200, `degraded: true`, the model on missing features) while Redis is down, say so
on `/metrics`, and return to normal answers within 5 s of Redis being back, without a restart. Redis restarts empty
(nothing persisted), so the recovered answers find no rows: "no row" is a normal answer, not a degraded one.

One outage is staged (module fixture `outage`) and the tests each check one behaviour of its record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from journey.settings import Settings
from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, ProdProject, RedisServer, Server, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

RECOVERY_S = 5.0
WAIT_S = 15.0  # longest any phase may take before the scenario gives up


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def outage_project(prod_project: ProdProject, redis_server: RedisServer) -> Iterator[Settings]:
    """A second Feast project on the session's prod data (offline tables, model registry), its online store in
    `redis_server`: applied and materialised there. Its registry rows (and keys) are removed afterwards."""
    from journey.stores.feature_store import apply, materialize, open_store, teardown_project

    settings = prod_project.settings.model_copy(
        update={"feast_project": f"{prod_project.settings.feast_project}_down", "redis_url": redis_server.url}
    )
    try:
        apply(settings)
        materialize(settings, datetime.now(UTC))
        yield settings
    finally:
        if not redis_server.running:  # teardown also deletes the project's keys: Redis must answer
            redis_server.start()
        teardown_project(open_store(settings))


@pytest.fixture(scope="module")
def server(
    prod_project: ProdProject, outage_project: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = prod_project.env | {
        "JOURNEY_FEAST_PROJECT": outage_project.feast_project,
        "JOURNEY_REDIS_URL": outage_project.redis_url,
    }
    with serve(env, tmp_path_factory.mktemp("serve-degraded")) as s:
        yield s


@dataclass(frozen=True)
class Answer:
    endpoint: str
    sent: float  # time.monotonic() when the request left
    received: float
    status: int
    body: dict[str, Any]

    @property
    def degraded(self) -> bool | None:
        return self.body.get("degraded") if self.status == 200 else None


@dataclass
class Traffic:
    """Requests in a loop from a thread of their own (its own keep-alive client) until stopped."""

    server: Server
    bodies: dict[str, dict[str, Any]]
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10.0) as client:
            while not self.stop.is_set():
                for endpoint, body in self.bodies.items():
                    sent = time.monotonic()
                    try:
                        response = client.post(f"/{endpoint}", json=body)
                        json_body = response.headers.get("content-type") == "application/json"
                        payload = response.json() if json_body else {"text": response.text}
                    except (httpx.HTTPError, ValueError) as exc:  # recorded: the tests fail on any of them
                        self.errors.append(f"{endpoint}: {type(exc).__name__}: {exc}")
                        continue
                    self.answers.append(Answer(endpoint, sent, time.monotonic(), response.status_code, payload))
                time.sleep(0.02)

    def wait_for(self, what: str, since: float, accept: Callable[[Answer], bool]) -> float:
        """Until every endpoint has an answer sent after `since` that `accept`s; the time of the last such one."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            firsts: dict[str, float] = {}
            for answer in list(self.answers):
                if answer.sent >= since and accept(answer):
                    firsts.setdefault(answer.endpoint, answer.sent)
            if set(firsts) == set(self.bodies):
                return max(firsts.values())
            time.sleep(0.05)
        pytest.fail(f"no {what} answer from every endpoint in {WAIT_S} s; last: {self.answers[-4:]} {self.errors[-4:]}")


@dataclass(frozen=True)
class Outage:
    answers: list[Answer]
    errors: list[str]
    killed: float  # redis-server got SIGKILL
    restarting: float  # a new redis-server is being started on the same port
    restarted: float  # ... and answers PING
    gauge_down: list[float]  # journey_online_store_degraded samples while Redis was down
    gauge_up: list[float]  # ... after recovery
    processes: tuple[set[int], set[int]]  # the server's process ids before the outage and after it

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if a.sent >= start and a.received <= end]

    @property
    def recovery_s(self) -> float:
        """From Redis answering PING to the first request of the unbroken run of normal answers that follows."""
        last_degraded = max((a.sent for a in self.answers if a.degraded), default=self.restarted)
        normal = [a.sent for a in self.answers if a.sent > max(last_degraded, self.restarted) and not a.degraded]
        return (min(normal) if normal else float("inf")) - self.restarted


def degraded_gauge(server: Server) -> list[float]:
    return [value for _, value in server.metrics().get("journey_online_store_degraded", [])]


def process_ids(server: Server) -> set[int]:
    """The `bentoml serve` process and its workers: a restarted worker would show up as a new id."""
    import psutil  # type: ignore[import-untyped]  # no stubs installed; a Feast dependency

    leader = psutil.Process(server.process.pid)
    return {leader.pid, *(child.pid for child in leader.children(recursive=True))}


@pytest.fixture(scope="module")
def outage(server: Server, redis_server: RedisServer, prod_project: ProdProject) -> Outage:
    session = prod_project.sessions[0]
    ts = int(session.last_event.timestamp()) + 60
    items = [{"item_id": item, "price": price} for item, price in session.items]
    traffic = Traffic(
        server,
        {
            "predict_purchase": {
                "user_id": session.user_id,
                "session_id": session.session_id,
                "items": items,
                "request_ts": ts,
            },
            "predict_next_action": {"user_id": session.user_id, "session_id": session.session_id},
        },
    )
    before = process_ids(server)
    thread = threading.Thread(target=traffic.run, name="traffic", daemon=True)
    thread.start()
    try:
        traffic.wait_for("healthy", 0.0, lambda a: a.degraded is False)
        time.sleep(0.5)
        killed = time.monotonic()
        redis_server.kill()
        traffic.wait_for("degraded", killed, lambda a: a.degraded is True)
        time.sleep(1.0)  # a second of traffic against the dead store
        gauge_down = degraded_gauge(server)
        restarting = time.monotonic()
        redis_server.start()
        restarted = time.monotonic()
        recovered = traffic.wait_for("recovered", restarted, lambda a: a.degraded is False)
        time.sleep(max(0.0, restarted + RECOVERY_S + 1.0 - recovered))  # traffic past the recovery deadline
        gauge_up = degraded_gauge(server)
    finally:
        traffic.stop.set()
        thread.join(timeout=30)
    record = Outage(
        list(traffic.answers),
        list(traffic.errors),
        killed,
        restarting,
        restarted,
        gauge_down,
        gauge_up,
        (before, process_ids(server)),
    )
    print(f"outage: {len(record.answers)} answers, recovered {record.recovery_s:.3f} s after Redis answered PING")
    return record


def test_no_request_fails_while_redis_dies_and_comes_back(outage: Outage) -> None:
    assert not outage.errors
    assert {a.status for a in outage.answers} == {200}, [a for a in outage.answers if a.status != 200][:3]


def test_answers_before_the_outage_read_the_materialised_features(outage: Outage) -> None:
    healthy = outage.between(0.0, outage.killed)
    assert healthy and all(a.degraded is False for a in healthy)
    assert all(None not in a.body["feature_age_seconds"].values() for a in healthy)


def test_every_answer_while_redis_is_down_is_degraded(outage: Outage) -> None:
    # a request that was in flight at the kill may still have read Redis: only those sent after it count
    down = outage.between(outage.killed + 0.2, outage.restarting)
    assert {a.endpoint for a in down} == {"predict_purchase", "predict_next_action"}
    assert all(a.degraded is True for a in down), [a for a in down if not a.degraded][:3]


def test_degraded_answers_still_carry_valid_probabilities(outage: Outage) -> None:
    down = outage.between(outage.killed + 0.2, outage.restarting)
    assert down
    for answer in down:
        values = [s["probability"] for s in answer.body["scores"]] if "scores" in answer.body else []
        values += list(answer.body.get("probabilities", {}).values())
        assert values and all(0.0 <= v <= 1.0 for v in values)


def test_the_degraded_gauge_is_1_while_redis_is_down(outage: Outage) -> None:
    assert outage.gauge_down == [1.0]


def test_answers_are_normal_again_within_5s_of_redis_restarting(outage: Outage) -> None:
    assert outage.recovery_s <= RECOVERY_S
    after = outage.between(outage.restarted + RECOVERY_S, float("inf"))
    assert {a.endpoint for a in after} == {"predict_purchase", "predict_next_action"}
    assert all(a.degraded is False for a in after), [a for a in after if a.degraded][:3]


def test_the_service_recovers_without_restarting_any_of_its_processes(outage: Outage) -> None:
    before, after = outage.processes
    assert len(before) >= 2 and before == after  # `bentoml serve` + its service workers, the same ones


def test_the_degraded_gauge_is_0_after_recovery(outage: Outage) -> None:
    assert outage.gauge_up == [0.0]


def test_the_restarted_empty_redis_answers_no_row_rather_than_degraded(outage: Outage) -> None:
    after = outage.between(outage.restarted + RECOVERY_S, float("inf"))
    assert after and all(set(a.body["feature_age_seconds"].values()) == {None} for a in after)
