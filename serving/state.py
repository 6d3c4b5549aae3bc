"""Everything one service process holds: production models, their ONNX Runtime sessions, feature readers, ingest.

Built once per worker from settings (`ServingState.load`), never at import: BentoML imports the service module in the
supervisor too, so all heavy imports happen here, in the worker only, and Feast is imported lean (serving.lean_feast).
`status()` is the body of `/readyz`: which versions answer, on which execution provider, and why not when not ready.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from journey.errors import JourneyError, ServiceUnavailableError
from journey.settings import Settings
from serving import metrics
from serving.predict import PURCHASE_MODEL, ModelInfo, NextActionPredictor, PurchasePredictor
from serving.runtime import ModelRuntime, nvidia_device_present
from serving.runtime.providers import CPU_ONLY_FRAMEWORKS, Placement, measured_crossover, place

if TYPE_CHECKING:
    from feast import FeatureStore

    from journey.registry import ModelVersion, Registry
    from journey.stores.offline import OfflineTables
    from serving.journey_map import JourneyMap

log = logging.getLogger(__name__)

NEXT_ACTION_MODEL = "next_action"
NEXT_ITEM_MODEL = "next_item"  # optional: /recommend answers 503 until one is in production; not needed for ready
REPORT_METRICS_FILE = "metrics.json"  # training.evaluate.METRICS_FILE, written beside the version's report


def gpu_expected(runtime: ModelRuntime) -> bool:
    """Whether this model should run on a GPU here: what the provider policy decided when it placed the model, else
    (a runtime loaded without the policy) whether the host exposes an NVIDIA device and the graph has CUDA kernels
    (tree ensembles never do). With the provider in use it makes the "GPU expected but CPU in use" alert."""
    if runtime.placement is not None:
        return runtime.placement.gpu_expected
    return nvidia_device_present() and runtime.metadata.framework not in CPU_ONLY_FRAMEWORKS


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


def serving_batch(name: str, settings: Settings) -> int:
    """Rows per model call that serving sends `name`: adaptive batching merges purchase requests up to
    `batch_max_size`; everything scored in-process counts as one row (serving.runtime.providers says why)."""
    return settings.batch_max_size if name == PURCHASE_MODEL and settings.adaptive_batching else 1


def placement_for(version: ModelVersion, settings: Settings) -> Placement:
    """The provider policy's decision for one registered version on this host."""
    crossover, problem = (None, "")
    if settings.execution_provider == "auto":
        crossover, problem = measured_crossover(settings.gpu_report_path, version.name)
    return place(
        settings.execution_provider,
        framework=version.framework,
        gpu_present=nvidia_device_present(),
        batch=serving_batch(version.name, settings),
        crossover=crossover,
        crossover_problem=problem,
    )


def training_score_mean(version: ModelVersion) -> float | None:
    """The drift reference of a version: the mean score it should serve when traffic looks like its training data.

    In order: `metrics["score_reference"]["mean"]` when the training run registered one; for a binary model, the
    training set's positive rate from the evaluation report's metrics.json (`training_set.positive_rate`): a model
    trained on log loss without class weights, as the propensity model is, is calibrated, so its mean score is the
    base rate. None (no reference, no drift alert) when neither is there, e.g. a multi-class model or a serving host
    that cannot read the reports directory.
    """
    reference = version.metrics.get("score_reference")
    if isinstance(reference, dict) and isinstance(reference.get("mean"), int | float):
        return float(reference["mean"])
    if version.report_path is None or len(version.params.get("classes") or ()) != 2:
        return None
    path = Path(version.report_path).with_name(REPORT_METRICS_FILE)
    try:
        rate = json.loads(path.read_text(encoding="utf-8")).get("training_set", {}).get("positive_rate")
    except (OSError, ValueError, AttributeError) as exc:
        log.info("no training score reference", extra={"model": version.name, "path": str(path), "error": str(exc)})
        return None
    return float(rate) if isinstance(rate, int | float) else None


def load_runtime(registry: Registry, version: ModelVersion, settings: Settings) -> ModelRuntime:
    """A registered version's ONNX Runtime session, warmed (the stored file's hash re-checked first), on the
    provider the policy places it on."""
    return ModelRuntime.load(
        registry.artifact_path(version),
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        placement=placement_for(version, settings),
    )


def load_production(registry: Registry, name: str, settings: Settings) -> tuple[ModelVersion, ModelRuntime]:
    """The production version of `name` and its ONNX Runtime session."""
    version = registry.get(name, "production")
    return version, load_runtime(registry, version, settings)


