"""Model lifecycle in one serving worker: which variant answers a request, with which loaded version, and what is
logged about it; routes and promotions picked up without a restart.

Per routed endpoint the worker holds a `Snapshot`: the registry's route, its `Router`, and for each variant (and the
shadow) the model version loaded in ONNX Runtime with its predictor. A snapshot is immutable and replaced whole by
one attribute assignment, so a request that took `lifecycle.snapshot` at its start finishes on the versions it
started with while the next request already sees the new route; the old sessions are freed when the last request
holding them ends. Nothing is ever closed under a request.

Hot reload: a daemon thread polls `Registry.change_token()` every `route_poll_s` (an indexed max(id), ~1 ms). When
it moves (a route change, a promotion, an archive), it reads `route_snapshot()`, loads and warms the versions the new
routes name that this worker does not hold yet (`ModelRuntime.load` runs a warm-up at batch 1 and 8), then swaps.
Versions already loaded are reused, not reloaded. If any version fails to load, the old snapshot keeps serving, the
failure is logged and shown in `/readyz` (`lifecycle.problems`), and the next token change retries. An endpoint
without a stored route is the registry's default: its production version, variant `production`, so promoting a
version is served within one poll as well.

Per request (`route` then `served`): the router assigns the user (sticky hash, serving.routing), the variant's
predictor answers; after the answer exists, `served` counts the assignment, appends a `PredictionRecord` to the
prediction log (a list append: the log writes in batches on its own thread) and hands the shadow version, if any,
to a one-thread executor that scores it on the same features: a shadow never delays or fails a request and its
answer is never returned. Purchases arriving at `/events` are credited to the variant that answered the buyer's
latest prediction within `attribution_window_s` in this worker (`journey_ab_conversions_total`); the offline
attribution of the A/B report joins the prediction log with the event log and sees every worker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from journey.contracts import ENDPOINT_MODELS
from journey.errors import JourneyError, ServiceUnavailableError
from journey.registry import Registry, Route
from journey.settings import Settings
from serving import metrics
from serving.predict import NextActionPredictor, Prepared, PurchasePredictor, RecommendPredictor
from serving.routing import Assignment, Router
from serving.runtime import ModelRuntime
from serving.state import (
    NEXT_ACTION_MODEL,
    NEXT_ITEM_MODEL,
    gpu_expected,
    load_runtime,
    model_info,
    training_score_mean,
)

if TYPE_CHECKING:
    from journey.registry import ModelVersion
    from journey.stores.prediction_log import PredictionLog, PredictionRecord
    from serving.schemas import EventsResponse, NextActionResponse, PurchaseResponse, RecommendResponse

    Response = PurchaseResponse | NextActionResponse | RecommendResponse

log = logging.getLogger(__name__)

PURCHASE_ENDPOINT: Final = "predict_purchase"
NEXT_ACTION_ENDPOINT: Final = "predict_next_action"
RECOMMEND_ENDPOINT: Final = "recommend"
SHADOW_VARIANT: Final = "shadow"  # the variant of a shadow row in the prediction log
MAX_TOUCHES: Final = 100_000  # users remembered for conversion counting; the oldest are forgotten first
MAX_SHADOW_BACKLOG: Final = 1_000  # shadow scorings waiting; past it they are skipped (counted), never queued forever
PURCHASE_EVENT: Final = "purchase"  # journey.events.EventType.PURCHASE

Predictor = PurchasePredictor | NextActionPredictor | RecommendPredictor
ReaderFactory = Callable[[str], Any]  # feature service -> OnlineFeatureReader | None


class ServingStateLike(Protocol):
    """What the lifecycle reads of `serving.state.ServingState` (tests pass a stand-in)."""

    runtimes: dict[str, ModelRuntime]
    versions: dict[str, int]


@dataclass(frozen=True)
class Loaded:
    """One registered version loaded in this worker (shared by every variant and snapshot that serves it)."""

    version: ModelVersion
    runtime: ModelRuntime

    @property
    def key(self) -> tuple[str, int, str]:
        return self.version.name, self.version.version, self.version.onnx_sha256


@dataclass(frozen=True)
class Arm:
    """A variant of a route (or the shadow) with its loaded version and the predictor that answers as it."""

    variant: str
    loaded: Loaded
    predictor: Predictor

    @property
    def version(self) -> int:
        return self.loaded.version.version


@dataclass(frozen=True)
class EndpointRoute:
    """One endpoint's route as this worker serves it."""

    route: Route
    router: Router
    arms: Mapping[str, Arm]
    shadow: Arm | None

    def describe(self) -> dict[str, Any]:
        shares = self.route.shares()
        return {
            "stored": self.route.stored,
            "revision": self.route.revision,
            "experiment": self.route.experiment,
            "variants": [
                {
                    "name": v.name,
                    "version": v.version,
                    "weight": v.weight,
                    "share": round(shares[v.name], 6),
                    "provider": self.arms[v.name].loaded.runtime.provider,
                }
                for v in self.route.variants
            ],
            "shadow_version": self.shadow.version if self.shadow is not None else None,
        }


