"""The loaded models of one serving worker: which version answers each endpoint, swapped whole, without a restart.

This is the one object that holds model sessions. Per routed endpoint it keeps an `EndpointRoute`: the registry's
route, its `Router`, and for each variant (and the shadow) an `Arm`: the version loaded in ONNX Runtime
(serving.loaded) with the predictor that answers as that variant (serving.predictors). All endpoints together are a
`Snapshot`, immutable and replaced whole by one attribute assignment, so a request that took the snapshot at its
start finishes on the versions it started with while the next request already sees the new route; old sessions are
freed when the last request holding them ends. Nothing is ever closed under a request.

Hot reload: a daemon thread polls `Registry.change_token()` every `route_poll_s` (an indexed max(id), ~1 ms). When
it moves (a route change, a promotion, an archive), it reads `route_snapshot()`, loads and warms the versions the new
routes name that this worker does not hold yet (`ModelRuntime.load` runs a warm-up at batch 1 and 8), then swaps.
Versions already loaded are reused, not reloaded. If any version fails to load, the old snapshot keeps serving, the
failure is logged and shown in `/readyz` (`lifecycle.problems`), and the next token change retries. An endpoint
without a stored route is the registry's default: its production version, variant `production`, so promoting a
version is served within one poll as well. The first load (`Lifecycle.start`) is the same reload, forced.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from journey.errors import JourneyError, ServiceUnavailableError
from journey.registry import Registry, Route, Stage
from journey.settings import Settings
from serving import metrics
from serving.loaded import Loaded, load_version
from serving.predictors import ENDPOINTS, Predictor, ReaderFactory, build_predictor
from serving.routing import Assignment, Router

log = logging.getLogger(__name__)

SHADOW_VARIANT: Final = "shadow"  # the variant of a shadow row in the prediction log


@dataclass(frozen=True)
class Arm:
    """A variant of a route (or the shadow) with its loaded version and the predictor that answers as it."""

    variant: str
    loaded: Loaded
    predictor: Predictor[Any, Any]

    @property
    def version(self) -> int:
        return self.loaded.version.version

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.loaded.run(feeds)


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

    def production(self) -> dict[str, Loaded]:
        """Per model, its production version when this snapshot has it loaded (for `/readyz`)."""
        arms = [arm for served in self.endpoints.values() for arm in (*served.arms.values(), served.shadow) if arm]
        return {arm.loaded.version.name: arm.loaded for arm in arms if arm.loaded.version.stage is Stage.PRODUCTION}


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


class Lifecycle:
    """Routes, loaded versions and hot reload of one worker."""

    def __init__(self, settings: Settings, reader_for: ReaderFactory) -> None:
        self.settings = settings
        self._new_reader = reader_for
        self._readers: dict[str, Any] = {}
        self.snapshot: Snapshot = EMPTY
        self.problems: list[str] = []
        self.unserved: list[str] = []  # endpoints with nothing to serve (no route, no production version)
        self.deployed: tuple[str, ...] = ()  # endpoints the registry gives a production version or a route
        self.reloads = 0
        self._reload_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry: Registry | None = None
        self._last_poll_error = ""
        self._refused_token: int | None = None  # a reload that failed is retried at the next change, not every poll

    @classmethod
    def start(cls, settings: Settings, reader_for: ReaderFactory, *, poll: bool = True) -> Lifecycle:
        """Load the current routes and start the poller. A registry that cannot be read yet leaves every routed
        endpoint at 503, naming why, until a poll succeeds."""
        lifecycle = cls(settings, reader_for)
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
        """Stop polling and release the registry connection."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
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

    def _load(self, registry: Registry, name: str, version: int, loaded: dict[tuple[str, int, str], Loaded]) -> Loaded:
        """A version for the snapshot being built: the one this worker holds already, else loaded now."""
        mv = registry.get(name, version)
        current = self.snapshot.loaded.get((name, version, mv.onnx_sha256))
        result = current if current is not None else load_version(registry, name, version, self.settings)
        loaded[result.key] = result
        return result

    def _arm(self, loaded: Loaded, variant: str) -> Arm:
        return Arm(variant, loaded, build_predictor(loaded.version, loaded.runtime, variant, self.reader_for))

    def _endpoint(self, registry: Registry, route: Route, loaded: dict[tuple[str, int, str], Loaded]) -> EndpointRoute:
        router = Router.from_route(route)
        arms = {v.name: self._arm(self._load(registry, route.model, v.version, loaded), v.name) for v in route.variants}
        shadow = None
        if route.shadow_version is not None:
            shadow = self._arm(self._load(registry, route.model, route.shadow_version, loaded), SHADOW_VARIANT)
        return EndpointRoute(route, router, MappingProxyType(arms), shadow)

    def _build(self, registry: Registry, token: int, routes: Mapping[str, Route]) -> tuple[Snapshot, list[str]]:
        loaded: dict[tuple[str, int, str], Loaded] = {}
        endpoints: dict[str, EndpointRoute] = {}
        problems: list[str] = []
        unserved: list[str] = []
        for endpoint, route in routes.items():
            if not route.variants:  # not a load failure: nothing is meant to serve it (yet)
                unserved.append(f"{endpoint}: {route.model} has no production version and no route")
                continue
            try:
                endpoints[endpoint] = self._endpoint(registry, route, loaded)
            except (JourneyError, ValueError, KeyError) as exc:
                problems.append(f"{endpoint}: {type(exc).__name__}: {exc}")
                current = self.snapshot.endpoints.get(endpoint)
                if current is not None:  # the first load keeps what it has; a reload is refused as a whole
                    endpoints[endpoint] = current
        self.unserved = unserved
        self.deployed = tuple(endpoint for endpoint, route in routes.items() if route.variants)
        return Snapshot(token, MappingProxyType(endpoints), MappingProxyType(loaded)), problems

    def _swap(self, new: Snapshot) -> None:
        old = self.snapshot
        for lv in new.loaded.values():
            if lv.key not in old.loaded:
                lv.publish()
        metrics.prime_series(services=sorted({lv.version.feature_service for lv in new.loaded.values()}))
        for endpoint, served in new.endpoints.items():
            weights = {v.name: v.weight for v in served.route.variants}
            previous = old.endpoints.get(endpoint)
            gone = set(previous.arms) - set(weights) if previous is not None else set()
            metrics.set_route_weights(endpoint, weights | dict.fromkeys(gone, 0.0))  # a removed variant: no share
            metrics.prime_series(routes=[(endpoint, name) for name in weights], experiment=served.route.experiment)
        self.snapshot = new  # the swap: one assignment, requests in flight keep the snapshot they read
        for lv in old.loaded.values():
            if lv.key not in new.loaded:
                lv.unpublish()

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

    # ------------------------------------------------------------------------------------------------- status

    def missing(self) -> list[str]:
        """Endpoints the registry deploys (a production version or a route) that this worker does not serve: a load
        failed. An endpoint with nothing deployed is not missing: it answers 503 naming why, and the others serve."""
        return [name for name in self.deployed if name not in self.snapshot.endpoints]

    def endpoint_states(self) -> dict[str, str]:
        """For `/readyz`, every endpoint: what answers it, or why nothing does."""
        snapshot, states = self.snapshot, {}
        for name in ENDPOINTS:
            served = snapshot.endpoints.get(name)
            if served is not None:
                arms = ", ".join(f"{v.name} v{v.version}" for v in served.route.variants)
                states[name] = f"serving {served.route.model} ({arms})"
            elif name in self.deployed:
                why = "; ".join(p for p in self.problems if p.startswith(f"{name}:")) or "not loaded yet"
                states[name] = f"not loaded: {why}"
            else:
                states[name] = "no model: nothing deployed (promote a version or set a route)"
        return states

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
        }