def model_info(version: ModelVersion, runtime: ModelRuntime, variant: str = "production") -> ModelInfo:
    """What a predictor needs of a registered version (serving.lifecycle builds one per routed variant)."""
    params = version.params
    return ModelInfo(
        name=version.name,
        version=version.version,
        feature_service=version.feature_service,
        feature_order=tuple(params.get("feature_order") or runtime.feature_order),
        classes=tuple(params.get("classes") or ()),
        variant=variant,
    )


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
    phases: dict[str, float] = field(default_factory=dict)  # start-up seconds per phase
    journey: JourneyMap | None = None  # GET /journey/{user_id}; optional: None until `journey analyze` has run
    journey_problem: str = ""

    @classmethod
    def load(cls, settings: Settings) -> ServingState:
        """Load what can be loaded; anything missing is listed in `problems` (and keeps `/readyz` at 503)."""
        began = time.perf_counter()
        state = cls(settings)
        with state._phase("feature_store"):
            try:
                state._load_store()
            except JourneyError as exc:
                state.problems.append(f"feature store: {exc}")
        with state._phase("models"):
            models = state._load_models()
        with state._phase("feature_readers"):
            state._build_predictors(models)
        with state._phase("journey_map"):
            state._load_journey()
        if settings.gc_freeze:
            with state._phase("gc_freeze"):
                freeze_startup_heap()
        state.started_s = time.perf_counter() - began
        log.info(
            "serving state loaded",
            extra={
                "versions": state.versions,
                "problems": state.problems,
                "seconds": round(state.started_s, 2),
                "phases": state.phases,
            },
        )
        return state

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time one start-up phase: `/readyz` lists them, so a slow start says where its time went."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(time.perf_counter() - began, 3)

    def _load_store(self) -> None:
        from serving.lean_feast import import_feast

        import_feast()  # before anything else imports Feast: ~1.5 s instead of ~7.7 s

        from journey.stores.feature_store import open_store
        from journey.stores.offline import OfflineTables

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
        info = model_info(version, runtime)
        self.runtimes[version.name] = runtime
        self.versions[version.name] = version.version
        metrics.set_execution_provider(version.name, str(version.version), runtime.provider)
        metrics.set_gpu_expected(version.name, str(version.version), gpu_expected(runtime))
        if (reference := training_score_mean(version)) is not None:
            metrics.set_training_score_mean(version.name, str(version.version), reference)
        return Served(info, runtime, params)

    def reader(self, service: str) -> Any:
        from serving.features import OnlineFeatureReader

        if self.store is None:
            return None
        return OnlineFeatureReader(
            self.store,
            service,
            timeout_s=self.settings.online_timeout_s,
            retry_after_s=self.settings.online_retry_after_s,
        )

    def _build_predictors(self, models: dict[str, Served]) -> None:
        from journey.model_inputs import NextActionInputSpec

        try:
            if PURCHASE_MODEL in models:
                served = models[PURCHASE_MODEL]
                self.purchase = PurchasePredictor(served.info, self.reader(served.info.feature_service))
            if NEXT_ACTION_MODEL in models:
                served = models[NEXT_ACTION_MODEL]
                spec = NextActionInputSpec.from_dict(served.params["input_spec"])
                self.next_action = NextActionPredictor(served.info, self.reader(served.info.feature_service), spec)
        except JourneyError as exc:
            self.problems.append(f"feature service: {exc}")

    def _load_journey(self) -> None:
        """The journey map is not a readiness condition: predictions do not need it, and a shop that never ran
        `journey analyze` still gets them. `/readyz` says whether it is there and why not."""
        from serving.journey_map import JourneyMap

        if self.store is None:
            self.journey_problem = "feature store not loaded"
            return
        try:
            self.journey = JourneyMap.load(self.settings.journey_chain_path, self.reader)
        except JourneyError as exc:
            self.journey_problem = str(exc)
            log.warning("journey map not loaded", extra={"reason": self.journey_problem})

    def journey_answer(self, raw_user_id: str, raw_session_id: str | None) -> dict[str, Any]:
        """The body of `GET /journey/{user_id}` (serving.http), or the Journey error that says why not."""
        from serving.journey_map import parse_session_id, parse_user_id

        user_id, session_id = parse_user_id(raw_user_id), parse_session_id(raw_session_id)
        if self.journey is None:
            raise ServiceUnavailableError(f"journey map not loaded: {self.journey_problem}")
        return self.journey.state(user_id, session_id)

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
            "startup_phases": self.phases,
            "journey": self.journey.describe() if self.journey is not None else {"problem": self.journey_problem},
        }

    def close(self) -> None:
        if self.store is not None:
            from journey.stores.feature_store import close_store

            close_store(self.store)