@dataclass(frozen=True)
class Snapshot:
    """Everything a request needs to be routed and answered, swapped whole (see the module docstring)."""

    token: int
    endpoints: Mapping[str, EndpointRoute]
    loaded: Mapping[tuple[str, int, str], Loaded]
    at: float = field(default_factory=time.time)


EMPTY: Final = Snapshot(token=-1, endpoints=MappingProxyType({}), loaded=MappingProxyType({}), at=0.0)


@dataclass(frozen=True)
class Routed:
    """The router's decision for one request and the arms that carry it out."""

    endpoint: str
    assignment: Assignment
    arm: Arm
    shadow: Arm | None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def variant(self) -> str:
        return self.assignment.variant


# ------------------------------------------------------------------------------------------------------- loading


def load_version(registry: Registry, name: str, version: int, settings: Settings) -> Loaded:
    """Any registered version loaded and warmed, as `serving.state.load_production` loads the production one."""
    mv = registry.get(name, version)
    return Loaded(mv, load_runtime(registry, mv, settings))


def build_predictor(loaded: Loaded, variant: str, reader_for: ReaderFactory) -> Predictor:
    """The predictor that answers as `variant` with `loaded` (readers are per feature service and shared)."""
    from journey.model_inputs import NextActionInputSpec, NextItemInputSpec

    info = model_info(loaded.version, loaded.runtime, variant)
    reader = reader_for(info.feature_service)
    if loaded.version.name == NEXT_ACTION_MODEL:
        spec = NextActionInputSpec.from_dict(loaded.version.params["input_spec"])
        return NextActionPredictor(info, reader, spec)
    if loaded.version.name == NEXT_ITEM_MODEL:
        return RecommendPredictor(info, reader, NextItemInputSpec.from_dict(loaded.version.params["input_spec"]))
    return PurchasePredictor(info, reader)


def same_inputs(a: Predictor, b: Predictor) -> bool:
    """Whether two predictors build identical model inputs from a request (then the shadow reuses the features)."""
    if type(a) is not type(b) or a.model.feature_service != b.model.feature_service:
        return False
    if isinstance(a, NextActionPredictor) and isinstance(b, NextActionPredictor):
        return a.spec == b.spec
    if isinstance(a, RecommendPredictor) and isinstance(b, RecommendPredictor):
        return a.spec.seq_len == b.spec.seq_len  # top_k only cuts the answer: the inputs are the same
    return a.model.feature_order == b.model.feature_order


def response_score(response: Response) -> float | None:
    """The one number a prediction row carries (what the A/B report ranks users by): for purchase propensity the
    highest candidate probability (how likely this shopper buys one of them), for next action P(purchase), for
    recommendations the top item's probability (how sure the model is of where the session goes)."""
    items = getattr(response, "items", None)
    if items is not None:
        return items[0].score if items else None
    scores = getattr(response, "scores", None)
    if scores is not None:
        return max((s.probability for s in scores), default=None)
    probabilities: Mapping[str, float] = getattr(response, "probabilities", {})
    return probabilities.get(PURCHASE_EVENT)


def oldest_age(ages: Mapping[str, float | None]) -> float | None:
    """The feature freshness of an answer: the age of its oldest served row (None: no row found)."""
    known = [age for age in ages.values() if age is not None]
    return max(known) if known else None


# ----------------------------------------------------------------------------------------------------- lifecycle


