"""purchase_propensity: one row per candidate item, the XGBoost model's P(purchase later in this session)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from journey.model_inputs import feature_matrix
from journey.onnx_contract import PROPENSITY_INPUT_NAME, PROPENSITY_OUTPUT_NAME
from serving import metrics
from serving.predictors.base import NO_SESSION, ModelInfo, Outputs, Predictor, Prepared, Row, read_features
from serving.schemas import ItemScore, PurchaseRequest, PurchaseResponse

if TYPE_CHECKING:
    from serving.features import OnlineFeatureReader


class PurchasePredictor:
    INPUT = PROPENSITY_INPUT_NAME
    OUTPUT = PROPENSITY_OUTPUT_NAME

    def __init__(self, model: ModelInfo, reader: OnlineFeatureReader | None) -> None:
        self.model = model
        self.reader = reader

    @classmethod
    def build(cls, model: ModelInfo, reader: OnlineFeatureReader | None, params: dict[str, Any]) -> PurchasePredictor:
        return cls(model, reader)

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

    def respond(self, prepared: Prepared, outputs: Outputs) -> PurchaseResponse:
        scores = np.asarray(outputs[self.OUTPUT], dtype=np.float64)
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

    def same_inputs(self, other: Predictor[Any, Any]) -> bool:
        return (
            isinstance(other, PurchasePredictor)
            and other.model.feature_service == self.model.feature_service
            and other.model.feature_order == self.model.feature_order
        )

    def log_score(self, response: PurchaseResponse) -> float | None:
        """The highest candidate probability: how likely this shopper buys one of them."""
        return max((s.probability for s in response.scores), default=None)
