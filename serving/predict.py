"""Request -> model inputs -> response, for each model; plain code the BentoML service calls (and tests call).

Each predictor is split around the model call: `prepare` reads online features and builds the ONNX inputs,
`respond` turns the model's outputs into the response. The service runs the model in between, in-process or through
the adaptive-batching model service, so both paths share every line of feature and response handling.

Degraded answers: when the online store cannot be read (down, or slower than `online_timeout_s`), every stored
feature is served as missing (NaN / no session events). That is the training-time default: the training sets hold
rows without a feature row in a view's TTL (a user's first day, an unknown session), XGBoost learnt a missing-value
direction at every split and the GRU imputes in-graph, so the model answers on the request's own inputs (price, time,
candidate) instead of failing. The response says `degraded: true` and the metrics count it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.model_inputs import (
    NextActionInputSpec,
    NextItemInputSpec,
    feature_matrix,
    next_action_inputs,
    next_item_inputs,
)
from journey.onnx_contract import NEXT_ITEM_OUTPUT_NAMES
from serving import metrics
from serving.schemas import (
    ItemScore,
    NextActionRequest,
    NextActionResponse,
    PurchaseRequest,
    PurchaseResponse,
    Recommendation,
    RecommendRequest,
    RecommendResponse,
)

if TYPE_CHECKING:
    from serving.features import OnlineFeatureReader
    from serving.runtime import ModelRuntime

log = logging.getLogger(__name__)

Row = dict[str, Any]
Columns = dict[str, list[Any]]
PURCHASE_MODEL = "purchase_propensity"
NO_SESSION = ""  # a join key no session has: the session view answers "no row", like an unknown session


@dataclass(frozen=True)
class ModelInfo:
    """What a predictor needs to know about the model version it serves (from the registry row)."""

    name: str
    version: int
    feature_service: str
    feature_order: tuple[str, ...]
    classes: tuple[str, ...]
    variant: str = "production"


@dataclass
class Prepared:
    feeds: dict[str, np.ndarray]
    rows: int
    degraded: bool
    ages: dict[str, float | None]
    context: Any = None


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


def score_propensity(runtime: ModelRuntime, version: str, features: np.ndarray) -> np.ndarray:
    """One propensity model call, its batch size and time recorded (in-process and in the batching scorer)."""
    metrics.observe_batch_size(PURCHASE_MODEL, len(features))
    with metrics.time_inference(PURCHASE_MODEL, version, runtime.provider):
        probabilities: np.ndarray = runtime.run({PurchasePredictor.INPUT: features})[PurchasePredictor.OUTPUT]
    return probabilities


class PurchasePredictor:
    """purchase_propensity: one row per candidate item, the XGBoost model's P(purchase)."""

    INPUT = "features"
    OUTPUT = "probabilities"

    def __init__(self, model: ModelInfo, reader: OnlineFeatureReader | None) -> None:
        self.model = model
        self.reader = reader

    def rows(self, request: PurchaseRequest) -> list[Row]:
        ts = request.request_ts if request.request_ts is not None else int(time.time())
        session = request.session_id or NO_SESSION
        return [
            {
                "user_id": request.user_id,
                "item_id": item.item_id,
                "session_id": session,
                "candidate_price": item.price,
                "candidate_item_id": item.item_id,
                "request_ts": ts,
            }
            for item in request.items
        ]

    def prepare(self, request: PurchaseRequest) -> Prepared:
        rows = self.rows(request)
        columns, ages, degraded = read_features(self.reader, rows, self.model.feature_order)
        columns["candidate_price"] = [row["candidate_price"] for row in rows]  # known even when the store is not
        matrix = feature_matrix(columns, self.model.feature_order)
        return Prepared({self.INPUT: matrix}, len(rows), degraded, ages, [item.item_id for item in request.items])

    def select(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The model output `respond` takes (the shadow path runs the session itself)."""
        return np.asarray(outputs[self.OUTPUT])

    def respond(self, prepared: Prepared, probabilities: np.ndarray) -> PurchaseResponse:
        scores = np.asarray(probabilities, dtype=np.float64)
        positive = scores[:, 1] if scores.ndim == 2 else scores
        metrics.record_scores(self.model.name, str(self.model.version), positive)
        return PurchaseResponse(
            model=self.model.name,
            version=self.model.version,
            variant=self.model.variant,
            degraded=prepared.degraded,
            feature_age_seconds=prepared.ages,
            scores=[
                ItemScore(item_id=item, probability=float(p))
                for item, p in zip(prepared.context, positive, strict=True)
            ],
        )


class NextActionPredictor:
    """next_action: the session's next event type or exit, from the GRU over its last events."""

    OUTPUT = "probabilities"

    def __init__(self, model: ModelInfo, reader: OnlineFeatureReader | None, spec: NextActionInputSpec) -> None:
        self.model = model
        self.reader = reader
        self.spec = spec

    def prepare(self, request: NextActionRequest) -> Prepared:
        rows: list[Row] = [{"user_id": request.user_id, "session_id": request.session_id}]
        columns, ages, degraded = read_features(self.reader, rows, self.spec.source_features)
        feeds = next_action_inputs(columns, self.spec)
        return Prepared(feeds, 1, degraded, ages)

    def select(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(outputs[self.OUTPUT])

    def respond(self, prepared: Prepared, probabilities: np.ndarray) -> NextActionResponse:
        row = np.asarray(probabilities, dtype=np.float64)[0]
        metrics.record_scores(self.model.name, str(self.model.version), row.max(keepdims=True))
        return NextActionResponse(
            model=self.model.name,
            version=self.model.version,
            variant=self.model.variant,
            degraded=prepared.degraded,
            feature_age_seconds=prepared.ages,
            probabilities={label: float(p) for label, p in zip(self.model.classes, row, strict=True)},
            predicted=self.model.classes[int(row.argmax())],
        )


class RecommendPredictor:
    """next_item: the `k` items the session's shopper is likeliest to look at next, top-k inside the ONNX graph.

    A session the online store does not know (or a store that cannot answer) gets the model's answer for an empty
    session: what it learnt to be popular, flagged degraded when the store was down.
    """

    OUTPUT = NEXT_ITEM_OUTPUT_NAMES  # (ids, scores)

    def __init__(self, model: ModelInfo, reader: OnlineFeatureReader | None, spec: NextItemInputSpec) -> None:
        self.model = model
        self.reader = reader
        self.spec = spec

    def prepare(self, request: RecommendRequest) -> Prepared:
        if request.k > self.spec.top_k:
            raise InvalidInputError(
                f"k must be at most {self.spec.top_k} (the items next_item v{self.model.version} returns per request)",
                field="k",
                value=request.k,
            )
        rows: list[Row] = [{"session_id": request.session_id}]
        columns, ages, degraded = read_features(self.reader, rows, self.spec.source_features)
        return Prepared(next_item_inputs(columns, self.spec), 1, degraded, ages, request.k)

    def select(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.OUTPUT
        return np.asarray(outputs[ids]), np.asarray(outputs[scores])

    def respond(self, prepared: Prepared, outputs: tuple[np.ndarray, np.ndarray]) -> RecommendResponse:
        k = int(prepared.context)
        ids, scores = outputs[0][0, :k], np.asarray(outputs[1][0, :k], dtype=np.float64)
        metrics.record_scores(self.model.name, str(self.model.version), scores[:1])
        return RecommendResponse(
            model=self.model.name,
            version=self.model.version,
            variant=self.model.variant,
            degraded=prepared.degraded,
            feature_age_seconds=prepared.ages,
            items=[Recommendation(item_id=int(i), score=float(p)) for i, p in zip(ids, scores, strict=True)],
        )
