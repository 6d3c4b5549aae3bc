"""What every predictor shares: the model version it answers as, the prepared inputs, and the online read.

A predictor is split around the model call: `prepare` reads online features and builds the ONNX inputs, `respond`
turns the model's outputs into the response. `serving.answer` runs the model in between (in-process, or through the
adaptive-batching scorer), and the shadow of a route runs the same three steps, so every path shares every line of
feature and response handling.

Degraded answers: when the online store cannot be read (down, or slower than `online_timeout_s`), every stored
feature is served as missing (NaN / no session events). That is the training-time default: the training sets hold
rows without a feature row in a view's TTL (a user's first day, an unknown session), XGBoost learnt a missing-value
direction at every split and the GRU imputes in-graph, so the model answers on the request's own inputs (price, time,
candidate) instead of failing. The response says `degraded: true` and the metrics count it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import numpy as np

from journey.errors import ServiceUnavailableError
from serving import metrics
from serving.schemas import ModelRequest, ModelResponse

if TYPE_CHECKING:
    from journey.registry import ModelVersion
    from serving.features import OnlineFeatureReader
    from serving.runtime import ModelRuntime

log = logging.getLogger(__name__)

Row = dict[str, Any]
Columns = dict[str, list[Any]]
Outputs: TypeAlias = Mapping[str, np.ndarray]
NO_SESSION = ""  # a join key no session has: the session view answers "no row", like an unknown session
RequestT = TypeVar("RequestT", bound=ModelRequest, contravariant=True)
ResponseT = TypeVar("ResponseT", bound=ModelResponse, covariant=True)


@dataclass(frozen=True)
class ModelInfo:
    """What a predictor needs to know about the model version it serves (from the registry row)."""

    name: str
    version: int
    feature_service: str
    feature_order: tuple[str, ...]
    classes: tuple[str, ...]
    variant: str = "production"

    @classmethod
    def of(cls, version: ModelVersion, runtime: ModelRuntime, variant: str) -> ModelInfo:
        params = version.params
        return cls(
            name=version.name,
            version=version.version,
            feature_service=version.feature_service,
            feature_order=tuple(params.get("feature_order") or runtime.feature_order),
            classes=tuple(params.get("classes") or ()),
            variant=variant,
        )


@dataclass
class Prepared:
    """A request turned into model inputs, with what the response and the prediction log say about them."""

    feeds: dict[str, np.ndarray]
    rows: int
    degraded: bool
    ages: dict[str, float | None]  # per view: age of the oldest row served (None: no row)
    context: Any = None  # what `respond` needs of the request (candidate ids, k)

    @property
    def oldest_age(self) -> float | None:
        """The feature freshness of an answer: the age of its oldest served row (None: no row found)."""
        known = [age for age in self.ages.values() if age is not None]
        return max(known) if known else None


class Predictor(Protocol[RequestT, ResponseT]):
    """One model kind's request -> inputs and outputs -> response (serving.predictors lists the kinds)."""

    model: ModelInfo

    def prepare(self, request: RequestT) -> Prepared: ...

    def respond(self, prepared: Prepared, outputs: Outputs) -> ResponseT: ...

    def same_inputs(self, other: Predictor[Any, Any]) -> bool:
        """Whether `other` builds identical inputs from a request (then a shadow reuses this one's features)."""
        ...

    def log_score(self, response: Any) -> float | None:
        """The one number a prediction-log row carries for this answer (what the A/B report ranks users by)."""
        ...


def _ages(stamps: Mapping[str, Sequence[datetime | None]], now: datetime) -> dict[str, float | None]:
    """Per view, the age of the oldest row served (None when no row was found for any entity)."""
    ages: dict[str, float | None] = {}
    for view, values in stamps.items():
        known = [v for v in values if v is not None]
        ages[view] = round((now - min(known)).total_seconds(), 3) if known else None
    return ages


def read_features(
    reader: OnlineFeatureReader | None, rows: list[Row], source_features: Sequence[str]
) -> tuple[Columns, dict[str, float | None], bool]:
    """Online features for the rows, or all-missing columns and degraded=True when the store cannot answer."""
    service = reader.service if reader is not None else "none"
    if reader is not None:
        try:
            with metrics.time_online_features(service):
                columns, stamps = reader.read_with_timestamps(rows)
        except ServiceUnavailableError as exc:
            log.warning("online store unavailable: degraded answer", extra={"service": service, "error": str(exc)})
        else:
            metrics.set_online_store_degraded(False)
            metrics.record_feature_ages(stamps)
            return columns, _ages(stamps, datetime.now(UTC)), False
    metrics.set_online_store_degraded(True)
    metrics.count_feature_defaults(service, "store_down", len(rows) * len(source_features))
    missing: Columns = {name: [None] * len(rows) for name in source_features}
    return missing, {}, True
