"""Everything one serving worker holds, built once from settings: the feature store, the models (serving.lifecycle),
the answer path, outcomes, the journey map, and the `/readyz` body that says what is up and why not.

Built in the worker only (`Worker.start`), never at import: BentoML imports the service module in the supervisor
too, so all heavy imports happen here, and Feast is imported lean (serving.lean_feast) before anything else needs it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from journey.errors import JourneyError, ServiceUnavailableError
from journey.settings import Settings
from journey.stores.event_ids import EventIdLedger, open_ledger
from journey.stores.feature_store import close_store, open_store
from journey.stores.offline import OfflineTables
from journey.stores.prediction_log import open_prediction_log
from serving import metrics
from serving.answer import Answers
from serving.features import OnlineFeatureReader
from serving.ingest import ingest
from serving.journey_map import JourneyMap, parse_session_id, parse_user_id
from serving.lean_feast import import_feast
from serving.lifecycle import Lifecycle
from serving.outcomes import Outcomes
from serving.schemas import EventsRequest, EventsResponse

if TYPE_CHECKING:
    from feast import FeatureStore

    from serving.batching import BatchedModel

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now to the permanent generation (`gc.freeze`); returns how many.

    A worker holds ~1M long-lived objects after start-up (Feast's registry protos, pandas, ONNX Runtime bindings).
    Every full collection walks all of them again: a ~150 ms pause (measured, reports/perf-notes.md) that lands on
    whichever request allocated the object that triggered it. Frozen objects are never scanned; they are not freed
    either, which suits state that lives as long as the worker (CPython documents `gc.freeze` for the same reason
    before `fork()`)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen", extra={"objects": frozen})
    return frozen


@dataclass
class Worker:
    settings: Settings
    lifecycle: Lifecycle
    outcomes: Outcomes
    answers: Answers
    store: FeatureStore | None = None
    tables: OfflineTables | None = None
    ledger: EventIdLedger | None = None  # event ids already stored: /events is exactly-once
    journey: JourneyMap | None = None  # GET /journey/{user_id}; optional: None until `journey analyze` has run
    journey_problem: str = ""
    problems: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # start-up seconds per phase
    started_s: float = 0.0

    @classmethod
    def start(cls, settings: Settings, *, batched: BatchedModel | None = None) -> Worker:
        """Load what can be loaded; anything missing is listed in `/readyz` (which stays 503 until it is there)."""
        began = time.perf_counter()
        phases: dict[str, float] = {}
        problems: list[str] = []
        with _phase(phases, "feature_store"):
            store, tables = _open_store(settings, problems)
        with _phase(phases, "models"):
            lifecycle = Lifecycle.start(settings, lambda service: _reader(settings, store, service))
        outcomes = Outcomes(settings, open_prediction_log(settings))
        worker = cls(settings, lifecycle, outcomes, Answers(lifecycle, outcomes, batched), store, tables)
        worker.ledger = open_ledger(settings)
        worker.problems, worker.phases = problems, phases
        with _phase(phases, "journey_map"):
            worker._load_journey()
        if settings.gc_freeze:
            with _phase(phases, "gc_freeze"):
                freeze_startup_heap()
        worker.started_s = time.perf_counter() - began
        log.info("serving worker started", extra={"problems": problems, "phases": phases, "seconds": worker.started_s})
        return worker

    def _load_journey(self) -> None:
        """The journey map is not a readiness condition: predictions do not need it, and a shop that never ran
        `journey analyze` still gets them. `/readyz` says whether it is there and why not."""
        if self.store is None:
            self.journey_problem = "feature store not loaded"
            return
        try:
            self.journey = JourneyMap.load(self.settings.journey_chain_path, self.lifecycle.reader_for)
        except JourneyError as exc:
            self.journey_problem = str(exc)
            log.warning("journey map not loaded", extra={"reason": self.journey_problem})

    def journey_answer(self, raw_user_id: str, raw_session_id: str | None) -> dict[str, Any]:
        """The body of `GET /journey/{user_id}` (serving.http), or the Journey error that says why not."""
        user_id, session_id = parse_user_id(raw_user_id), parse_session_id(raw_session_id)
        if self.journey is None:
            raise ServiceUnavailableError(f"journey map not loaded: {self.journey_problem}")
        return self.journey.state(user_id, session_id)

    def ingest(self, request: EventsRequest) -> EventsResponse:
        """`/events`: validate and push the batch, then credit its purchases to the A/B variants that served them."""
        if self.store is None or self.tables is None:
            raise ServiceUnavailableError(f"feature store not loaded: {'; '.join(self.problems)}")
        with metrics.time_request("events"):
            response = ingest(self.store, self.tables, request.events, self.ledger)
        self.outcomes.count_conversions(request.events, response)
        return response

    @property
    def ready(self) -> bool:
        """Every endpoint the registry deploys is served (one without a deployed model answers 503 by itself and
        does not hold the others back), and at least one is: a worker with no model at all takes no traffic."""
        return not self.problems and not self.lifecycle.missing() and bool(self.lifecycle.snapshot.endpoints)

    def status(self) -> dict[str, Any]:
        """The body of `/readyz`."""
        models = self.lifecycle.snapshot.production()
        missing = [f"model for {endpoint}: {self._why_missing()}" for endpoint in self.lifecycle.missing()]
        if not self.lifecycle.snapshot.endpoints and not missing:
            missing = ["no endpoint has a model: promote a version (journey models promote) or set a route"]
        return {
            "ready": self.ready,
            "profile": self.settings.profile.value,
            "models": {name: lv.runtime.describe() | {"version": lv.version.version} for name, lv in models.items()},
            "endpoints": self.lifecycle.endpoint_states(),
            "problems": self.problems + missing,
            "startup_seconds": round(self.started_s, 3),
            "startup_phases": self.phases,
            "journey": self.journey.describe() if self.journey is not None else {"problem": self.journey_problem},
            "lifecycle": self.lifecycle.status() | self.outcomes.status(),
        }

    def _why_missing(self) -> str:
        return "; ".join(self.lifecycle.problems + self.lifecycle.unserved) or "not loaded"

    def close(self) -> None:
        """Stop the route poller, write the prediction log's last records, close the feature store."""
        self.lifecycle.close()
        self.outcomes.close()
        if self.store is not None:
            close_store(self.store)
        if self.ledger is not None:
            self.ledger.close()


@contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    """Time one start-up phase: `/readyz` lists them, so a slow start says where its time went."""
    began = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(time.perf_counter() - began, 3)


def _open_store(settings: Settings, problems: list[str]) -> tuple[FeatureStore | None, OfflineTables | None]:
    """The Feast store (its registry reachable and applied) and the offline tables `/events` appends to."""
    import_feast()  # before anything imports Feast: ~1.5 s instead of ~7.7 s (no module here imports it at the top)
    try:
        store = open_store(settings)
        store.list_feature_services()  # the registry is reachable and `feast apply` ran
        return store, OfflineTables(settings)
    except JourneyError as exc:
        problems.append(f"feature store: {exc}")
        return None, None


def _reader(settings: Settings, store: FeatureStore | None, service: str) -> OnlineFeatureReader | None:
    if store is None:
        return None
    return OnlineFeatureReader(
        store, service, timeout_s=settings.online_timeout_s, retry_after_s=settings.online_retry_after_s
    )


__all__: Sequence[str] = ("Worker", "freeze_startup_heap")
