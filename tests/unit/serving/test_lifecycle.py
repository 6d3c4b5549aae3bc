"""serving.lifecycle on the embedded registry with real ONNX models: routing, hot reload, versions kept or swapped,
load failures; requests go through the service's answer path (serving.answer).

No Feast here: predictors get no online reader, so they answer from the request alone (the degraded path), which is
all routing needs; the real server with features is tests/integration/serving/test_routing_live.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from journey.contracts import PREDICT_NEXT_ACTION, PREDICT_PURCHASE
from journey.errors import ServiceUnavailableError
from journey.registry import Registry
from journey.settings import Settings
from serving.answer import Answers
from serving.lifecycle import Lifecycle
from serving.outcomes import Outcomes
from serving.predictors.purchase import PurchasePredictor
from tests.factories.answering import ACTOR, ask, purchase_request, set_route
from tests.factories.served import PURCHASE_MODEL


def test_without_a_route_the_production_version_answers_as_variant_production(answers: Answers) -> None:
    response = ask(answers, 7)

    assert response.variant == "production"
    assert response.version == response.model_version == 1


def test_a_route_change_is_served_after_reload_with_each_user_sticky_to_a_variant(
    models: Settings, lifecycle: Lifecycle, answers: Answers
) -> None:
    set_route(models, ("control", 1, 50), ("candidate", 2, 50))

    assert lifecycle.reload()
    first = {user: ask(answers, user) for user in range(200)}
    again = {user: ask(answers, user) for user in range(200)}

    assert {(r.variant, r.version) for r in first.values()} == {("control", 1), ("candidate", 2)}
    assert all(first[u].variant == again[u].variant for u in first)
    assert lifecycle.status()["routes"][PREDICT_PURCHASE]["experiment"] == "exp1"


def test_reload_is_a_no_op_while_the_registry_has_not_changed(lifecycle: Lifecycle) -> None:
    before = lifecycle.snapshot

    assert not lifecycle.reload()
    assert lifecycle.snapshot is before


def test_a_promoted_version_answers_after_reload_without_a_route(
    models: Settings, lifecycle: Lifecycle, answers: Answers
) -> None:
    with Registry(models) as registry:
        registry.promote(PURCHASE_MODEL, 3, ACTOR)

    assert lifecycle.reload()
    assert ask(answers, 7).version == 3


def test_a_request_in_flight_finishes_on_the_snapshot_it_started_with(
    models: Settings, lifecycle: Lifecycle, answers: Answers
) -> None:
    routed = lifecycle.route(PREDICT_PURCHASE, 7)  # the request started
    set_route(models, ("candidate", 2, 100))
    lifecycle.reload()  # ... the route changes under it
    predictor = routed.arm.predictor
    assert isinstance(predictor, PurchasePredictor)
    prepared = predictor.prepare(purchase_request(7))
    response = predictor.respond(prepared, routed.arm.run(prepared.feeds))

    assert (response.variant, response.version) == ("production", 1)
    assert ask(answers, 7).variant == "candidate"


def test_versions_already_loaded_are_reused_not_reloaded(models: Settings, lifecycle: Lifecycle) -> None:
    production = lifecycle.snapshot.endpoints[PREDICT_PURCHASE].arms["production"].loaded.runtime
    set_route(models, ("control", 1, 90), ("candidate", 2, 10))
    lifecycle.reload()

    assert lifecycle.snapshot.endpoints[PREDICT_PURCHASE].arms["control"].loaded.runtime is production


def test_a_version_that_fails_to_load_keeps_the_old_routes_serving_and_is_reported(
    models: Settings, lifecycle: Lifecycle, answers: Answers
) -> None:
    set_route(models, ("control", 1, 50), ("candidate", 2, 50))
    with Registry(models) as registry:
        registry.artifact_path(registry.get(PURCHASE_MODEL, 2)).write_bytes(b"not a model any more")
    before = lifecycle.snapshot

    assert not lifecycle.reload()
    assert lifecycle.snapshot is before
    assert ask(answers, 7).variant == "production"
    assert "version 2" in " ".join(lifecycle.status()["problems"])
    assert not lifecycle.reload()  # the same registry state is not retried on every poll


def test_the_poller_serves_a_route_change_within_five_seconds(models: Settings) -> None:
    settings = models.model_copy(update={"route_poll_s": 0.1})
    lifecycle = Lifecycle.start(settings, lambda _service: None)
    answers = Answers(lifecycle, Outcomes(settings))
    try:
        set_route(settings, ("candidate", 2, 100))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and ask(answers, 7).variant != "candidate":
            time.sleep(0.05)

        assert ask(answers, 7).version == 2
    finally:
        lifecycle.close()


def test_answers_never_fail_while_routes_change_under_concurrent_requests(models: Settings) -> None:
    settings = models.model_copy(update={"route_poll_s": 0.05})
    lifecycle = Lifecycle.start(settings, lambda _service: None)
    answers = Answers(lifecycle, Outcomes(settings))
    failures: list[BaseException] = []
    seen: set[tuple[str, int]] = set()
    stop = threading.Event()

    def client(offset: int) -> None:
        user = offset
        while not stop.is_set():
            try:
                response = ask(answers, user)
                seen.add((response.variant, response.version))
            except BaseException as exc:  # noqa: BLE001  (any failure is what this test counts)
                failures.append(exc)
            user += 4

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for i in range(10):
            set_route(settings, ("control", 1, 100 - 10 * i), ("candidate", 2 + i % 2, 10 * i + 1))
            time.sleep(0.15)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        lifecycle.close()

    assert not failures
    assert {variant for variant, _ in seen} >= {"control", "candidate"}


def test_an_unreadable_registry_at_start_makes_routing_unavailable_until_a_reload_succeeds(
    models: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(_self: Registry) -> None:
        raise ServiceUnavailableError("model registry unavailable: connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(Registry, "route_snapshot", down)
        lifecycle = Lifecycle.start(models, lambda _service: None, poll=False)
    answers = Answers(lifecycle, Outcomes(models))
    try:
        with pytest.raises(ServiceUnavailableError, match="connection refused"):
            lifecycle.route(PREDICT_PURCHASE, 7)

        assert lifecycle.reload()
        assert ask(answers, 7).variant == "production"
    finally:
        lifecycle.close()


def test_a_forced_reload_retries_a_version_that_failed_to_load_once_it_is_fixed(
    models: Settings, lifecycle: Lifecycle
) -> None:
    set_route(models, ("control", 1, 50), ("candidate", 2, 50))
    with Registry(models) as registry:
        path = registry.artifact_path(registry.get(PURCHASE_MODEL, 2))
    good = path.read_bytes()
    path.write_bytes(b"broken")
    assert not lifecycle.reload()

    path.write_bytes(good)

    assert not lifecycle.reload()  # nothing changed in the registry
    assert lifecycle.reload(force=True)
    assert lifecycle.status()["problems"] == []
    assert set(lifecycle.snapshot.endpoints[PREDICT_PURCHASE].arms) == {"control", "candidate"}


def test_an_endpoint_without_a_deployed_model_is_not_missing_and_says_why(lifecycle: Lifecycle) -> None:
    states = lifecycle.endpoint_states()

    assert lifecycle.deployed == (PREDICT_PURCHASE,) and lifecycle.missing() == []
    assert states[PREDICT_PURCHASE] == "serving purchase_propensity (production v1)"
    assert states[PREDICT_NEXT_ACTION].startswith("no model: nothing deployed")
    with pytest.raises(ServiceUnavailableError, match="next_action has no production version"):
        lifecycle.route(PREDICT_NEXT_ACTION, 7)


def test_a_deployed_version_that_fails_to_load_is_missing_and_named(models: Settings) -> None:
    with Registry(models) as registry:
        path = registry.artifact_path(registry.get(PURCHASE_MODEL, "production"))
    with path.open("ab") as file:
        file.write(b"tampered")

    lifecycle = Lifecycle.start(models, lambda _service: None, poll=False)
    try:
        assert lifecycle.missing() == [PREDICT_PURCHASE]
        assert lifecycle.endpoint_states()[PREDICT_PURCHASE].startswith(f"not loaded: {PREDICT_PURCHASE}: Tampered")
    finally:
        lifecycle.close()
