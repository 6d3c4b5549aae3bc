"""serving.lifecycle on the embedded registry with real ONNX models: routing, hot reload, shadow, log, conversions.

No Feast here: predictors get no online reader, so they answer from the request alone (the degraded path), which is
all routing needs; the real server with features is tests/integration/serving/test_routing_live.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from journey.registry import Registry, RouteVariant
from journey.settings import Settings
from journey.stores.prediction_log import PredictionLog
from serving import metrics
from serving.lifecycle import PURCHASE_ENDPOINT, SHADOW_VARIANT, Lifecycle, Routed, same_inputs
from serving.predict import PurchasePredictor
from serving.schemas import EventsResponse, PurchaseRequest, PurchaseResponse, Reject
from tests.factories.served import PURCHASE_MODEL, register_propensity

ACTOR = "test"


class MemorySink:
    """A prediction log sink that keeps the tables it is given."""

    location = "memory"

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table:
        return pa.concat_tables(self.tables)

    def close(self) -> None:
        pass

    def rows(self) -> list[dict[str, Any]]:
        return [row for table in self.tables for row in table.to_pylist()]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported ONNX files are reused by every test (export takes a second each); registries are per test."""
    return tmp_path_factory.mktemp("propensity")


@pytest.fixture
def models(settings: Settings, model_dir: Path) -> Settings:
    register_propensity(settings, model_dir, 3)
    return settings


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def lifecycle(models: Settings, sink: MemorySink) -> Iterator[Lifecycle]:
    log = PredictionLog(sink, flush_interval_s=0.05)
    lifecycle = Lifecycle.start(models, lambda _service: None, prediction_log=log, poll=False)
    yield lifecycle
    lifecycle.close()


def request(user_id: int) -> PurchaseRequest:
    return PurchaseRequest(user_id=user_id, items=[{"item_id": 1, "price": 10.0}, {"item_id": 2, "price": 90.0}])


def answer(lifecycle: Lifecycle, user_id: int) -> tuple[Routed, PurchaseResponse]:
    """What the service does for one /predict_purchase request (in-process scoring)."""
    routed = lifecycle.route(PURCHASE_ENDPOINT, user_id)
    predictor = routed.arm.predictor
    assert isinstance(predictor, PurchasePredictor)
    body = request(user_id)
    prepared = predictor.prepare(body)
    outputs = routed.arm.loaded.runtime.run(prepared.feeds)
    response = predictor.respond(prepared, outputs[predictor.OUTPUT])
    lifecycle.served(routed, body, prepared, response)
    return routed, response


def set_route(settings: Settings, *variants: tuple[str, int, float], shadow: int | None = None) -> None:
    with Registry(settings) as registry:
        registry.set_route(
            PURCHASE_ENDPOINT,
            [RouteVariant(name, PURCHASE_MODEL, version, weight) for name, version, weight in variants],
            actor=ACTOR,
            experiment="exp1",
            salt="s1",
            shadow_version=shadow,
        )


def test_without_a_route_the_production_version_answers_as_variant_production(lifecycle: Lifecycle) -> None:
    routed, response = answer(lifecycle, 7)

    assert routed.variant == response.variant == "production"
    assert response.version == response.model_version == 1


def test_a_route_change_is_served_after_reload_with_each_user_sticky_to_a_variant(
    models: Settings, lifecycle: Lifecycle
) -> None:
    set_route(models, ("control", 1, 50), ("candidate", 2, 50))

    assert lifecycle.reload()
    first = {user: answer(lifecycle, user)[1] for user in range(200)}
    again = {user: answer(lifecycle, user)[1] for user in range(200)}

    assert {(r.variant, r.version) for r in first.values()} == {("control", 1), ("candidate", 2)}
    assert all(first[u].variant == again[u].variant for u in first)
    assert lifecycle.status()["routes"][PURCHASE_ENDPOINT]["experiment"] == "exp1"


