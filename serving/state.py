"""Everything one service process holds: production models, their ONNX Runtime sessions, feature readers, ingest.

Built once per worker from settings (`ServingState.load`), never at import: `import feast` costs ~7 s and BentoML
imports the service module in the supervisor too, so all heavy imports happen here, in the worker only.
`status()` is the body of `/readyz`: which versions answer, on which execution provider, and why not when not ready.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from journey.errors import JourneyError
from journey.settings import Settings
from serving import metrics
from serving.predict import PURCHASE_MODEL, ModelInfo, NextActionPredictor, PurchasePredictor
from serving.runtime import ModelRuntime

if TYPE_CHECKING:
    from feast import FeatureStore

    from journey.offline import OfflineTables
    from journey.registry import ModelVersion, Registry

log = logging.getLogger(__name__)

NEXT_ACTION_MODEL = "next_action"


def load_production(registry: Registry, name: str, settings: Settings) -> tuple[ModelVersion, ModelRuntime]:
    """The production version of `name` and its ONNX Runtime session (the stored file's hash re-checked first)."""
    version = registry.get(name, "production")
    runtime = ModelRuntime.load(
        registry.artifact_path(version),
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
    )
    return version, runtime


@dataclass
class Served:
    info: ModelInfo
    runtime: ModelRuntime
    params: dict[str, Any]


@dataclass
class ServingState:
    settings: Settings
    store: FeatureStore | None = None
    tables: OfflineTables | None = None
    purchase: PurchasePredictor | None = None
    next_action: NextActionPredictor | None = None
    runtimes: dict[str, ModelRuntime] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    started_s: float = 0.0

    @classmethod
    def load(cls, settings: Settings) -> ServingState:
        """Load what can be loaded; anything missing is listed in `problems` (and keeps `/readyz` at 503)."""
        began = time.perf_counter()
        state = cls(settings)
        try:
            state._load_store()
        except JourneyError as exc:
            state.problems.append(f"feature store: {exc}")
        models = state._load_models()
        state._build_predictors(models)
        state.started_s = time.perf_counter() - began
        log.info(
            "serving state loaded",
            extra={"versions": state.versions, "problems": state.problems, "seconds": round(state.started_s, 2)},
        )
        return state

    def _load_store(self) -> None:
        from journey.feature_store import open_store
        from journey.offline import OfflineTables

        self.store = open_store(self.settings)
        self.store.list_feature_services()  # the registry is reachable and `feast apply` ran
        self.tables = OfflineTables(self.settings)

    def _load_models(self) -> dict[str, Served]:
        from journey.registry import Registry

        served: dict[str, Served] = {}
        with Registry(self.settings) as registry:
            for name in (PURCHASE_MODEL, NEXT_ACTION_MODEL):
                try:
                    served[name] = self._serve(*load_production(registry, name, self.settings))
                except JourneyError as exc:
                    self.problems.append(f"model {name}: {exc}")
        return served

    def _serve(self, version: ModelVersion, runtime: ModelRuntime) -> Served:
        params = dict(version.params)
        info = ModelInfo(
            name=version.name,
            version=version.version,
            feature_service=version.feature_service,
            feature_order=tuple(params.get("feature_order") or runtime.feature_order),
            classes=tuple(params.get("classes") or ()),
        )
        self.runtimes[version.name] = runtime
        self.versions[version.name] = version.version
        metrics.set_execution_provider(version.name, str(version.version), runtime.provider)
        return Served(info, runtime, params)

    def _reader(self, service: str) -> Any:
        from serving.features import OnlineFeatureReader

        if self.store is None:
            return None
        return OnlineFeatureReader(self.store, service, timeout_s=self.settings.online_timeout_s)

    def _build_predictors(self, models: dict[str, Served]) -> None:
        from journey.model_inputs import NextActionInputSpec

        try:
            if PURCHASE_MODEL in models:
                served = models[PURCHASE_MODEL]
                self.purchase = PurchasePredictor(served.info, self._reader(served.info.feature_service))
            if NEXT_ACTION_MODEL in models:
                served = models[NEXT_ACTION_MODEL]
                spec = NextActionInputSpec.from_dict(served.params["input_spec"])
                self.next_action = NextActionPredictor(served.info, self._reader(served.info.feature_service), spec)
        except JourneyError as exc:
            self.problems.append(f"feature service: {exc}")

    @property
    def ready(self) -> bool:
        return not self.problems and self.purchase is not None and self.next_action is not None

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "profile": self.settings.profile.value,
            "models": {
                name: runtime.describe() | {"version": self.versions[name]} for name, runtime in self.runtimes.items()
            },
            "problems": self.problems,
            "startup_seconds": round(self.started_s, 3),
        }

    def close(self) -> None:
        if self.store is not None:
            from journey.feature_store import close_store

            close_store(self.store)