class Lifecycle:
    """Routes, loaded versions, hot reload, prediction log and conversion counting of one worker."""

    def __init__(
        self,
        settings: Settings,
        reader_for: ReaderFactory,
        *,
        state: ServingStateLike | None = None,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        self.settings = settings
        self._new_reader = reader_for
        self._readers: dict[str, Any] = {}
        self.state = state
        self.prediction_log = prediction_log
        self.snapshot: Snapshot = EMPTY
        self.problems: list[str] = []
        self.reloads = 0
        self._reload_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Registry | None = None
        self._touches: OrderedDict[tuple[str, int], tuple[str, float]] = OrderedDict()
        self._touch_lock = threading.Lock()
        self._shadow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journey-shadow")
        self._shadow_lock = threading.Lock()
        self._shadow_backlog = 0
        self.shadow_skipped = 0
        self._last_poll_error = ""
        self._refused_token: int | None = None  # a reload that failed is retried at the next change, not every poll
        self.unserved: list[str] = []  # endpoints with nothing to serve (no route, no production version)

    # ---------------------------------------------------------------------------------------------- start/stop

    @classmethod
    def start(
        cls,
        settings: Settings,
        reader_for: ReaderFactory,
        *,
        state: ServingStateLike | None = None,
        prediction_log: PredictionLog | None = None,
        poll: bool = True,
    ) -> Lifecycle:
        """Load the current routes (reusing the sessions `state` already holds) and start the poller. A registry
        that cannot be read yet leaves every routed endpoint at 503, naming why, until a poll succeeds."""
        lifecycle = cls(settings, reader_for, state=state, prediction_log=prediction_log)
        try:
            lifecycle.reload(force=True)
        except JourneyError as exc:
            lifecycle.problems = [f"registry: {exc}"]
            log.warning("routes not loaded at start", extra={"error": str(exc)})
        if poll:
            lifecycle._thread = threading.Thread(target=lifecycle._poll, name="journey-route-poller", daemon=True)
            lifecycle._thread.start()
        return lifecycle

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop polling, finish queued shadow scorings, write the prediction log's last records."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._shadow.shutdown(wait=True)
        if self.prediction_log is not None:
            self.prediction_log.close(timeout_s)
        if self._registry is not None:
            self._registry.close()

    def reader_for(self, service: str) -> Any:
        """One online feature reader per feature service, shared by every variant and snapshot that reads it."""
        if service not in self._readers:
            self._readers[service] = self._new_reader(service)
        return self._readers[service]

    # ------------------------------------------------------------------------------------------------- reload

    def _registry_handle(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return self._registry

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.route_poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reload()
            except JourneyError as exc:  # registry unreachable: keep serving what is loaded, say so once
                if str(exc) != self._last_poll_error:
                    log.warning("route poll failed, serving the loaded routes", extra={"error": str(exc)})
                self._last_poll_error = str(exc)
            except Exception:  # a bug must not end hot reload for the life of the worker
                log.exception("route poll failed")
            else:
                self._last_poll_error = ""

    def reload(self, *, force: bool = False) -> bool:
        """Load the registry's routes if its change token moved (or `force`); True when a new snapshot was swapped
        in. A version that fails to load leaves the old snapshot serving and is listed in `problems`."""
        with self._reload_lock:
            registry = self._registry_handle()
            if not force and registry.change_token() in (self.snapshot.token, self._refused_token):
                return False
            routes = registry.route_snapshot()
            if not force and routes.token in (self.snapshot.token, self._refused_token):
                return False
            began = time.perf_counter()
            built, problems = self._build(registry, routes.token, routes.routes)
            if problems and self.snapshot is not EMPTY:
                self.problems = problems
                self._refused_token = routes.token
                log.warning(
                    "routes not reloaded: the loaded ones keep serving",
                    extra={"token": routes.token, "problems": problems},
                )
                return False
            self._swap(built)
            self.problems = problems
            self.reloads += 1
            log.info(
                "routes loaded",
                extra={
                    "token": routes.token,
                    "routes": {ep: r.describe() for ep, r in built.endpoints.items()},
                    "problems": problems,
                    "seconds": round(time.perf_counter() - began, 3),
                },
            )
            return True

    def _known(self) -> dict[tuple[str, int], ModelRuntime]:
        """Sessions this worker holds already: the current snapshot's and the production ones `state` loaded."""
        known = {(name, version): loaded.runtime for (name, version, _), loaded in self.snapshot.loaded.items()}
        if self.state is not None:
            for name, runtime in self.state.runtimes.items():
                known.setdefault((name, self.state.versions[name]), runtime)
        return known

    def _build(self, registry: Registry, token: int, routes: Mapping[str, Route]) -> tuple[Snapshot, list[str]]:
        known = self._known()
        loaded: dict[tuple[str, int, str], Loaded] = {}
        endpoints: dict[str, EndpointRoute] = {}
        problems: list[str] = []
        unserved: list[str] = []

        def load(name: str, version: int) -> Loaded:
            mv = registry.get(name, version)
            current = self.snapshot.loaded.get((name, version, mv.onnx_sha256))
            if current is not None:
                result = current
            elif (runtime := known.get((name, version))) is not None:
                result = Loaded(mv, runtime)
            else:
                result = load_version(registry, name, version, self.settings)
            loaded[result.key] = result
            return result

        for endpoint, route in routes.items():
            if not route.variants:  # not a load failure: nothing is meant to serve it (yet)
                unserved.append(f"{endpoint}: {route.model} has no production version and no route")
                continue
            try:
                router = Router.from_route(route)
                arms = {
                    v.name: Arm(v.name, lv, build_predictor(lv, v.name, self.reader_for))
                    for v in route.variants
                    for lv in (load(route.model, v.version),)
                }
                shadow = None
                if route.shadow_version is not None:
                    lv = load(route.model, route.shadow_version)
                    shadow = Arm(SHADOW_VARIANT, lv, build_predictor(lv, SHADOW_VARIANT, self.reader_for))
            except (JourneyError, ValueError, KeyError) as exc:
                problems.append(f"{endpoint}: {type(exc).__name__}: {exc}")
                current = self.snapshot.endpoints.get(endpoint)
                if current is not None:  # the first load keeps what it has; a reload is refused as a whole
                    endpoints[endpoint] = current
                continue
            endpoints[endpoint] = EndpointRoute(route, router, MappingProxyType(arms), shadow)
        self.unserved = unserved
        return Snapshot(token, MappingProxyType(endpoints), MappingProxyType(loaded)), problems

    def _swap(self, new: Snapshot) -> None:
        old = self.snapshot
        for lv in new.loaded.values():
            if lv.key not in old.loaded:
                name, version = lv.version.name, str(lv.version.version)
                metrics.set_execution_provider(name, version, lv.runtime.provider)
                metrics.set_gpu_expected(name, version, gpu_expected(lv.runtime))
                if (reference := training_score_mean(lv.version)) is not None:
                    metrics.set_training_score_mean(lv.version.name, version, reference)
        for endpoint, served in new.endpoints.items():
            weights = {v.name: v.weight for v in served.route.variants}
            previous = old.endpoints.get(endpoint)
            gone = set(previous.arms) - set(weights) if previous is not None else set()
            metrics.set_route_weights(endpoint, weights | dict.fromkeys(gone, 0.0))  # a removed variant: no share
            metrics.prime_series(routes=[(endpoint, name) for name in weights], experiment=served.route.experiment)
        self.snapshot = new  # the swap: one assignment, requests in flight keep the snapshot they read
        for lv in old.loaded.values():
            if lv.key not in new.loaded:
                metrics.clear_execution_provider(lv.version.name, str(lv.version.version), lv.runtime.provider)
        if self.state is not None:  # /readyz "models": the production version each model answers with now
            runtimes, versions = dict(self.state.runtimes), dict(self.state.versions)
            for served in new.endpoints.values():
                production = next((a for a in served.arms.values() if a.loaded.version.stage == "production"), None)
                if production is not None:
                    runtimes[production.loaded.version.name] = production.loaded.runtime
                    versions[production.loaded.version.name] = production.version
            # new dicts, not updates in place: /readyz may be iterating the old ones in another thread
            self.state.runtimes, self.state.versions = runtimes, versions

    # ------------------------------------------------------------------------------------------------ requests

    def route(self, endpoint: str, user_id: int) -> Routed:
        """The variant (and shadow) that answer `user_id` on `endpoint` under the current snapshot."""
        served = self.snapshot.endpoints.get(endpoint)
        if served is None:
            reason = "; ".join(self.problems + self.unserved) or "no route loaded"
            raise ServiceUnavailableError(f"{endpoint} has no model loaded: {reason}")
        assignment = served.router.assign(user_id)
        metrics.count_assignment(endpoint, assignment.variant, assignment.experiment)
        return Routed(endpoint, assignment, served.arms[assignment.variant], served.shadow)

    def served(
        self,
        routed: Routed,
        request: Any,
        prepared: Prepared,
        response: Response,
    ) -> None:
        """After the answer: log it, remember the user for conversions, queue the shadow. Never raises."""
        now = datetime.now(UTC)
        try:
            self._append(
                routed, request, now, routed.variant, routed.arm.version, response_score(response), prepared, False
            )
            with self._touch_lock:
                key = (routed.endpoint, int(request.user_id))
                self._touches[key] = (routed.variant, time.time())
                self._touches.move_to_end(key)
                while len(self._touches) > MAX_TOUCHES:
                    self._touches.popitem(last=False)
            if routed.shadow is not None:
                self._queue_shadow(routed, request, prepared, now)
        except Exception:  # bookkeeping must never fail an answer that exists
            log.exception("could not record a served prediction", extra={"endpoint": routed.endpoint})

    def _append(
        self,
        routed: Routed,
        request: Any,
        now: datetime,
        variant: str,
        version: int,
        score: float | None,
        prepared: Prepared,
        shadow: bool,
    ) -> None:
        if self.prediction_log is None:
            return
        from journey.stores.prediction_log import PredictionRecord

        record: PredictionRecord = PredictionRecord(
            request_id=routed.request_id,
            time=now,
            endpoint=routed.endpoint,
            user_id=int(request.user_id),
            variant=variant,
            model_version=version,
            score=score,
            session_id=getattr(request, "session_id", None),
            experiment=routed.assignment.experiment,
            shadow=shadow,
            feature_age_s=oldest_age(prepared.ages),
        )
        self.prediction_log.append(record)

    def _queue_shadow(self, routed: Routed, request: Any, prepared: Prepared, now: datetime) -> None:
        with self._shadow_lock:
            if self._shadow_backlog >= MAX_SHADOW_BACKLOG:
                self.shadow_skipped += 1
                return
            self._shadow_backlog += 1
        try:
            self._shadow.submit(self._score_shadow, routed, request, prepared, now)
        except RuntimeError:  # shutting down
            with self._shadow_lock:
                self._shadow_backlog -= 1

    def _score_shadow(self, routed: Routed, request: Any, prepared: Prepared, now: datetime) -> None:
        """Score the shadow version on the request's features (read again only if its inputs differ); log it."""
        shadow = routed.shadow
        assert shadow is not None
        try:
            predictor: Any = shadow.predictor
            inputs = prepared if same_inputs(routed.arm.predictor, predictor) else predictor.prepare(request)
            runtime = shadow.loaded.runtime
            with metrics.time_inference(shadow.loaded.version.name, str(shadow.version), runtime.provider):
                outputs = runtime.run(inputs.feeds)
            response = predictor.respond(inputs, predictor.select(outputs))
            self._append(routed, request, now, SHADOW_VARIANT, shadow.version, response_score(response), inputs, True)
        except Exception as exc:  # a broken candidate is what a shadow is for finding: log, never raise
            log.warning(
                "shadow scoring failed",
                extra={"endpoint": routed.endpoint, "version": shadow.version, "error": f"{type(exc).__name__}: {exc}"},
                exc_info=True,
            )
        finally:
            with self._shadow_lock:
                self._shadow_backlog -= 1

    def count_conversions(self, events: Sequence[Any], response: EventsResponse) -> int:
        """Credit each accepted purchase to the variant that answered the buyer's latest prediction (per endpoint)
        within the attribution window in this worker; the number of conversions counted."""
        rejected = {reject.row - 1 for reject in response.rejects}
        now, window = time.time(), self.settings.attribution_window_s
        counted = 0
        for row, event in enumerate(events):
            if row in rejected or not isinstance(event, Mapping) or event.get("event_type") != PURCHASE_EVENT:
                continue
            try:
                user = int(event["user_id"])
            except (KeyError, TypeError, ValueError):
                continue
            with self._touch_lock:
                hits = [
                    (endpoint, *self._touches[(endpoint, user)])
                    for endpoint in ENDPOINT_MODELS
                    if (endpoint, user) in self._touches
                ]
            for endpoint, variant, at in hits:
                if now - at <= window:
                    metrics.count_conversions(endpoint, variant)
                    counted += 1
        return counted

    # ------------------------------------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """The `/readyz` section: each endpoint's route as served here, and why a reload was refused."""
        snapshot = self.snapshot
        return {
            "token": snapshot.token,
            "loaded_at": datetime.fromtimestamp(snapshot.at, UTC).isoformat() if snapshot.at else None,
            "reloads": self.reloads,
            "routes": {endpoint: served.describe() for endpoint, served in snapshot.endpoints.items()},
            "problems": list(self.problems) + ([f"registry: {self._last_poll_error}"] if self._last_poll_error else []),
            "unserved": list(self.unserved),
            "prediction_log": vars(self.prediction_log.stats) if self.prediction_log is not None else None,
            "shadow_skipped": self.shadow_skipped,
        }