def test_reload_is_a_no_op_while_the_registry_has_not_changed(lifecycle: Lifecycle) -> None:
    before = lifecycle.snapshot

    assert not lifecycle.reload()
    assert lifecycle.snapshot is before


def test_a_promoted_version_answers_after_reload_without_a_route(models: Settings, lifecycle: Lifecycle) -> None:
    with Registry(models) as registry:
        registry.promote(PURCHASE_MODEL, 3, ACTOR)

    assert lifecycle.reload()
    assert answer(lifecycle, 7)[1].version == 3


def test_a_request_in_flight_finishes_on_the_snapshot_it_started_with(models: Settings, lifecycle: Lifecycle) -> None:
    routed = lifecycle.route(PURCHASE_ENDPOINT, 7)  # the request started
    set_route(models, ("candidate", 2, 100))
    lifecycle.reload()  # ... the route changes under it
    predictor = routed.arm.predictor
    assert isinstance(predictor, PurchasePredictor)
    prepared = predictor.prepare(request(7))
    response = predictor.respond(prepared, routed.arm.loaded.runtime.run(prepared.feeds)[predictor.OUTPUT])

    assert (response.variant, response.version) == ("production", 1)
    assert answer(lifecycle, 7)[1].variant == "candidate"


def test_versions_already_loaded_are_reused_not_reloaded(models: Settings, lifecycle: Lifecycle) -> None:
    production = lifecycle.snapshot.endpoints[PURCHASE_ENDPOINT].arms["production"].loaded.runtime
    set_route(models, ("control", 1, 90), ("candidate", 2, 10))
    lifecycle.reload()

    assert lifecycle.snapshot.endpoints[PURCHASE_ENDPOINT].arms["control"].loaded.runtime is production


def test_a_version_that_fails_to_load_keeps_the_old_routes_serving_and_is_reported(
    models: Settings, lifecycle: Lifecycle
) -> None:
    set_route(models, ("control", 1, 50), ("candidate", 2, 50))
    with Registry(models) as registry:
        registry.artifact_path(registry.get(PURCHASE_MODEL, 2)).write_bytes(b"not a model any more")
    before = lifecycle.snapshot

    assert not lifecycle.reload()
    assert lifecycle.snapshot is before
    assert answer(lifecycle, 7)[1].variant == "production"
    assert "version 2" in " ".join(lifecycle.status()["problems"])
    assert not lifecycle.reload()  # the same registry state is not retried on every poll


def test_the_shadow_is_scored_and_logged_with_the_request_id_but_never_answers(
    models: Settings, lifecycle: Lifecycle, sink: MemorySink
) -> None:
    set_route(models, ("control", 1, 100), shadow=2)
    lifecycle.reload()

    routed, response = answer(lifecycle, 7)
    lifecycle._shadow.submit(lambda: None).result()  # the shadow executor has run what was queued before
    assert lifecycle.prediction_log is not None and lifecycle.prediction_log.flush()

    rows = {row["shadow"]: row for row in sink.rows() if row["request_id"] == routed.request_id}
    assert (response.variant, response.version) == ("control", 1)
    assert (rows[False]["variant"], rows[False]["model_version"]) == ("control", 1)
    assert (rows[True]["variant"], rows[True]["model_version"]) == (SHADOW_VARIANT, 2)
    assert rows[False]["experiment"] == rows[True]["experiment"] == "exp1"
    assert rows[False]["score"] == pytest.approx(max(s.probability for s in response.scores))
    assert rows[True]["score"] != pytest.approx(rows[False]["score"])  # v2 ranks prices the other way


def test_a_failing_shadow_is_logged_and_never_fails_the_answer(
    models: Settings, lifecycle: Lifecycle, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    set_route(models, ("control", 1, 100), shadow=2)
    lifecycle.reload()
    shadow = lifecycle.snapshot.endpoints[PURCHASE_ENDPOINT].shadow
    assert shadow is not None
    object.__setattr__(shadow.loaded, "runtime", None)  # breaks the shadow's model call

    response = answer(lifecycle, 7)[1]
    lifecycle._shadow.submit(lambda: None).result()

    assert response.variant == "control"
    assert "shadow scoring failed" in caplog.text


def conversions(endpoint: str, variant: str) -> float:
    return metrics.AB_CONVERSIONS.labels(endpoint, variant)._value.get()  # type: ignore[no-any-return]


def purchase(user_id: int) -> dict[str, Any]:
    return {"user_id": user_id, "event_type": "purchase"}


def test_a_purchase_by_a_user_who_got_a_prediction_counts_a_conversion_for_that_variant(
    lifecycle: Lifecycle,
) -> None:
    answer(lifecycle, 7)
    before = conversions(PURCHASE_ENDPOINT, "production")
    accepted = EventsResponse(accepted=3, rejected=0, sessions=1, rejects=[])

    counted = lifecycle.count_conversions([purchase(7), purchase(8), {"user_id": 7, "event_type": "view"}], accepted)

    assert counted == 1
    assert conversions(PURCHASE_ENDPOINT, "production") == before + 1


def test_rejected_purchases_and_purchases_after_the_window_count_no_conversion(
    models: Settings, lifecycle: Lifecycle
) -> None:
    answer(lifecycle, 7)
    rejected = EventsResponse(
        accepted=0, rejected=1, sessions=0, rejects=[Reject(row=1, field="price", value="-1", reason="negative")]
    )
    assert lifecycle.count_conversions([purchase(7)], rejected) == 0

    lifecycle.settings = models.model_copy(update={"attribution_window_s": 1e-9})
    time.sleep(0.01)
    assert (
        lifecycle.count_conversions([purchase(7)], EventsResponse(accepted=1, rejected=0, sessions=1, rejects=[])) == 0
    )


def test_the_poller_serves_a_route_change_within_five_seconds(models: Settings) -> None:
    settings = models.model_copy(update={"route_poll_s": 0.1})
    lifecycle = Lifecycle.start(settings, lambda _service: None)
    try:
        set_route(settings, ("candidate", 2, 100))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and answer(lifecycle, 7)[1].variant != "candidate":
            time.sleep(0.05)

        assert answer(lifecycle, 7)[1].version == 2
    finally:
        lifecycle.close()


def test_answers_never_fail_while_routes_change_under_concurrent_requests(models: Settings) -> None:
    settings = models.model_copy(update={"route_poll_s": 0.05})
    lifecycle = Lifecycle.start(settings, lambda _service: None)
    failures: list[BaseException] = []
    seen: set[tuple[str, int]] = set()
    stop = threading.Event()

    def client(offset: int) -> None:
        user = offset
        while not stop.is_set():
            try:
                response = answer(lifecycle, user)[1]
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


def test_a_shadow_with_the_same_inputs_reuses_the_features_read_for_the_answer(
    lifecycle: Lifecycle, models: Settings
) -> None:
    set_route(models, ("control", 1, 100), shadow=3)
    lifecycle.reload()
    served = lifecycle.snapshot.endpoints[PURCHASE_ENDPOINT]

    assert served.shadow is not None
    assert same_inputs(served.arms["control"].predictor, served.shadow.predictor)


def test_an_unreadable_registry_at_start_makes_routing_unavailable_until_a_reload_succeeds(
    models: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from journey.errors import ServiceUnavailableError

    def down(_self: Registry) -> None:
        raise ServiceUnavailableError("model registry unavailable: connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(Registry, "route_snapshot", down)
        lifecycle = Lifecycle.start(models, lambda _service: None, poll=False)
    try:
        with pytest.raises(ServiceUnavailableError, match="connection refused"):
            lifecycle.route(PURCHASE_ENDPOINT, 7)

        assert lifecycle.reload()
        assert answer(lifecycle, 7)[1].variant == "production"
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
    assert set(lifecycle.snapshot.endpoints[PURCHASE_ENDPOINT].arms) == {"control", "candidate"}
